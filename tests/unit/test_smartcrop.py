"""Smart crop against ground truth: where tests/support/faces.py put the face, not a detector.

Each cover goes the way a cell's does: a 1080x1920 JPEG (q85), draft-decoded to
270x480 by libjpeg for a 200 px cell, and ``square_window`` runs on that draft.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from imgpipe.domain.fingerprints import collage_fingerprint
from imgpipe.domain.layout import center_crop_box
from imgpipe.domain.spec import CROP_MODES, BatchSpec
from imgpipe.entrypoints.cli import CropName
from imgpipe.errors import ConfigError
from imgpipe.imaging import cascade, face_detect, smartcrop
from imgpipe.imaging.decode import load_tile
from imgpipe.imaging.smartcrop import detector_name, square_window
from imgpipe.service.planning import OUTPUT_SETTINGS, batch_identity
from imgpipe.settings import Settings
from tests.support.faces import (
    FaceCover,
    closeup_cover,
    composed_placements,
    face_cover,
    landscape_cover,
    placements,
)
from tests.support.images import encode

CELL = 200
REPO = Path(__file__).resolve().parents[2]


def drafted(cover: FaceCover) -> tuple[Image.Image, bytes]:
    """The draft a 200 px cell is cut from, and the JPEG it was decoded from."""
    data = encode(cover.image, "JPEG", quality=85)
    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (CELL, CELL))
    image.load()
    return image, data


def holds_face(cover: FaceCover, draft: Image.Image, corner: tuple[int, int]) -> bool:
    """Whether the square at ``corner`` of ``draft`` holds the face box (in cover pixels)."""
    scale = cover.image.width / draft.width
    side = min(draft.size) * scale
    left, top = corner[0] * scale, corner[1] * scale
    face = cover.face
    # Half a cover pixel of rounding: the draft is 1/4 of the cover.
    return (
        left - 0.5 <= face[0]
        and top - 0.5 <= face[1]
        and face[2] <= left + side + 0.5
        and face[3] <= top + side + 0.5
    )


@pytest.fixture(scope="module")
def covers() -> list[tuple[FaceCover, Image.Image]]:
    """60 placements (top, middle, bottom in turn), from two seeds, with their drafts."""
    return [(c, drafted(c)[0]) for seed in (0, 1) for c in placements(30, seed)]


@pytest.fixture
def without_opencv(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """As on Lambda: the cascade loader finds no OpenCV."""
    monkeypatch.setattr(face_detect, "load_cascade", lambda: None)
    yield


def hit_rates(covers: list[tuple[FaceCover, Image.Image]]) -> tuple[int, int]:
    smart = sum(holds_face(c, d, square_window(d)) for c, d in covers)
    centre = sum(holds_face(c, d, center_crop_box(*d.size)[:2]) for c, d in covers)
    return smart, centre


def test_smart_crop_frames_the_face_where_the_centre_crop_mostly_does_not(
    covers: list[tuple[FaceCover, Image.Image]],
) -> None:
    assert detector_name() == "faces+saliency"  # the dev install has OpenCV
    smart, centre = hit_rates(covers)
    print(f"face in the window: smart {smart}/60, centre {centre}/60")
    assert smart >= 57, f"smart crop held the face in {smart}/60 covers (>= 95 % wanted)"
    # Only the middle band's faces (a third) can be in the centred square.
    assert 12 <= centre <= 28, f"centre crop held {centre}/60"
    assert smart - centre >= 25


@pytest.fixture(scope="module")
def composed() -> list[tuple[FaceCover, Image.Image]]:
    """60 covers composed like the bundled examples (two seeds), with their drafts."""
    return [(c, drafted(c)[0]) for seed in (0, 1) for c in composed_placements(30, seed)]


def overlaps(box: tuple[int, int, int, int], other: tuple[float, ...]) -> bool:
    return box[0] < other[2] and other[0] < box[2] and box[1] < other[3] and other[1] < box[3]


def test_covers_composed_like_the_examples_are_framed_by_their_faces(
    composed: list[tuple[FaceCover, Image.Image]],
) -> None:
    """The photo over a blurred copy of itself: the orange suit and its blurred copy are
    skin-coloured around the face. Saliency alone often lands on the face there too, so
    the detector is held to finding it (the code before these covers found 34 of 60)."""
    smart, centre = hit_rates(composed)
    found = 0
    for cover, draft in composed:
        scale = draft.width / cover.image.width
        face = tuple(v * scale for v in cover.face)
        found += any(overlaps(f.box, face) for f in face_detect.find_faces(draft, draft.reduce(4)))
    print(f"composed covers: face in the window {smart}/60, found {found}/60, centre {centre}/60")
    assert smart >= 54, f"smart crop held the face in {smart}/60 composed covers (>= 90 % wanted)"
    assert found >= 54, f"the detector found {found}/60 faces (>= 90 % wanted)"
    assert centre < smart


def test_windows_chosen_on_many_threads_at_once_are_the_ones_chosen_alone(
    covers: list[tuple[FaceCover, Image.Image]],
) -> None:
    """Cells are decoded on a thread pool: one OpenCV classifier shared by threads
    returned wrong boxes (a face found on one run, missed on the next)."""
    from concurrent.futures import ThreadPoolExecutor

    drafts = [d for _, d in covers]
    alone = [square_window(d) for d in drafts]
    for _ in range(3):
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(square_window, drafts)) == alone


def test_without_opencv_saliency_alone_still_beats_the_centre(
    covers: list[tuple[FaceCover, Image.Image]], without_opencv: None
) -> None:
    assert detector_name() == "saliency"
    assert face_detect.find_faces(covers[0][1], covers[0][1].reduce(4)) == []
    smart, centre = hit_rates(covers)
    print(f"saliency alone: face in the window {smart}/60, centre {centre}/60")
    assert smart > centre


def test_close_ups_are_framed_too() -> None:
    """Beyond the issue's 8-15 %: faces a quarter to nearly half the cover wide."""
    rng = random.Random(5)
    covers = [closeup_cover(rng, band) for band in ("top", "bottom") * 6]
    held = 0
    for cover in covers:
        draft, _ = drafted(cover)
        held += holds_face(cover, draft, square_window(draft))
    assert held >= 11, f"{held}/12 close-ups framed"


