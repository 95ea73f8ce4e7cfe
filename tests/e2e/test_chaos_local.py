"""Chaos for local runs: real ``imgpipe run`` processes killed, interrupted and raced.

Every test starts the CLI as a subprocess (this worktree's ``src`` on PYTHONPATH)
against a :class:`FaultServer` on 127.0.0.1 whose covers answer after a delay, so
a batch takes a few seconds and there is a "middle" to kill it in. Progress is
read from ``<out>/state.db`` read-only (WAL lets a reader beside the writer);
the server's request log says what each run fetched.

The promises under test (docs: DESIGN.md, "A crash at any moment loses nothing
and strands nothing"): a rerun of the same command continues the same batch,
finished creators are not fetched or rendered again, nothing is left
``running`` / ``processing`` / ``pending``, one collage object per creator.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.e2e.test_cli_local import write_csv
from tests.support.http_caching import Cacheable
from tests.support.http_server import Behaviour, Exchange, FaultServer, Status
from tests.support.images import jpeg

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
CELL = 48  # small cells: rendering stays cheap on a 2-core box
COLS = 7
DELAY = 0.1  # seconds per cover request: with 8 downloads in flight, ~80 covers/s
ALLOW = ("--allow-private-networks", "127.0.0.0/8")
TEMP_PREFIX = ".imgpipe-tmp-"  # LocalObjectStore's writes in flight (not objects)
FINAL = ("completed", "failed", "skipped_unchanged")


# -- the server side ---------------------------------------------------------------


@dataclass(frozen=True)
class Delayed:
    """``inner``'s answer after ``seconds`` (a CDN that is slow but well behaved)."""

    inner: Behaviour
    seconds: float

    def respond(self, exchange: Exchange) -> None:
        if exchange.wait(self.seconds):
            return
        self.inner.respond(exchange)


@dataclass(frozen=True)
class Gated:
    """``inner``'s answer once ``gate`` is set (closing the server ends the wait)."""

    inner: Behaviour
    gate: threading.Event

    def respond(self, exchange: Exchange) -> None:
        while not self.gate.is_set():
            if exchange.wait(0.02):
                return
        self.inner.respond(exchange)


def cover_bytes(n: int) -> bytes:
    """A small JPEG, distinct for every n < 343: colours 40 apart survive JPEG's rounding
    (1 apart they do not, and equal bytes would be dropped as duplicates)."""
    assert 0 <= n < 7**3
    return jpeg((n % 7 * 40, n // 7 % 7 * 40, n // 49 * 40), size=(64, 64), quality=80)


@dataclass
class Corpus:
    """A CSV of creators and the server paths behind their covers."""

    csv: Path
    covers: dict[str, list[str]] = field(default_factory=dict)  # creator -> paths, CSV order
    missing: set[str] = field(default_factory=set)  # paths that answer 404

    @property
    def creators(self) -> list[str]:
        return list(self.covers)

    def usable(self, creator: str) -> int:
        return sum(path not in self.missing for path in self.covers[creator])

    def creator_of(self) -> dict[str, str]:
        return {path: c for c, paths in self.covers.items() for path in paths}


def serve_corpus(
    server: FaultServer,
    csv_path: Path,
    counts: list[int],
    *,
    missing: dict[int, int] | None = None,
    cache_control: Callable[[int], str | None] = lambda n: None,
    delay: float = DELAY,
    wrap: Callable[[int, Behaviour], Behaviour] = lambda index, behaviour: behaviour,
) -> Corpus:
    """``counts[i]`` covers for creator i; ``missing[i]`` of them (the last ones) 404.

    Covers carry an ETag, so the cover cache revalidates them instead of
    downloading them again. ``wrap(i, behaviour)`` may change creator i's answers.
    """
    corpus = Corpus(csv_path)
    rows: list[tuple[str, str]] = []
    n = 0
    for index, count in enumerate(counts):
        creator = f"creator-{index:03}"
        gone_from = count - (missing or {}).get(index, 0)
        corpus.covers[creator] = []
        for slot in range(count):
            path = f"/{creator}/{slot}.jpg"
            if slot >= gone_from:
                behaviour: Behaviour = Delayed(Status(404), delay)
                corpus.missing.add(path)
            else:
                body, etag = cover_bytes(n), f'"v{n}"'
                behaviour = Delayed(
                    Cacheable(body, etag=etag, cache_control=cache_control(n)), delay
                )
            n += 1
            corpus.covers[creator].append(path)
            rows.append((creator, server.add(path, wrap(index, behaviour))))
    write_csv(csv_path, rows)
    return corpus


# -- the process side --------------------------------------------------------------


class Cli:
    """``imgpipe`` as a user runs it in one output folder, outputs kept per run."""

    def __init__(self, tmp: Path, out: Path) -> None:
        self.tmp, self.out = tmp, out
        self.env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(SRC),  # this worktree's code, not the venv's editable install
            "IMGPIPE_DATA_DIR": str(tmp / "data"),
        }
        self.runs = 0

    def start(self, *args: str | Path) -> Run:
        self.runs += 1
        stdout = self.tmp / f"run-{self.runs}.out"
        stderr = self.tmp / f"run-{self.runs}.err"
        # Files, not pipes: a process we never read from cannot block on a full pipe.
        with stdout.open("w") as out, stderr.open("w") as err:
            process = subprocess.Popen(
                [sys.executable, "-m", "imgpipe", *map(str, args)],
                stdout=out,
                stderr=err,
                env=self.env,
                cwd=self.tmp,
            )
        return Run(process, stdout, stderr)

    def run(self, *args: str | Path) -> Run:
        started = self.start(*args)
        started.wait()
        return started

    def status(self) -> list[dict[str, Any]]:
        done = self.run("status", "--out", self.out, "--json")
        assert done.code == 0, done.stderr
        batches: list[dict[str, Any]] = json.loads(done.stdout)
        return batches


@dataclass
class Run:
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    @property
    def code(self) -> int | None:
        return self.process.returncode

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stdout)
        return data

    def signal(self, number: int) -> int:
        self.process.send_signal(number)
        return self.wait()


