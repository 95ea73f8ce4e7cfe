"""The CLI as a user runs it: a real process, a CSV of local covers, a real output folder."""

from __future__ import annotations

import csv
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from PIL import Image

from imgpipe.domain.keys import metadata_key
from tests.support.images import jpeg

REPO = Path(__file__).resolve().parents[2]


def imgpipe(
    *args: str | Path, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m imgpipe ARGS`` in a clean environment, plus ``env``.

    PYTHONPATH puts this checkout's ``src`` first: an editable install may point
    at another checkout (a git worktree shares the main checkout's virtualenv).
    """
    return subprocess.run(
        [sys.executable, "-m", "imgpipe", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(REPO / "src"),
            "IMGPIPE_DATA_DIR": str(cwd or REPO),
            **(env or {}),
        },
    )


def write_csv(path: Path, rows: list[tuple[str, str]], header=("creator", "url")) -> Path:  # type: ignore[no-untyped-def]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_bundled_example_renders_a_gallery(tmp_path: Path) -> None:
    out = tmp_path / "wall"
    result = imgpipe("run", REPO / "examples" / "covers.csv", "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["totals"]["creators"] == 6
    assert summary["totals"]["completed"] == 6 and summary["totals"]["failed"] == 0
    # the example's deliberate problems are reported with their line numbers
    reasons = {(p["line"], p["reason"]) for p in summary["row_problems"]}
    assert {r for _, r in reasons} == {"missing_url", "unsupported_scheme"}
    assert summary["failures_by_reason"]["file_not_found"] == 1
    assert summary["totals"]["duplicate_rows"] == 1
    html = (out / "index.html").read_text(encoding="utf-8")
    for creator in summary["creators"]:
        key = creator["collage_key"]
        assert (out / key).is_file()
        with Image.open(out / key) as image:
            rows = min(creator["images_used"], 35)
            assert image.size == (1400, 200 * -(-rows // 7))
        assert creator["creator"] in html
    # the 40-cover creator is capped at 35 and its name became a safe key
    biggest = max(summary["creators"], key=lambda c: c["images_used"])
    assert biggest["images_used"] == 35
    slash = next(c for c in summary["creators"] if c["creator"] == "café/paris")
    assert "/" not in slash["key"] and (out / "collages" / "by-creator" / slash["key"]).is_dir()
    assert (out / "results" / "processing-summaries" / f"{summary['batch_id']}.json").is_file()
    assert (out / "state.db").is_file()
    # café/paris reposts one cover three times (a re-encode, a resize, brighter): each
    # counts once as a near-duplicate of the original's line, and the others all show
    metadata = json.loads((out / metadata_key(summary["batch_id"], slash["key"])).read_text())
    lines = {c["url"]: c["line"] for c in metadata["covers"]}
    reposts = 0
    for cover in metadata["covers"]:
        # covers/c2_03_q60.jpg is a variant of covers/c2_03.jpg
        variant = re.fullmatch(r"(covers/c\d_\d\d)_\w+\.jpg", cover["url"])
        if variant:
            reposts += 1
            assert cover["reason"] == "near_duplicate", cover
            assert f"cover of line {lines[variant[1] + '.jpg']} " in cover["detail"]
        else:
            assert cover["ok"], cover
    assert reposts == 3
    assert slash["images_used"] == len(metadata["covers"]) - 3 and slash["duplicates"] == 3


def test_bundled_example_covers_are_small_and_9_by_16() -> None:
    covers = sorted((REPO / "examples" / "covers").glob("*.jpg"))
    assert len(covers) >= 117
    assert sum(p.stat().st_size for p in covers) <= 3_000_000  # the repository stays light
    for path in covers:
        with Image.open(path) as image:
            width, height = image.size
            assert width * 16 == height * 9, path.name


def test_rerun_skips_and_status_reports(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg((200, 0, 0)))
    (tmp_path / "b.jpg").write_bytes(jpeg((0, 0, 200)))
    csv_path = write_csv(tmp_path / "in.csv", [("x", "a.jpg"), ("y", "b.jpg")])
    out = tmp_path / "out"
    first = json.loads(imgpipe("run", csv_path, "--out", out, "--json").stdout)
    second_run = imgpipe("run", csv_path, "--out", out, "--json")
    assert second_run.returncode == 0
    second = json.loads(second_run.stdout)
    assert first["totals"]["completed"] == 2
    assert second["totals"]["skipped_unchanged"] == 2

    (tmp_path / "b.jpg").write_bytes(jpeg((0, 200, 0)))
    third = json.loads(imgpipe("run", csv_path, "--out", out, "--json").stdout)
    assert {c["creator"]: c["status"] for c in third["creators"]} == {
        "x": "skipped_unchanged",
        "y": "completed",
    }

    listing = imgpipe("status", "--out", out, "--json")
    assert listing.returncode == 0
    batches = json.loads(listing.stdout)
    assert [b["batch_id"] for b in batches] == [
        third["batch_id"],
        second["batch_id"],
        first["batch_id"],
    ]
    one = json.loads(imgpipe("status", third["batch_id"], "--out", out, "--json").stdout)
    assert {c["creator_name"]: c["status"] for c in one["creators"]} == {
        "x": "skipped_unchanged",
        "y": "completed",
    }


def test_exit_codes(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg((200, 0, 0)))
    missing = imgpipe("run", tmp_path / "nope.csv", "--out", tmp_path / "o")
    assert missing.returncode == 2 and "nope.csv" in missing.stderr

    no_column = write_csv(tmp_path / "cols.csv", [("x", "a.jpg")], header=("who", "what"))
    bad = imgpipe("run", no_column, "--out", tmp_path / "o")
    assert bad.returncode == 2 and "creator" in bad.stderr and "who" in bad.stderr
    assert "--creator-column" in bad.stderr  # the CLI says how to choose the column

    renamed = imgpipe(
        "run", no_column, "--out", tmp_path / "o", "--creator-column", "who",
        "--url-column", "what", "--quiet",
    )  # fmt: skip
    assert renamed.returncode == 0, renamed.stderr

    some_failed = write_csv(tmp_path / "f.csv", [("ok", "a.jpg"), ("ko", "gone.jpg")])
    partial = imgpipe("run", some_failed, "--out", tmp_path / "o", "--json")
    assert partial.returncode == 3
    summary = json.loads(partial.stdout)
    assert summary["failed_urls"][0]["reason"] == "file_not_found"
    assert summary["failed_urls"][0]["line"] == 3

    bad_option = imgpipe("run", some_failed, "--out", tmp_path / "o", "--quality", "0")
    assert bad_option.returncode == 2 and "quality" in bad_option.stderr


# Names that are Rich markup: printed as markup, the first one raised MarkupError
# after the batch had rendered, the others were silently restyled or made a link.
MARKUP_NAMES = ["bob [/]", "[bold]x", "[link=file:///etc/passwd]y[/link]"]


def markup_batch(tmp_path: Path) -> tuple[Path, Path]:
    """A CSV whose creator names, failed URLs and bad rows are all Rich markup."""
    (tmp_path / "a.jpg").write_bytes(jpeg((200, 0, 0)))
    rows = [(name, "a.jpg") for name in MARKUP_NAMES]
    rows += [("[red]gone[/]", "[/]missing.jpg"), ("[i]ftp", "ftp://x/[/]")]
    return write_csv(tmp_path / "markup.csv", rows), tmp_path / "out"


def assert_literal(result: subprocess.CompletedProcess[str], *texts: str) -> None:
    assert "Traceback" not in result.stderr and "MarkupError" not in result.stderr, result.stderr
    for text in texts:
        assert text in result.stdout, (text, result.stdout)


def test_names_from_data_are_printed_as_text_not_markup(tmp_path: Path) -> None:
    csv_path, out = markup_batch(tmp_path)
    wide = {"COLUMNS": "250"}  # no table cell wraps, so each name shows whole

    run = imgpipe("run", csv_path, "--out", out, env=wide)
    assert run.returncode == 3, run.stderr  # rendered, and the missing cover failed
    assert_literal(run, "[red]gone[/]", "[/]missing.jpg", "ftp://x/[/]")

    batch_id = json.loads(imgpipe("status", "--out", out, "--json").stdout)[0]["batch_id"]
    listed = imgpipe("status", "--out", out, env=wide)
    shown = imgpipe("status", batch_id, "--out", out, env=wide)
    assert (listed.returncode, shown.returncode) == (0, 0), shown.stderr
    assert_literal(listed, batch_id)
    assert_literal(shown, *MARKUP_NAMES, "[red]gone[/]")


def test_progress_on_a_terminal_prints_names_as_text(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg((200, 0, 0)))
    csv_path = write_csv(tmp_path / "one.csv", [("bob [/]", "a.jpg")])  # the last one done
    # TTY_COMPATIBLE=1 makes Rich treat the pipe as a terminal: the progress bars
    # are drawn, and the finished creator's name goes into the bar's note.
    env = {"TTY_COMPATIBLE": "1", "NO_COLOR": "1", "COLUMNS": "250"}
    run = imgpipe("run", csv_path, "--out", tmp_path / "out", env=env)
    assert run.returncode == 0, run.stderr
    assert "last: bob [/]" in run.stderr


def test_an_error_message_with_markup_is_printed_as_text(tmp_path: Path) -> None:
    header_only = write_csv(tmp_path / "h.csv", [], header=("[bold]who", "[/]what"))
    result = imgpipe("run", header_only, "--out", tmp_path / "o", env={"COLUMNS": "250"})
    assert result.returncode == 2
    assert "[bold]who" in result.stderr and "[/]what" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_csv_is_exit_2_with_its_line_not_a_traceback(tmp_path: Path) -> None:
    huge = tmp_path / "huge.csv"
    huge.write_text("\ncreator,url," + "x" * 140_000 + "\nAnn,a.jpg\n", encoding="utf-8")
    not_text = tmp_path / "latin1.csv"  # named UTF-8 but is not
    not_text.write_bytes(b"creator,url\nZo\xeb,a.jpg\n")

    for path, message, named in (
        (huge, "line 2: unreadable CSV header", ()),
        (not_text, "line 2: byte 0xeb is not utf-8 text", ("--encoding", "utf-8")),
    ):
        result = imgpipe("run", path, *named, "--out", tmp_path / "o", env={"COLUMNS": "250"})
        assert result.returncode == 2, result.stderr
        assert message in result.stderr and path.name in result.stderr
        assert "Traceback" not in result.stderr
        assert len(result.stderr) < 2_000  # the error names the header, not all of it


def test_rows_beyond_the_apis_limit_is_exit_2_naming_the_option_and_range(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "covers.csv", [("alice", "a.jpg")])
    (tmp_path / "a.jpg").write_bytes(jpeg())

    result = imgpipe("run", csv_path, "--rows", "51", "--out", tmp_path / "out", cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.replace("│", " ").split())
    assert "Invalid value for '--rows': 51 is outside the allowed range, 1 to 50" in message
    assert not (tmp_path / "out").exists()  # refused before anything was started


def test_serve_on_a_busy_port_is_one_line_naming_it_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = imgpipe("serve", "--port", port, "--out", tmp_path / "data", cwd=tmp_path)

    assert result.returncode == 2, result.stderr  # not 3, "some creators failed"
    assert result.stderr.splitlines() == [
        f"error: port {port} on 127.0.0.1 is already in use: stop what listens there"
        " or choose another with --port"
    ]


def test_the_port_serve_announces_already_queues_connections() -> None:
    # serve prints its port before uvicorn starts: a client that connects at once
    # (as test_serve_logs_json_lines does) must wait in the backlog, not be refused
    from imgpipe.entrypoints.cli_service import _listen

    with _listen("127.0.0.1", 0) as listener:
        with socket.create_connection(listener.getsockname(), timeout=5) as client:
            accepted, _ = listener.accept()
            with accepted:
                client.sendall(b"ping")
                assert accepted.recv(4) == b"ping"


def test_serve_answers_on_the_port_it_was_given(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "imgpipe", "serve", "--port", str(port), "--out", tmp_path]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")}
    with subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as server:
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
                    break
                except httpx.TransportError:
                    assert server.poll() is None, f"serve exited {server.returncode}"
                    assert time.monotonic() < deadline, "serve did not answer"
                    time.sleep(0.1)
            assert answer.status_code == 200
        finally:
            server.terminate()
