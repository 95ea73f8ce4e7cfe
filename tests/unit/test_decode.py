"""Decoding untrusted bytes into cells: formats, modes, orientation, limits, speed tricks."""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageFile, ImageStat, JpegImagePlugin, WebPImagePlugin

from imgpipe.domain.records import Reason
from imgpipe.errors import ImageError, ImgpipeError
from imgpipe.imaging.budget import DecodeBudget
from imgpipe.imaging.decode import ImageInfo, load_fitted, load_tile, probe
from tests.support import covers
from tests.support.covers import BLUE, GREEN, RED, WHITE, YELLOW, Color, color_close
from tests.support.images import encode

LIMITS = {"max_pixels": 64_000_000, "min_size": 50}
SIZE = 200


def cell_of(data: bytes, size: int = SIZE) -> Image.Image:
    cell = load_tile(data, size, **LIMITS)
    assert (cell.mode, cell.size) == ("RGB", (size, size))
    return cell


def at(cell: Image.Image, fx: float, fy: float) -> object:
    """Pixel at a fraction of the cell's width and height."""
    return cell.getpixel((int(fx * (cell.width - 1)), int(fy * (cell.height - 1))))


def refused(data: bytes, reason: Reason, **limits: int) -> ImageError:
    """Both entry points refuse ``data`` for ``reason``; returns load_tile's error."""
    merged = {**LIMITS, **limits}
    with pytest.raises(ImageError) as probed:
        probe(data, max_pixels=merged["max_pixels"], min_size=merged["min_size"])
    assert probed.value.reason == reason
    with pytest.raises(ImageError) as loaded:
        load_tile(data, SIZE, max_pixels=merged["max_pixels"], min_size=merged["min_size"])
    assert loaded.value.reason == reason
    assert isinstance(loaded.value, ImgpipeError)
    return loaded.value


@pytest.fixture
def decoded_sizes(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[int, int]]]:
    """Spy: the size of every image Pillow actually decodes (ImageFile.load)."""
    sizes: list[tuple[int, int]] = []
    original = ImageFile.ImageFile.load

    def spy(self: ImageFile.ImageFile) -> object:
        pending = bool(self.tile)  # load() is a no-op once the tiles are decoded
        result = original(self)
        if pending:
            sizes.append(self.size)
        return result

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    yield sizes


# -- colours survive every format and mode -----------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: covers.solid_jpeg(RED), RED),
        (lambda: covers.solid_jpeg(YELLOW, (1920, 1080), quality=80), YELLOW),
        (lambda: covers.solid_png(GREEN), GREEN),
        (lambda: covers.solid_webp(BLUE), BLUE),
        (lambda: covers.solid_webp(YELLOW, lossless=True), YELLOW),
        (lambda: covers.solid_avif(GREEN), GREEN),
        (lambda: covers.solid_heic(BLUE), BLUE),
        (lambda: covers.cmyk_jpeg((0, 255, 255, 0)), (255, 0, 0)),
        (lambda: covers.cmyk_jpeg((255, 0, 255, 0)), (0, 255, 0)),
        (lambda: covers.gray_png(90), (90, 90, 90)),
        (lambda: covers.gray_jpeg(170), (170, 170, 170)),
        (lambda: covers.gray16_png(0x8000), (128, 128, 128)),
        (lambda: covers.gray16_png(0xFFFF), (255, 255, 255)),
        (lambda: covers.gray16_tiff(0x4000), (64, 64, 64)),
        (lambda: covers.gray32_tiff(0xC000), (192, 192, 192)),
        (lambda: covers.animated_gif((RED, GREEN)), RED),
        (lambda: covers.animated_webp((BLUE, GREEN)), BLUE),
    ],
    ids=[
        "jpeg",
        "jpeg-landscape",
        "png",
        "webp-lossy",
        "webp-lossless",
        "avif",
        "heic",
        "cmyk-red",
        "cmyk-green",
        "gray-png",
        "gray-jpeg",
        "16bit-png",
        "16bit-png-max",
        "16bit-tiff-bigendian",
        "32bit-int-tiff",
        "gif-first-frame",
        "webp-first-frame",
    ],
)
def test_uniform_covers_keep_their_colour(make: Callable[[], bytes], expected: Color) -> None:
    cell = cell_of(make())
    for fx, fy in [(0.5, 0.5), (0, 0), (1, 1), (0, 1), (1, 0)]:
        assert color_close(at(cell, fx, fy), expected), (fx, fy, at(cell, fx, fy))


@pytest.mark.parametrize("size", [1, 64, 200, 333])
def test_cell_size_is_what_was_asked(size: int) -> None:
    cell = cell_of(covers.solid_jpeg(RED, (600, 900)), size)
    assert color_close(at(cell, 0.5, 0.5), RED)


