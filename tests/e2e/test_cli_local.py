"""The CLI as a user runs it: a real process, a CSV of local covers, a real output folder."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.support.images import jpeg

REPO = Path(__file__).resolve().parents[2]


def imgpipe(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgpipe", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "IMGPIPE_DATA_DIR": str(cwd or REPO)},
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