def run_args(corpus: Corpus, out: Path, *extra: str, timeout: float = 5) -> tuple[str | Path, ...]:
    return (
        "run", corpus.csv, "--out", out, "--json", "--quiet", "--workers", "4",
        "--cell", str(CELL), "--timeout", str(timeout), "--retries", "0", *ALLOW, *extra,
    )  # fmt: skip


@contextmanager
def state_db(out: Path) -> Iterator[sqlite3.Connection | None]:
    """The run's state database, read-only (None until the run created it)."""
    path = out / "state.db"
    if not path.exists():
        yield None
        return
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        yield db
    finally:
        db.close()


def query(out: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with state_db(out) as db:
        if db is None:
            return []
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # the schema is being created right now
                return []
            raise


def creator_statuses(out: Path) -> dict[tuple[str, str], str]:
    """(batch, creator) -> status, over every batch."""
    rows = query(out, "SELECT batch_id, creator_name, status FROM creators")
    return {(batch, creator): status for batch, creator, status in rows}


def final_creators(out: Path) -> set[str]:
    return {c for (_, c), status in creator_statuses(out).items() if status in FINAL}


def batches(out: Path) -> list[tuple[str, str]]:
    return [(b, s) for b, s in query(out, "SELECT batch_id, status FROM batches ORDER BY 1")]


def wait_for(condition: Callable[[], bool], run: Run, what: str, timeout: float = 30) -> None:
    """Poll ``condition``; fail if the run ends (or time runs out) before it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if run.process.poll() is not None:
            pytest.fail(f"the run ended (exit {run.code}) before {what}:\n{run.stderr}")
        if time.monotonic() > deadline:
            run.process.kill()
            run.wait()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def kill_9(run: Run) -> None:
    os.kill(run.process.pid, signal.SIGKILL)
    assert run.wait() == -signal.SIGKILL


def collage_objects(out: Path, key: str, suffix: str = ".jpg") -> list[Path]:
    """The creator's collages (or, with ``.webp``, their previews), no temporary files."""
    folder = out / "collages" / "by-creator" / key
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(TEMP_PREFIX) and p.name.endswith(suffix)
    )


