"""`imgpipe run --crop smart` as a user runs it: face covers as files, the collage's cells checked.

Three runs of the same CSV: centre crop, the default (smart crop), and the default
in a process where OpenCV cannot be imported (as in the Lambda zip: saliency
alone). Each cell is compared with the square of its source cover that the test
expects, from where it put the face.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from tests.e2e.test_cli_local import REPO, imgpipe, write_csv
from tests.support.faces import COVER_SIZE, FaceCover, face_cover
from tests.support.images import encode

pytestmark = pytest.mark.slow

CELL = 200
# Installed first on sys.path: `import cv2` fails as if the wheel were absent.
BLOCK_OPENCV = """
import sys

class _NoOpenCV:
    def find_spec(self, name, path=None, target=None):
        if name == "cv2" or name.startswith("cv2."):
            raise ImportError("OpenCV is blocked in this test")
        return None

sys.meta_path.insert(0, _NoOpenCV())
"""


def face_square(cover: FaceCover) -> Image.Image:
    """The cover's square centred on its face (moved inside the cover), cell-sized."""
    width, height = COVER_SIZE
    middle = (cover.face[1] + cover.face[3]) / 2
    top = round(min(max(middle - width / 2, 0), height - width))
    return cover.image.crop((0, top, width, top + width)).resize((CELL, CELL))


def centre_square(cover: FaceCover) -> Image.Image:
    width, height = COVER_SIZE
    top = (height - width) // 2
    return cover.image.crop((0, top, width, top + width)).resize((CELL, CELL))


def difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def run(tmp_path: Path, name: str, *args: str, env: dict[str, str] | None = None) -> dict:  # type: ignore[type-arg]
    out = tmp_path / name
    result = imgpipe("run", tmp_path / "covers.csv", "--out", out, "--json", *args, env=env)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    (creator,) = summary["creators"]
    metadata = json.loads(next((out / "results" / "metadata").rglob("*.json")).read_text())
    with Image.open(out / creator["collage_key"]) as collage:
        cells = [collage.crop((i * CELL, 0, (i + 1) * CELL, CELL)).convert("RGB") for i in range(3)]
    return {"fingerprint": metadata["fingerprint"], "cells": cells, "summary": summary}


def test_smart_crop_puts_the_faces_in_the_cells(tmp_path: Path) -> None:
    rng = random.Random(21)
    covers = [face_cover(rng, band) for band in ("top", "bottom", "top")]
    rows = []
    for i, cover in enumerate(covers):
        path = tmp_path / f"cover{i}.jpg"
        path.write_bytes(encode(cover.image, "JPEG", quality=85))
        rows.append(("astro", str(path)))
    write_csv(tmp_path / "covers.csv", rows)
    blocker = tmp_path / "no_opencv"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(BLOCK_OPENCV)

    # (the flag wins over the setting)
    centre = run(tmp_path, "centre", "--crop", "center", env={"IMGPIPE_CROP": "smart"})
    smart = run(tmp_path, "smart")  # smart crop is the default
    saliency = run(tmp_path, "saliency", env={"PYTHONPATH": f"{blocker}:{REPO / 'src'}"})

    for cover, smart_cell, centre_cell in zip(covers, smart["cells"], centre["cells"], strict=True):
        expected, middle = face_square(cover), centre_square(cover)
        assert difference(expected, middle) > 15  # the face is far from the centre
        assert difference(smart_cell, expected) < 8, cover.band
        assert difference(centre_cell, middle) < 8
    assert centre["summary"]["settings"]["crop"] == "center"
    assert smart["summary"]["settings"]["crop"] == "smart"
    # Without OpenCV the default still runs, on saliency alone, and every cover is used.
    assert saliency["summary"]["settings"]["crop"] == "smart"
    assert saliency["summary"]["totals"]["images_used"] == len(covers)
    white = Image.new("RGB", (CELL, CELL), "white")
    assert all(difference(cell, white) > 30 for cell in saliency["cells"])  # covers, not gaps
    # Three ways of cropping, three fingerprints: a change of setting (or of the
    # detector a worker has) re-renders.
    fingerprints = {centre["fingerprint"], smart["fingerprint"], saliency["fingerprint"]}
    assert len(fingerprints) == 3