def test_cell_size_must_be_positive() -> None:
    with pytest.raises(ValueError):
        load_tile(covers.solid_png(), 0, **LIMITS)


@pytest.mark.parametrize("size", [(200, 600), (600, 200), (90, 270)])
def test_center_crop_keeps_the_middle(size: tuple[int, int]) -> None:
    cell = cell_of(covers.banded_png((BLUE, RED, GREEN), size))
    # A few pixels in from the edges, where the filter sees only the middle band.
    for fx, fy in [(0.5, 0.5), (0.03, 0.03), (0.97, 0.97), (0.03, 0.97), (0.97, 0.03)]:
        assert color_close(at(cell, fx, fy), RED, tol=4), (fx, fy, at(cell, fx, fy))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_cell_matches_a_full_resolution_lanczos_fit(fmt: str) -> None:
    """Draft + cheap filter (JPEG) and reduce + bicubic (PNG) stay faithful to the slow way."""
    source = covers.noisy_jpeg((1200, 1800), seed=3)
    with Image.open(io.BytesIO(source)) as image:
        data = source if fmt == "JPEG" else encode(image, "PNG")
    with Image.open(io.BytesIO(data)) as image:
        full = image.convert("RGB")
    gold = full.resize((SIZE, SIZE), Image.Resampling.LANCZOS, box=(0, 300, 1200, 1500))
    per_channel = ImageStat.Stat(ImageChops.difference(cell_of(data), gold)).mean
    # Mean difference out of 255: ~1.6 (PNG) and ~2.2 (JPEG); NEAREST gives 6-36.
    assert sum(per_channel) / 3 < 3.0, per_channel


# -- alpha is flattened onto white --------------------------------------------


@pytest.mark.parametrize(
    ("make", "opaque"),
    [
        (lambda: covers.palette_png(RED), RED),
        (lambda: covers.rgba_png(BLUE), BLUE),
        (lambda: covers.la_png(60), (60, 60, 60)),
    ],
    ids=["palette-trns", "rgba", "la"],
)
def test_transparent_regions_become_white(make: Callable[[], bytes], opaque: Color) -> None:
    cell = cell_of(make())  # top half transparent, bottom half opaque
    assert color_close(at(cell, 0.5, 0.2), WHITE, tol=2)
    assert color_close(at(cell, 0.5, 0.8), opaque, tol=2)


def test_bilevel_image() -> None:
    cell = cell_of(covers.bilevel_png())
    assert at(cell, 0.5, 0.2) == (0, 0, 0)
    assert at(cell, 0.5, 0.8) == (255, 255, 255)


# -- EXIF orientation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("orientation", "top", "bottom", "left", "right"),
    [
        (1, None, None, RED, BLUE),
        (3, None, None, BLUE, RED),  # rotated 180
        (6, RED, BLUE, None, None),  # stored left half ends on top
        (8, BLUE, RED, None, None),
    ],
)
@pytest.mark.parametrize("make", [covers.exif_rotated_jpeg, covers.exif_rotated_png])
def test_exif_orientation_is_applied(
    make: Callable[..., bytes],
    orientation: int,
    top: Color | None,
    bottom: Color | None,
    left: Color | None,
    right: Color | None,
) -> None:
    data = make(orientation, left=RED, right=BLUE, size=(480, 320))
    cell = cell_of(data)
    if top is not None and bottom is not None:
        assert color_close(at(cell, 0.5, 0.1), top)
        assert color_close(at(cell, 0.5, 0.9), bottom)
    if left is not None and right is not None:
        assert color_close(at(cell, 0.1, 0.5), left)
        assert color_close(at(cell, 0.9, 0.5), right)
    info = probe(data, **LIMITS)
    assert (info.width, info.height) == ((320, 480) if orientation in (6, 8) else (480, 320))


# -- probe --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: covers.solid_jpeg(RED, (320, 480)), ImageInfo("jpeg", 320, 480)),
        (lambda: covers.solid_png(GREEN, (500, 60)), ImageInfo("png", 500, 60)),
        (lambda: covers.solid_webp(BLUE, (64, 64)), ImageInfo("webp", 64, 64)),
        (lambda: covers.animated_gif(), ImageInfo("gif", 320, 480)),
        (lambda: covers.gray16_tiff(), ImageInfo("tiff", 320, 480)),
        (lambda: covers.cmyk_jpeg(), ImageInfo("jpeg", 320, 480)),
    ],
)
def test_probe_reports_format_and_size(make: Callable[[], bytes], expected: ImageInfo) -> None:
    assert probe(make(), **LIMITS) == expected