def assert_one_valid_collage_each(out: Path, corpus: Corpus) -> None:
    for creator in corpus.creators:
        objects = collage_objects(out, creator)
        usable = min(corpus.usable(creator), 35)
        if usable == 0:
            assert objects == [], creator
            continue
        assert len(objects) == 1, (creator, objects)
        previews = collage_objects(out, creator, ".webp")  # one preview, of that collage
        assert [p.name.split(".")[0] for p in previews] == [objects[0].stem], (creator, previews)
        with Image.open(objects[0]) as image:
            assert image.format == "JPEG"
            image.load()  # the whole file decodes, not just its header
            assert image.size == (COLS * CELL, CELL * -(-usable // COLS)), creator


def assert_nothing_stranded(out: Path) -> None:
    statuses = Counter(creator_statuses(out).values())
    assert statuses["processing"] == 0 and statuses["pending"] == 0, statuses
    assert all(status != "running" for _, status in batches(out)), batches(out)


def assert_summary_lists_each_creator_once(summary: dict[str, Any], corpus: Corpus) -> None:
    keys = [entry["key"] for entry in summary["creators"]]
    assert sorted(keys) == sorted(corpus.creators)  # each exactly once
    totals = summary["totals"]
    assert totals["creators"] == len(corpus.creators)
    assert totals["completed"] + totals["skipped_unchanged"] + totals["failed"] == len(keys)
    assert totals["images_used"] == sum(min(corpus.usable(c), 35) for c in corpus.creators)
    assert totals["duplicates"] == 0


# -- 1 and 2: kill -9 at many points ----------------------------------------------

# 40 creators with 5..10 covers each; two of them have only dead covers (they fail),
# three have one dead cover among good ones (they complete, with a failed URL).
KILL_COUNTS = [5 + (i * 7) % 6 for i in range(40)]
KILL_MISSING = {3: KILL_COUNTS[3], 17: KILL_COUNTS[17], 8: 1, 21: 1, 33: 1}


@pytest.mark.slow
def test_kill_9_at_seven_points_then_one_batch_finishes(tmp_path: Path) -> None:
    """kill -9 during staging, right after planning, and at 5/20/40/60/80 % of creators;
    after each kill ``imgpipe status`` shows the batch interrupted; the last rerun finishes
    the same batch, and no finished creator's cover is requested again."""
    out = tmp_path / "out"
    cli = Cli(tmp_path, out)
    staging = out / "processing" / "staging"

    def staging_started() -> bool:
        return staging.is_dir() and any(staging.iterdir())

    def planned() -> bool:
        return bool(batches(out))

    def final_at_least(n: int) -> Callable[[], bool]:
        return lambda: len(final_creators(out)) >= n

    points: list[tuple[str, Callable[[], bool]]] = [
        ("staging", staging_started),
        ("planned", planned),
        *((f"{pct}% final", final_at_least(40 * pct // 100)) for pct in (5, 20, 40, 60, 80)),
    ]
    with FaultServer() as server:
        corpus = serve_corpus(server, tmp_path / "covers.csv", KILL_COUNTS, missing=KILL_MISSING)
        args = run_args(corpus, out)
        positions: list[int] = []  # the server's log length once run k was dead
        final_after: list[set[str]] = []  # creators final once run k was dead
        for k, (what, reached) in enumerate(points):
            run = cli.start(*args)
            wait_for(reached, run, what)
            kill_9(run)
            positions.append(len(server.requests()))
            final_after.append(final_creators(out))
            if k % 2 == 1:  # the others leave a `running` batch of a dead process for the rerun
                # 2. right after a kill, status shows the batch interrupted, never running
                shown = {b["batch_id"]: b["status"] for b in cli.status()}
                assert list(shown.values()) == ["interrupted"], (what, shown)
        assert final_after[0] == set() and final_after[1] == set()
        reached = [len(done) for done in final_after[2:]]
        assert reached == sorted(reached) and reached[0] >= 2 and reached[-1] >= 32, reached
        assert len(final_after[-1]) < 40  # the last kill still left work to do

        last = cli.run(*args)
        requests = server.requests()
        ok_bodies = sum(r.status == 200 for p in corpus.creator_of() for r in server.responses(p))

    assert last.code == 3, last.stderr  # the two creators with only dead covers failed
    summary = last.summary()
    assert summary["status"] == "completed_with_failures"
    assert_summary_lists_each_creator_once(summary, corpus)
    assert summary["totals"]["failed"] == 2
    failed_paths = {f["url"].removeprefix(server.base_url) for f in summary["failed_urls"]}
    assert failed_paths == corpus.missing
    assert {f["reason"] for f in summary["failed_urls"]} == {"http_404"}
    stored = json.loads((out / summary["summary_key"]).read_text())
    assert stored["creators"] == summary["creators"]

    # one batch: every rerun continued it, none started over
    assert [(b["batch_id"], b["status"]) for b in cli.status()] == [
        (summary["batch_id"], "completed_with_failures")
    ]
    assert_nothing_stranded(out)
    assert len(creator_statuses(out)) == 40
    assert_one_valid_collage_each(out, corpus)

    # finished creators were not fetched again: nothing after the kill that saw them final
    creator_of = corpus.creator_of()
    for k, position in enumerate(positions):
        again = {creator_of[r.path] for r in requests[position:]} & final_after[k]
        assert again == set(), (points[k][0], sorted(again))
    # per cover: at most one request per run that began with its creator unfinished
    starts: list[set[str]] = [set(), *final_after]
    hits = Counter(r.path for r in requests)
    for path, creator in creator_of.items():
        runs_unfinished = sum(creator not in done for done in starts)
        assert hits[path] <= runs_unfinished, (path, hits[path], runs_unfinished)
    # and bodies: each cover in full about once (the cache revalidates the rest), far
    # below creators x covers x runs; a kill can lose at most the 8 downloads in flight
    good = len(creator_of) - len(corpus.missing)
    assert ok_bodies <= good + 8 * len(points), (ok_bodies, good)


# -- 3: SIGINT and SIGTERM ---------------------------------------------------------


def interrupted_line(run: Run) -> str:
    """The one stderr line of a stopped run (``--quiet``: nothing else is logged)."""
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    return lines[0]


def mid_batch(out: Path, at_least: int) -> Callable[[], bool]:
    """Some creators final, and claims of the run in flight."""

    def reached() -> bool:
        statuses = creator_statuses(out).values()
        return sum(s in FINAL for s in statuses) >= at_least and "processing" in statuses

    return reached


@pytest.mark.slow
def test_sigint_and_sigterm_give_claims_back_and_the_rerun_finishes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli = Cli(tmp_path, out)
    with FaultServer() as server:
        corpus = serve_corpus(server, tmp_path / "covers.csv", [6] * 24)
        args = run_args(corpus, out)
        for number, code, at_least in ((signal.SIGINT, 130, 4), (signal.SIGTERM, 143, 12)):
            run = cli.start(*args)
            wait_for(mid_batch(out, at_least), run, f"{at_least} creators final")
            assert run.signal(number) == code, run.stderr
            line = interrupted_line(run)
            done = final_creators(out)
            [(batch_id, status)] = batches(out)
            assert status == "interrupted"
            assert line.startswith(f"interrupted: batch {batch_id} "), line
            assert line.endswith(
                f"{len(done)} of 24 creators done; run the same command again to continue"
            ), line
            statuses = Counter(creator_statuses(out).values())
            assert statuses["processing"] == 0, statuses  # in-flight claims were given back
            assert statuses["pending"] == 24 - len(done) > 0, statuses
            assert [b["status"] for b in cli.status()] == ["interrupted"]
        last = cli.run(*args)

    assert last.code == 0, last.stderr
    summary = last.summary()
    assert summary["batch_id"] == batch_id and summary["totals"]["completed"] == 24
    assert_summary_lists_each_creator_once(summary, corpus)
    assert batches(out) == [(batch_id, "completed")]
    assert_nothing_stranded(out)
    assert_one_valid_collage_each(out, corpus)


# -- 4: --new-batch after an interruption ------------------------------------------


def test_new_batch_after_an_interruption_starts_a_second_batch(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli = Cli(tmp_path, out)
    with FaultServer() as server:
        corpus = serve_corpus(server, tmp_path / "covers.csv", [5] * 12)
        args = run_args(corpus, out)
        run = cli.start(*args)
        wait_for(lambda: len(final_creators(out)) >= 3, run, "3 creators final")
        assert run.signal(signal.SIGTERM) == 143, run.stderr
        [(first, _)] = batches(out)
        done_first = final_creators(out)
        assert 3 <= len(done_first) < 12

        fresh = cli.run(*args, "--new-batch")

    assert fresh.code == 0, fresh.stderr
    summary = fresh.summary()
    assert summary["batch_id"] != first
    assert_summary_lists_each_creator_once(summary, corpus)
    shown = {b["batch_id"]: b["status"] for b in cli.status()}
    assert shown == {first: "interrupted", summary["batch_id"]: "completed"}
    # the new batch covers every creator; those the first one rendered are unchanged
    statuses = {e["key"]: e["status"] for e in summary["creators"]}
    assert {k for k, s in statuses.items() if s == "skipped_unchanged"} == done_first
    assert_one_valid_collage_each(out, corpus)


# -- 5: two processes on one batch -------------------------------------------------


def test_a_second_process_on_a_running_batch_refuses_naming_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli = Cli(tmp_path, out)
    gate = threading.Event()  # creators 2.. wait for it: the first run cannot end early

    def held(index: int, behaviour: Behaviour) -> Behaviour:
        return behaviour if index < 2 else Gated(behaviour, gate)

    with FaultServer() as server:
        corpus = serve_corpus(server, tmp_path / "covers.csv", [5] * 8, wrap=held)
        args = run_args(corpus, out, timeout=60)
        first = cli.start(*args)
        wait_for(lambda: len(final_creators(out)) >= 1, first, "a creator final")
        second = cli.run(*args)
        still_running = first.process.poll() is None
        gate.set()
        first.wait()

    [(batch_id, status)] = batches(out)
    assert still_running  # the refusal happened while the first one worked
    assert second.code == 4, second.stderr
    assert "error:" in second.stderr and batch_id in second.stderr
    assert "running in another process" in " ".join(second.stderr.split())
    assert second.stdout == ""
    assert first.code == 0, first.stderr
    assert status == "completed" and first.summary()["batch_id"] == batch_id
    assert_nothing_stranded(out)
    assert_one_valid_collage_each(out, corpus)


# -- 6: an unchanged rerun revalidates, it does not download -----------------------


def test_unchanged_rerun_uses_the_cover_cache(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli = Cli(tmp_path, out)

    def every_other_fresh(n: int) -> str | None:
        return "max-age=3600" if n % 2 else None  # fresh: not even asked again

    with FaultServer() as server:
        corpus = serve_corpus(
            server, tmp_path / "covers.csv", [5] * 8, cache_control=every_other_fresh, delay=0
        )
        first = cli.run(*run_args(corpus, out))
        mark = {path: len(server.responses(path)) for path in corpus.creator_of()}
        second = cli.run(*run_args(corpus, out))
        answered = {path: server.responses(path)[mark[path] :] for path in mark}
        conditional = {path: server.conditional_hits(path) for path in mark}

    assert first.code == 0 and second.code == 0, second.stderr
    assert all(count == 1 for count in mark.values())  # the first run: each cover once
    statuses = {e["key"]: e["status"] for e in second.summary()["creators"]}
    assert statuses == dict.fromkeys(corpus.creators, "skipped_unchanged")
    for n, path in enumerate(corpus.creator_of()):
        if every_other_fresh(n):
            assert answered[path] == [], path  # still fresh in the cache: no request
        else:  # asked "changed?" and told no: no body crossed the wire
            assert [(r.status, r.body_bytes) for r in answered[path]] == [(304, 0)], path
            assert conditional[path] == 1
    assert_one_valid_collage_each(out, corpus)


# -- 1b: kill -9 in the middle of planning ----------------------------------------

PLANNED = 20_000  # creators: enough that writing their pending records takes a while


@pytest.mark.slow
def test_kill_9_while_planning_then_the_rerun_continues_that_batch(tmp_path: Path) -> None:
    """Killed after the batch record but before every pending record was written: the
    rerun must find that batch (it used to plan a second one and strand the first)."""
    out = tmp_path / "out"
    cli = Cli(tmp_path, out)
    with FaultServer() as server:
        rows = [(f"c{i:05}", server.url(f"/p/{i}.jpg")) for i in range(PLANNED)]  # 404s
        corpus = Corpus(write_csv(tmp_path / "many.csv", rows))
        args = run_args(corpus, out)

        planning = cli.start(*args)
        wait_for(lambda: bool(batches(out)), planning, "the batch record")
        kill_9(planning)
        [(batch_id, _)] = batches(out)
        assert len(creator_statuses(out)) < PLANNED  # killed before planning was done

        rerun = cli.start(*args)
        wait_for(lambda: bool(final_creators(out)), rerun, "a creator finished by the rerun")
        kill_9(rerun)

    assert [b for b, _ in batches(out)] == [batch_id]
    assert [(b["batch_id"], b["status"]) for b in cli.status()] == [(batch_id, "interrupted")]