class CountingCascade:
    """The real classifier, counting the scans it is asked for."""

    def __init__(self) -> None:
        self.cascade = cascade.thread_cascade()
        self.scans = 0

    def detectMultiScale(self, image: object, **options: object) -> object:
        self.scans += 1
        return self.cascade.detectMultiScale(image, **options)


def test_the_wide_face_scan_stops_at_the_largest_band_that_makes_a_face() -> None:
    """Faces 12-50 % of the short side are looked for in bands of 2x, the largest first:
    a close-up is found in the 24-48 % band, and the costly 12-24 % band is not scanned;
    a cover without a face pays for all three bands and gets no face."""
    import cv2
    import numpy as np

    cover = closeup_cover(random.Random(5), "top")
    draft, _ = drafted(cover)
    gray = np.asarray(draft.convert("L"))
    short = min(draft.size)
    scan = functools.partial(
        cascade.cascade_at,
        smallest=0.12 * short,
        largest=0.5 * short,
        cv2=cv2,
        step=1.2,
        large_first=True,
        band=2.0,
    )
    counting = CountingCascade()
    faces = scan(gray, cascade=counting)
    scale = draft.width / cover.image.width
    face = tuple(v * scale for v in cover.face)
    assert any(overlaps(f.box, face) for f in faces), (faces, face)
    assert counting.scans == 2  # 48-50 %, then 24-48 %: found
    flat = CountingCascade()
    assert scan(np.full_like(gray, 128), cascade=flat) == []
    assert flat.scans == 3


@pytest.mark.parametrize("side", ["left", "right"])
def test_a_landscape_cover_slides_sideways_to_its_face(side: str) -> None:
    cover = landscape_cover(random.Random(3), side)
    draft, _ = drafted(cover)
    assert draft.size == (480, 270)
    left, top = square_window(draft)
    assert top == 0
    assert (left < 105) if side == "left" else (left > 105)  # 105: the centred window
    assert holds_face(cover, draft, (left, top))


def test_a_square_cover_has_one_window() -> None:
    assert square_window(Image.new("RGB", (300, 300), (200, 150, 120))) == (0, 0)


def test_a_flat_cover_gets_a_window_inside_it() -> None:
    left, top = square_window(Image.new("L", (120, 400), 128))
    assert left == 0 and 0 <= top <= 280


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_an_exif_rotated_cover_is_cropped_as_it_is_shown() -> None:
    """Orientation 6 stores the picture turned a quarter; the face must still be found
    at the top of the cover as displayed, not at the side of the stored pixels."""
    cover = face_cover(random.Random(11), "top")
    upright = encode(cover.image, "JPEG", quality=85)
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed = stored rotated 90 degrees clockwise
    stored = cover.image.transpose(Image.Transpose.ROTATE_90)
    rotated = encode(stored, "JPEG", quality=85, exif=exif.tobytes())
    limits = {"max_pixels": 10**8, "min_size": 50}

    expected = load_tile(upright, CELL, **limits, crop="smart")
    tile = load_tile(rotated, CELL, **limits, crop="smart")
    centre = load_tile(rotated, CELL, **limits, crop="center")
    assert tile.size == (CELL, CELL)
    assert mean_difference(tile, expected) < 4  # the same window, to JPEG noise
    assert mean_difference(tile, centre) > 15  # and not the centre (the face is high up)