def test_probe_decodes_no_pixels(decoded_sizes: list[tuple[int, int]]) -> None:
    probe(covers.noisy_jpeg(), **LIMITS)
    probe(covers.exif_rotated_png(6), **LIMITS)  # PNG EXIF must not force a decode
    assert decoded_sizes == []
    cell_of(covers.solid_png())  # the spy does see real decodes
    assert decoded_sizes == [(320, 480)]


# -- refusals -----------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [covers.html_page(), b"", b"\x00" * 64, b"GIF89a", b"\x89PNG\r\n\x1a\n" + b"\x00" * 8],
    ids=["html", "empty", "zeros", "gif-signature-only", "png-signature-only"],
)
def test_not_an_image(data: bytes) -> None:
    refused(data, Reason.NOT_AN_IMAGE)


def test_too_small() -> None:
    error = refused(covers.tiny_png((20, 400)), Reason.TOO_SMALL)
    assert "20x400" in error.detail


def test_min_size_boundary() -> None:
    data = covers.solid_png(RED, (50, 80))
    assert probe(data, max_pixels=10**6, min_size=50) == ImageInfo("png", 50, 80)
    refused(data, Reason.TOO_SMALL, min_size=51)


def test_max_pixels_boundary() -> None:
    data = covers.solid_png(RED, (100, 100))
    assert probe(data, max_pixels=10_000, min_size=1).width == 100
    refused(data, Reason.TOO_LARGE, max_pixels=9_999)


@pytest.mark.parametrize(
    "data",
    [
        covers.bomb_png(50_000, 50_000),
        covers.bomb_png(10_000, 10_000),
        covers.bomb_gif(40_000, 40_000),
        covers.bomb_webp(),
        covers.bomb_avif(),
        covers.bomb_heic(),
    ],
    ids=["png-2.5gp", "png-100mp", "gif-1.6gp", "webp-100mp", "avif-81mp", "heic-81mp"],
)
def test_bombs_are_refused_from_the_header(
    data: bytes, decoded_sizes: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    opened_webp: list[object] = []
    original_open = WebPImagePlugin.WebPImageFile._open

    def spy_open(self: WebPImagePlugin.WebPImageFile) -> None:
        opened_webp.append(self)  # this is where Pillow allocates a WebP canvas
        original_open(self)

    monkeypatch.setattr(WebPImagePlugin.WebPImageFile, "_open", spy_open)
    assert len(data) < 1_000  # cheap to make, ruinous to decode
    with warnings.catch_warnings(record=True) as caught:
        # Record instead of raise, so a DecompressionBombWarning can't hide
        # behind our own error: Pillow must not warn at all.
        warnings.simplefilter("always")
        error = refused(data, Reason.TOO_LARGE)
    assert caught == []
    assert decoded_sizes == []
    assert opened_webp == []
    assert "exceeds 64000000 pixels" in error.detail


def test_truncated_jpeg_is_a_decode_error() -> None:
    data = covers.truncated_jpeg()
    assert probe(data, **LIMITS) == ImageInfo("jpeg", 640, 960)  # the header is fine
    with pytest.raises(ImageError) as caught:
        load_tile(data, SIZE, **LIMITS)
    assert caught.value.reason == Reason.DECODE_ERROR
    assert "truncated" in caught.value.detail
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False  # we never flip the global switch


def test_truncated_png_is_a_decode_error() -> None:
    data = covers.solid_png(RED, (400, 400))
    with pytest.raises(ImageError) as caught:
        load_tile(data[: len(data) - 40], SIZE, **LIMITS)
    assert caught.value.reason == Reason.DECODE_ERROR


# -- speed: JPEGs are decoded at reduced DCT scale -------------------------------


@pytest.mark.parametrize(
    ("source", "cell", "decoded"),
    [
        ((3200, 4800), 200, (400, 600)),  # 1/8: the smallest scale ever needed
        ((1080, 1920), 200, (270, 480)),  # 1/4: 1/8 would leave a 135 px crop
        ((1920, 1080), 200, (480, 270)),
        ((400, 600), 200, (200, 300)),  # 1/2 leaves exactly 200
        ((399, 600), 200, (399, 600)),  # 1/2 would leave 199.5: full scale
        ((3200, 4800), 800, (800, 1200)),
    ],
)
def test_jpeg_draft_decodes_at_reduced_scale(
    source: tuple[int, int],
    cell: int,
    decoded: tuple[int, int],
    decoded_sizes: list[tuple[int, int]],
) -> None:
    result = cell_of(covers.solid_jpeg(GREEN, source, quality=75), cell)
    assert decoded_sizes == [decoded]
    assert min(decoded) >= cell  # never upscaled
    assert color_close(at(result, 0.5, 0.5), GREEN)


def test_draft_is_requested_for_jpeg_only(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str | None, tuple[int, int] | None]] = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(
        self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None
    ) -> object:
        calls.append((mode, size))
        return original(self, mode, size)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    cell_of(covers.solid_png())
    assert calls == []
    cell_of(covers.solid_jpeg(RED, (1000, 1000)), 120)
    assert calls == [("RGB", (120, 120))]


