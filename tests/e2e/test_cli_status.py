"""``imgpipe status`` on an 80-column terminal, a batch whose every creator failed, bad settings."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli_local import imgpipe, write_csv
from tests.support.images import jpeg


def test_status_at_80_columns_shows_whole_ids_and_a_failed_batch(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(jpeg((200, 0, 0)))
    out = tmp_path / "out"
    good = write_csv(tmp_path / "good.csv", [("ok", "a.jpg"), ("ko", "gone.jpg")])
    lost = write_csv(tmp_path / "lost.csv", [("x", "gone.jpg"), ("y", "also-gone.jpg")])
    partial = json.loads(imgpipe("run", good, "--out", out, "--json").stdout)
    failing = imgpipe("run", lost, "--out", out, "--json")
    failed = json.loads(failing.stdout)
    assert partial["status"] == "completed_with_failures"
    assert failed["status"] == "failed" and failing.returncode == 3

    narrow = {"COLUMNS": "80"}
    listed = imgpipe("status", "--out", out, env=narrow)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    for batch_id, status in ((partial["batch_id"], "completed"), (failed["batch_id"], "failed")):
        (row,) = [line for line in lines if batch_id in line]  # whole, on one line
        assert status in row
    assert "…" not in listed.stdout

    shown = imgpipe("status", failed["batch_id"], "--out", out, env=narrow)
    assert f"{failed['batch_id']} failed: 0 rendered" in shown.stdout


def test_the_static_gallery_shows_previews_shaped_like_their_collages(tmp_path: Path) -> None:
    for name, colour in (("a", (200, 0, 0)), ("b", (0, 0, 200)), ("c", (0, 200, 0))):
        (tmp_path / f"{name}.jpg").write_bytes(jpeg(colour))
    rows = [("row", "a.jpg"), ("row", "b.jpg"), ("full", "a.jpg"), ("full", "b.jpg")]
    rows += [("full", "c.jpg")]
    csv_path = write_csv(tmp_path / "in.csv", rows)
    out = tmp_path / "out"
    ran = imgpipe("run", csv_path, "--out", out, "--cols", "2", "--json")
    summary = json.loads(ran.stdout)

    gallery = (out / "index.html").read_text(encoding="utf-8")
    for entry in summary["creators"]:
        preview, collage = entry["preview_key"], entry["collage_key"]
        assert (out / preview).is_file() and preview.endswith(".w480.webp")
        assert f'src="{preview}" srcset="{preview} 1x, {collage} 2x"' in gallery
    shapes = {c["creator"]: (c["width"], c["height"]) for c in summary["creators"]}
    assert shapes == {"row": (400, 200), "full": (400, 400)}
    assert 'style="aspect-ratio: 400 / 200"' in gallery


def test_status_refuses_bad_settings_in_one_line_as_run_does(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    csv_path = write_csv(tmp_path / "in.csv", [("ok", "a.jpg")])
    private_hook = {"IMGPIPE_NOTIFY_URL": "http://10.0.0.1/hook"}  # the notice's address guard
    refused = imgpipe("status", "--out", out, env=private_hook)
    assert refused.returncode == 2
    assert refused.stdout == ""
    (line,) = refused.stderr.splitlines()  # one line, no traceback
    assert line.startswith("error: notice URL http://10.0.0.1/hook is refused: private address")
    ran = imgpipe("run", csv_path, "--out", out, env=private_hook)
    assert (ran.returncode, ran.stderr) == (2, refused.stderr)

    unparsable = imgpipe("status", "--out", out, env={"IMGPIPE_DEFAULT_ROWS": "many"})
    assert unparsable.returncode == 2
    assert unparsable.stderr.startswith("error: invalid settings:")
    assert "IMGPIPE_DEFAULT_ROWS" in unparsable.stderr and "Traceback" not in unparsable.stderr
