"""``imgpipe run --notify-url``: a real CLI process, covers and a webhook receiver on 127.0.0.1.

The receiver checks the HMAC signature and drops duplicates by idempotency key
(:mod:`tests.support.webhook`); 127.0.0.0/8 is allowed with the same flag that lets
the covers be fetched. One finished batch, one notice; an interrupted run sends
none, and the rerun that finishes it sends the batch's one notice. A run killed
while its notice is in flight leaves the claim ``sending``; the next ``run`` or
``status`` in that folder sends it again, once.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from imgpipe.domain.keys import notice_key, summary_key
from imgpipe.service.notice import digest_of_stored
from tests.e2e.test_chaos_local import (
    Cli,
    Gated,
    Run,
    batches,
    final_creators,
    kill_9,
    query,
    run_args,
    serve_corpus,
    wait_for,
)
from tests.e2e.test_cli_local import imgpipe, write_csv
from tests.support.covers import GREEN, RED, solid_jpeg
from tests.support.http_server import Exchange, FaultServer, Serve, Status
from tests.support.webhook import Receiver

SECRET = "hook-secret"
ALLOW = ("--allow-private-networks", "127.0.0.0/8")
ENV = {"IMGPIPE_NOTIFY_SECRET": SECRET}


def notice_of(out: Path, batch_id: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((out / notice_key(batch_id)).read_text())
    return data


def test_each_finished_run_posts_one_signed_notice(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with FaultServer() as server:
        receiver = Receiver(SECRET)
        hook = server.add("/hooks/imgpipe", receiver)
        csv = write_csv(
            tmp_path / "covers.csv",
            [
                ("Ann", server.add("/a.jpg", Serve(solid_jpeg(RED)))),
                ("Ann", server.add("/b.jpg", Serve(solid_jpeg(GREEN)))),
                ("Gone", server.add("/gone.jpg", Status(404))),
            ],
        )
        args = ("run", csv, "--out", out, "--json", "--quiet", "--retries", "0", *ALLOW)
        first = imgpipe(*args, "--notify-url", hook, cwd=tmp_path, env=ENV)
        again = imgpipe(*args, "--notify-url", hook, cwd=tmp_path, env=ENV)

    assert first.returncode == 3, first.stderr  # a creator failed; the notice went out
    assert "notice" not in first.stderr
    summary, rerun = json.loads(first.stdout), json.loads(again.stdout)
    # the rerun of a finished input is a batch of its own (unchanged): its own notice
    assert [d["batch_id"] for d in receiver.accepted] == [summary["batch_id"], rerun["batch_id"]]
    assert receiver.rejected == 0 and receiver.duplicates == 0
    digest = receiver.accepted[0]
    assert digest["status"] == "completed_with_failures"
    assert digest["counts"] == {
        name: summary["totals"][name]
        for name in ("creators", "completed", "skipped_unchanged", "failed")
        + ("images_used", "images_failed")
    }
    assert digest["failure_reasons"] == summary["failures_by_reason"] == {"http_404": 1}
    assert digest["summary_key"] == summary["summary_key"]
    assert "summary_url" not in digest  # IMGPIPE_NOTIFY_PRESIGN_SECONDS is off by default
    # the outcome is beside the summary, which does not mention it
    recorded = notice_of(out, summary["batch_id"])
    assert recorded["state"] == "done"
    (delivery,) = recorded["deliveries"]  # type: ignore[misc]
    assert delivery["status"] == "sent" and delivery["status_code"] == 202
    assert "notice" not in json.loads((out / summary["summary_key"]).read_text())["extra"]
    assert summary["extra"]["notice"] == recorded  # what --json shows


def test_a_failed_notice_is_one_line_and_the_exit_code_stays_the_batchs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with FaultServer() as server:
        hook = server.add("/hooks/refusing", Status(400))
        csv = write_csv(tmp_path / "c.csv", [("Ann", server.add("/a.jpg", Serve(solid_jpeg(RED))))])
        done = imgpipe(
            "run", csv, "--out", out, "--json", "--quiet", *ALLOW, "--notify-url", hook,
            cwd=tmp_path, env=ENV,
        )  # fmt: skip
        hits = server.hits("/hooks/refusing")

    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"notice not sent: notice to {hook} answered HTTP 400 (1 attempt(s))"
    ]
    assert hits == 1  # a 4xx is not retried
    batch_id = json.loads(done.stdout)["batch_id"]
    (delivery,) = notice_of(out, batch_id)["deliveries"]  # type: ignore[misc]
    assert (delivery["status"], delivery["status_code"], delivery["attempts"]) == ("failed", 400, 1)


def test_a_loopback_notice_url_is_refused_unless_allowed(tmp_path: Path) -> None:
    with FaultServer() as server:
        hook = server.add("/hooks/imgpipe", Receiver())
        csv = write_csv(tmp_path / "c.csv", [("Ann", "https://img.example/a.jpg")])
        refused = imgpipe(
            "run", csv, "--out", tmp_path / "out", "--quiet", "--notify-url", hook, cwd=tmp_path
        )
        hits = server.hits()

    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: notice URL {hook} is refused: loopback address outside the allowed networks "
        "(allow its network with IMGPIPE_ALLOW_PRIVATE_NETWORKS)"
    )
    assert hits == 0


@pytest.mark.slow
def test_an_interrupted_run_sends_nothing_and_the_rerun_sends_it_once(tmp_path: Path) -> None:
    out = tmp_path / "out"
    cli = Cli(tmp_path, out)
    cli.env.update(ENV)
    with FaultServer() as server:
        receiver = Receiver(SECRET)
        hook = server.add("/hooks/imgpipe", receiver)
        corpus = serve_corpus(server, tmp_path / "covers.csv", [4] * 12)
        args = run_args(corpus, out, "--notify-url", hook)
        run = cli.start(*args)
        wait_for(lambda: len(final_creators(out)) >= 3, run, "3 creators final")
        assert run.signal(signal.SIGTERM) == 143, run.stderr
        assert server.hits("/hooks/imgpipe") == 0
        assert not list((out / "results").rglob("*.notice.json"))

        last = cli.run(*args)

    assert last.code == 0, last.stderr
    batch_id = last.summary()["batch_id"]
    assert [d["batch_id"] for d in receiver.accepted] == [batch_id]
    assert receiver.accepted[0]["counts"]["completed"] == 12
    assert server.hits("/hooks/imgpipe") == 1 and receiver.duplicates == 0


@dataclass(frozen=True)
class Held:
    """Keeps the request in flight, unanswered, until ``released`` (the sender is killed)."""

    released: threading.Event

    def respond(self, exchange: Exchange) -> None:
        while not self.released.is_set() and not exchange.wait(0.02):
            pass


@pytest.mark.slow
@pytest.mark.parametrize("next_command", ["status", "run"])
def test_a_run_killed_mid_send_has_its_notice_sent_by_the_next_command(
    tmp_path: Path, next_command: str
) -> None:
    out = tmp_path / "out"
    cli = Cli(tmp_path, out)
    cli.env.update(ENV)
    released = threading.Event()
    with FaultServer() as server:
        receiver = Receiver(SECRET, Held(released))  # the first POST never gets an answer
        hook = server.add("/hooks/imgpipe", receiver)
        corpus = serve_corpus(server, tmp_path / "covers.csv", [2] * 3)
        args = run_args(corpus, out, "--notify-url", hook)
        run = cli.start(*args)
        wait_for(lambda: server.hits("/hooks/imgpipe") == 1, run, "the notice in flight")
        kill_9(run)  # claimed, sending, not recorded: before this change, stuck for good
        released.set()
        (claim,) = (out / "results").rglob("*.notice.json")
        stranded = json.loads(claim.read_text())
        assert (stranded["state"], stranded["deliveries"]) == ("sending", [])
        batch_id = stranded["batch_id"]

        if next_command == "status":  # it has no flags: the channel comes from the settings
            cli.env.update(IMGPIPE_NOTIFY_URL=hook, IMGPIPE_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8")
            status = cli.run("status", "--out", out, "--json")
            assert status.code == 0, status.stderr
            listed = {b["batch_id"]: b["status"] for b in json.loads(status.stdout)}
            assert listed == {batch_id: "completed"}
            assert status.stderr == f"notice of batch {batch_id} sent: its sender " + (
                "stopped before it went out\n"
            )
            later: list[str] = []
        else:
            rerun = cli.run(*args)
            assert rerun.code == 0, rerun.stderr
            later = [rerun.summary()["batch_id"]]  # the rerun is a batch of its own
        assert cli.run("status", "--out", out).stderr == ""  # done: nothing more goes out
        requests = server.requests("/hooks/imgpipe")

    # the stranded notice went out once more, before the rerun's own, and only once
    assert [d["batch_id"] for d in receiver.accepted] == [batch_id, *later]
    assert len(requests) == 2 + len(later) and receiver.duplicates == 0
    first, again = requests[0], requests[1]
    assert first.body == again.body  # the same digest ...
    assert first.headers["Idempotency-Key"] == again.headers["Idempotency-Key"] == batch_id
    done = notice_of(out, batch_id)
    assert (done["state"], done["attempt"]) == ("done", 2)
    (delivery,) = done["deliveries"]  # type: ignore[misc]
    assert (delivery["status"], delivery["status_code"]) == ("sent", 202)
    notices = sorted(p.name for p in (out / "results").rglob("*.notice.json"))
    assert notices == sorted(f"{b}.notice.json" for b in [batch_id, *later])


# -- killed after the summary, before the notice went out -------------------------------
#
# The seam is made of real parts, no hook in the code: finalize reads the batch's plan
# right after claiming the summary, so a FIFO in the plan's place stops the run there;
# the test then holds the state database's write lock, so the run writes the summary
# and the gallery and waits to close the batch record; meanwhile the notice claim's
# file becomes a FIFO, so once the batch is closed the run stops again where it reads
# its claim back, before sending. There it is killed.


def _fifo_instead_of(path: Path) -> bytes:
    """Replace ``path`` by a FIFO: a reader blocks until the test writes. Its bytes."""
    data = path.read_bytes()
    path.unlink()
    os.mkfifo(path)
    return data


def _feed_fifo(path: Path, data: bytes, run: Run) -> None:
    """Write ``data`` to the FIFO once the run opened it for reading."""
    deadline = time.monotonic() + 20
    while True:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO: no reader yet
            break
        except OSError as exc:
            if exc.errno != errno.ENXIO or run.process.poll() is not None:
                raise
            if time.monotonic() > deadline:
                pytest.fail("the run never read the plan")
            time.sleep(0.005)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)


def _restore(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


def _kill_after_the_summary(cli: Cli, args: tuple[str | Path, ...], gate: threading.Event) -> str:
    """Run until the batch is closed with its summary, kill -9 before the notice goes
    out; the batch id."""
    out = cli.out
    run = cli.start(*args)
    wait_for(lambda: any(out.glob("processing/*/plan.json")), run, "the plan")
    (plan,) = out.glob("processing/*/plan.json")
    batch_id = plan.parent.name
    plan_data = _fifo_instead_of(plan)
    gate.set()  # the last creator's covers go out; then the batch is finished
    claimed = "SELECT summary_claimed FROM batches WHERE batch_id = ?"
    wait_for(lambda: query(out, claimed, batch_id) not in ([], [(0,)]), run, "the summary claim")
    lock = sqlite3.connect(out / "state.db", timeout=10, isolation_level=None)
    try:
        lock.execute("BEGIN IMMEDIATE")  # the batch record waits for this write lock
        _feed_fifo(plan, plan_data, run)
        notice = out / notice_key(batch_id)
        wait_for(lambda: (out / "index.html").exists(), run, "the summary and gallery")
        assert (out / summary_key(batch_id)).exists()
        claim = _fifo_instead_of(notice)
        assert json.loads(claim)["state"] == "pending"  # claimed before the summary
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    closed = "SELECT summary_key FROM batches WHERE batch_id = ?"
    wait_for(lambda: query(out, closed, batch_id) == [(summary_key(batch_id),)], run, "closed")
    kill_9(run)  # in its read of the claim: summary written, batch closed, nothing sent
    _restore(notice, claim)
    _restore(plan, plan_data)
    return batch_id


@pytest.mark.slow
@pytest.mark.parametrize("next_command", ["status", "run"])
def test_a_run_killed_between_its_summary_and_its_notice_has_it_sent_once(
    tmp_path: Path, next_command: str
) -> None:
    out = tmp_path / "out"
    cli = Cli(tmp_path, out)
    cli.env.update(ENV)
    gate = threading.Event()
    with FaultServer() as server:
        receiver = Receiver(SECRET)
        hook = server.add("/hooks/imgpipe", receiver)
        corpus = serve_corpus(
            server,
            tmp_path / "covers.csv",
            [2] * 3,
            wrap=lambda index, behaviour: Gated(behaviour, gate) if index == 2 else behaviour,
        )
        args = run_args(corpus, out, "--notify-url", hook)
        batch_id = _kill_after_the_summary(cli, args, gate)
        assert server.hits("/hooks/imgpipe") == 0
        stranded = notice_of(out, batch_id)
        assert (stranded["state"], stranded["digest"], stranded["deliveries"]) == (
            "pending", {}, []
        )  # fmt: skip
        assert batches(out) == [(batch_id, "completed")]

        if next_command == "status":
            cli.env.update(IMGPIPE_NOTIFY_URL=hook, IMGPIPE_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8")
            status = cli.run("status", "--out", out)
            assert status.code == 0, status.stderr
            assert status.stderr == (
                f"notice of batch {batch_id} sent: its sender stopped before it went out\n"
            )
            later: list[str] = []
        else:
            rerun = cli.run(*args)
            assert rerun.code == 0, rerun.stderr
            later = [rerun.summary()["batch_id"]]  # an unchanged rerun: a batch of its own
        assert cli.run("status", "--out", out).stderr == ""  # done: nothing more goes out
        requests = server.requests("/hooks/imgpipe")

    assert [d["batch_id"] for d in receiver.accepted] == [batch_id, *later]
    assert len(requests) == 1 + len(later) and receiver.duplicates == 0
    assert requests[0].headers["Idempotency-Key"] == batch_id
    written = json.loads((out / summary_key(batch_id)).read_text())
    assert receiver.accepted[0] == digest_of_stored(written)  # what its writer would have sent
    assert receiver.accepted[0]["counts"]["completed"] == 3
    done = notice_of(out, batch_id)
    assert (done["state"], done["attempt"]) == ("done", 2)
    (delivery,) = done["deliveries"]  # type: ignore[misc]
    assert (delivery["status"], delivery["status_code"]) == ("sent", 202)