def test_a_centre_crop_run_never_imports_opencv(tmp_path: Path) -> None:
    """The Lambda path stays lean: OpenCV is imported by a smart crop only (the default,
    so this run asks for the centre crop)."""
    cover = tmp_path / "a.jpg"
    cover.write_bytes(drafted(face_cover(random.Random(5), "top"))[1])
    (tmp_path / "c.csv").write_text(f"creator,url\nbob,{cover}\n", encoding="utf-8")
    probe = (
        "import atexit, sys\n"
        "atexit.register(lambda: print('cv2 imported:', 'cv2' in sys.modules))\n"
        "from imgpipe.entrypoints.cli import main\n"
        "sys.argv = ['imgpipe', 'run', sys.argv[1], '--out', sys.argv[2], '-q',\n"
        "            '--crop', 'center']\n"
        "main()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "c.csv"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src")},
    )
    assert result.returncode == 0, result.stderr
    assert "cv2 imported: False" in result.stdout
    assert list((tmp_path / "out" / "collages").rglob("*.jpg"))  # it did render


def direct_score(profile: list[float], start: int, window: int) -> float:
    """smartcrop.js's weighted window sum, the slow way."""
    half = window / 2
    return sum(
        profile[start + i] * (1 - 0.6 * ((i + 0.5 - half) / half) ** 2) for i in range(window)
    )


def test_the_saliency_profile_search_matches_the_direct_sum() -> None:
    """The O(n) window search scores every start as the double loop would."""
    rng = random.Random(2)
    for _ in range(20):
        profile = [rng.uniform(0, 255) for _ in range(rng.randrange(5, 60))]
        window = rng.randrange(1, len(profile) + 1)
        scores = [direct_score(profile, s, window) for s in range(len(profile) - window + 1)]
        best = smartcrop._best_start(profile, window)
        assert scores[best] == pytest.approx(max(scores))


def test_the_crop_is_a_checked_option_everywhere_it_is_named() -> None:
    assert [name.value for name in CropName] == list(CROP_MODES)
    assert BatchSpec.of(crop="smart").render.crop == "smart"
    with pytest.raises(ConfigError, match="crop='sideways' .allowed: center, smart."):
        BatchSpec.of(crop="sideways")


def test_smart_is_the_default_crop_and_a_change_of_crop_changes_the_fingerprint(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IMGPIPE_CROP", raising=False)
    assert BatchSpec().render.crop == "smart"
    assert Settings().batch_spec().render.crop == "smart"
    assert Settings().batch_spec(crop="center").render.crop == "center"
    monkeypatch.setenv("IMGPIPE_CROP", "center")
    assert Settings().batch_spec().render.crop == "center"  # the setting still chooses

    def fingerprint(crop: str) -> str:
        shape = {"rows": 5, "cols": 7, "cell_size": 200, "quality": 95}
        detector = detector_name() if crop == "smart" else ""
        return collage_fingerprint(["aa", "bb"], **shape, crop=crop, detector=detector)

    assert fingerprint("smart") != fingerprint("center")


def test_the_default_runs_without_opencv_on_saliency_alone(
    covers: list[tuple[FaceCover, Image.Image]], without_opencv: None
) -> None:
    """The Lambda zip has no OpenCV: a default (smart) cell is still cut, by saliency."""
    cover, _ = covers[0]
    data = encode(cover.image, "JPEG", quality=85)
    crop = BatchSpec().render.crop
    tile = load_tile(data, CELL, max_pixels=10**8, min_size=50, crop=crop)
    assert (crop, detector_name(), tile.size) == ("smart", "saliency", (CELL, CELL))
    draft, _ = drafted(cover)
    left, top = square_window(draft)
    expected = draft.resize((CELL, CELL), box=(left, top, left + draft.width, top + draft.width))
    assert mean_difference(tile, expected) < 4  # the saliency window, to resampling noise


def test_the_batch_identity_names_a_smart_crop_and_keeps_centre_identities() -> None:
    """A smart run is another batch; a centre run's identity is what it was before crops."""
    centre, smart = BatchSpec.of(crop="center"), BatchSpec.of(crop="smart")
    before = json.dumps(
        ["abc", "x.csv", {name: centre.flat()[name] for name in OUTPUT_SETTINGS}], sort_keys=True
    )
    assert (
        batch_identity("abc", centre, source="x.csv")
        == (hashlib.sha256(before.encode()).hexdigest()[:32])
    )
    assert batch_identity("abc", smart, source="x.csv") != batch_identity(
        "abc", centre, source="x.csv"
    )
