"""``--log-format json``: one JSON object per stderr line, with batch_id and creator.

A real ``imgpipe`` process on local covers (and ``serve`` on a real port); the
text format, the default, stays the format people always read.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.test_cli_local import REPO, imgpipe, write_csv
from tests.support.images import jpeg


def covers(tmp_path: Path) -> Path:
    (tmp_path / "a.jpg").write_bytes(jpeg((200, 30, 30), (300, 300)))
    (tmp_path / "b.jpg").write_bytes(jpeg((30, 200, 30), (300, 300)))
    rows = [("Ann", "a.jpg"), ("Ann", "gone.jpg"), ("Bo", "b.jpg"), ("Bo", "a.jpg")]
    return write_csv(tmp_path / "covers.csv", rows)


def json_lines(stderr: str) -> list[dict[str, Any]]:
    """Every stderr line parsed; a line that is not one JSON object fails the test."""
    records = [json.loads(line) for line in stderr.splitlines()]
    assert records and all(isinstance(r, dict) for r in records)
    return records


def test_run_logs_json_lines_with_the_batch_and_creator(tmp_path: Path) -> None:
    csv_file = covers(tmp_path)
    result = imgpipe("run", csv_file, "--log-format", "json", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)  # stdout holds the summary alone, no log line
    batch_id = summary["batch_id"]
    records = json_lines(result.stderr)
    for record in records:
        assert {"timestamp", "level", "message", "logger"} <= record.keys()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["timestamp"])
    per_creator = [r for r in records if r["logger"] == "imgpipe.events"]
    assert {r["creator"] for r in per_creator} == {"Ann", "Bo"}
    assert all(r["batch_id"] == batch_id for r in per_creator)
    # the failed cover's record names its URL, reason and CSV line, under its creator
    (failed,) = [r for r in per_creator if r["message"].startswith("cover failed")]
    assert failed["url"] == "gone.jpg" and "gone.jpg" in failed["message"]
    assert failed["reason"] == "file_not_found" and failed["line"] == 3
    assert failed["creator"] == "Ann"
    done = {r["creator"]: r for r in per_creator if r["message"].startswith("creator ")}
    assert done["Ann"]["failed_covers"] == 1 and done["Bo"]["images_used"] == 2
    # batch-level records (progress, the summary) carry the batch but no creator
    batch_level = [
        r for r in records if r["logger"] in ("imgpipe.progress", "imgpipe.service.closing")
    ]
    assert any(r["message"] == "creators 2/2 done (0 failed)" for r in batch_level)
    assert any(r["message"].startswith(f"batch {batch_id} complete") for r in batch_level)
    assert all(r["batch_id"] == batch_id and "creator" not in r for r in batch_level)


def test_the_environment_chooses_json_too(tmp_path: Path) -> None:
    csv_file = covers(tmp_path)
    result = imgpipe("run", csv_file, "--quiet", cwd=tmp_path, env={"IMGPIPE_LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stderr
    # --quiet keeps warnings only, and none happened: nothing at all on stderr
    assert result.stderr == ""
    result = imgpipe("run", csv_file, "--force", cwd=tmp_path, env={"IMGPIPE_LOG_FORMAT": "JSON"})
    assert result.returncode == 0, result.stderr
    assert any(r.get("creator") == "Bo" for r in json_lines(result.stderr))


def test_text_logs_are_unchanged_and_leave_out_per_creator_records(tmp_path: Path) -> None:
    csv_file = covers(tmp_path)
    result = imgpipe("run", csv_file, "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    text = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (INFO|WARNING) [\w.]+: .+")
    assert lines and all(text.fullmatch(line) for line in lines), lines
    assert not any("imgpipe.events" in line or "cover failed" in line for line in lines)
    assert json.loads(result.stdout)["totals"]["completed"] == 2


def test_an_unknown_log_format_is_exit_2_naming_the_option(tmp_path: Path) -> None:
    result = imgpipe("run", covers(tmp_path), "--log-format", "xml", cwd=tmp_path)
    assert result.returncode == 2
    assert "--log-format" in result.stderr and "xml" in result.stderr


def test_serve_logs_json_lines(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "imgpipe", "serve", "--port", "0", "--out", str(tmp_path),
        "--log-format", "json",
    ]  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")}
    with subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) as server:
        try:
            assert server.stderr is not None
            lines: list[dict[str, Any]] = []
            while not any("port" in r for r in lines):  # the banner, as a JSON record
                line = server.stderr.readline()
                assert line, f"serve exited: {lines}"
                lines.append(json.loads(line))
            port = next(r["port"] for r in lines if "port" in r)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
            # uvicorn's access log reaches our handler: a JSON line naming the path
            while True:
                record = json.loads(server.stderr.readline())
                if record["logger"] == "uvicorn.access":
                    break
            assert "/healthz" in record["message"] and record["level"] == "INFO"
        finally:
            server.terminate()
            server.wait(timeout=30)