# -- concurrency ------------------------------------------------------------------


def test_concurrent_decoding_matches_serial() -> None:
    inputs = [
        covers.noisy_jpeg(seed=1),
        covers.exif_rotated_jpeg(6),
        covers.palette_png(),
        covers.gray16_png(),
        covers.animated_gif(),
        covers.cmyk_jpeg(),
        covers.solid_webp(),
        covers.bomb_png(),
        covers.truncated_jpeg(),
    ] * 4

    def outcome(data: bytes) -> bytes | str:
        try:
            return load_tile(data, SIZE, **LIMITS).tobytes()
        except ImageError as exc:
            return exc.reason

    serial = [outcome(data) for data in inputs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        parallel = list(pool.map(outcome, inputs))
    assert parallel == serial
    assert serial[7:9] == [Reason.TOO_LARGE, Reason.DECODE_ERROR]


# --- load_fitted (compression, comparison): the decode budget and large images with alpha


def test_fitted_decode_charges_the_budget_what_it_decodes() -> None:
    budget = DecodeBudget(10**9)
    jpeg = encode(Image.new("RGB", (1600, 1600), RED), "JPEG")
    assert load_fitted(jpeg, 256, max_pixels=10**8, budget=budget).size == (256, 256)
    assert budget.peak == 400 * 400  # drafted at 1/4 scale, charged that, not 1600x1600
    png = encode(Image.new("RGBA", (900, 700), (*BLUE, 128)), "PNG")
    load_fitted(png, 256, max_pixels=10**8, budget=budget)
    assert budget.peak == 900 * 700  # no reduced decoding for PNG: the whole header size
    assert budget.in_flight == 0


def test_fitted_decode_gives_the_budget_back_when_the_data_is_truncated() -> None:
    budget = DecodeBudget(10**9)
    with pytest.raises(ImageError):
        load_fitted(covers.truncated_jpeg(), 256, max_pixels=10**8, budget=budget)
    assert budget.peak > 0 and budget.in_flight == 0


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_a_large_image_with_alpha_or_palette_fits_like_a_whole_image_thumbnail(mode: str) -> None:
    gradient = Image.linear_gradient("L").resize((2600, 1700))
    source = Image.merge("RGBA", (gradient, gradient.rotate(90, expand=False), gradient, gradient))
    image = source.convert(mode)
    reference = image.convert("RGBA")
    reference.thumbnail((800, 800), Image.Resampling.LANCZOS, reducing_gap=3.0)
    white = Image.new("RGBA", reference.size, (*WHITE, 255))
    expected = Image.alpha_composite(white, reference).convert("RGB")

    fitted = load_fitted(encode(image, "PNG"), 800, max_pixels=10**8)

    assert fitted.size == expected.size == (800, 523)
    difference = ImageStat.Stat(ImageChops.difference(fitted, expected))
    # Flattening first is, if anything, the more exact: Pillow's 8-bit premultiplied
    # alpha loses the colour of nearly transparent pixels (up to ~20 levels here).
    assert max(difference.mean) < 1.0 and max(high for _, high in difference.extrema) <= 24


def test_a_large_rgba_png_is_fitted_without_a_second_full_size_copy(tmp_path: Path) -> None:
    # Pillow premultiplies alpha into a new full-size image before it shrinks one: 2x the
    # decoded size at peak. Measured in a fresh process, whose high-water mark is its own.
    side = 6000
    image = Image.new("RGBA", (side, side), (*WHITE, 0))
    image.paste((*RED, 255), (1000, 1000, 5000, 5000))
    path = tmp_path / "big.png"
    image.save(path, "PNG", compress_level=1)
    del image
    script = (
        "import resource, sys\n"
        "from imgpipe.imaging.decode import load_fitted\n"
        "data = open(sys.argv[1], 'rb').read()\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert load_fitted(data, 800, max_pixels=10**8).size == (800, 800)\n"
        "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)\n"
    )
    grown = int(subprocess.check_output([sys.executable, "-c", script, str(path)], text=True))
    decoded = side * side * 4
    # Measured: 2.3x the decoded size the whole-image way, 1.5x in bands.
    assert grown < 1.8 * decoded, f"{grown / 2**20:.0f} MB for {decoded / 2**20:.0f} MB decoded"
