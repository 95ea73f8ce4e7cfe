"""Embedded ICC profiles: cells come out in sRGB; profiles that cannot apply are ignored."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image, ImageCms

from imgpipe.imaging.decode import load_fitted, load_tile
from tests.support.covers import WHITE, color_close
from tests.support.icc import profiled_jpeg, profiled_png, swapped_primaries_profile

LIMITS = {"max_pixels": 64_000_000, "min_size": 50}
# Pure primaries: swapping red and green primaries maps these onto each other exactly.
RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def centre(image: Image.Image) -> object:
    return image.getpixel((image.width // 2, image.height // 2))


def test_a_profiled_jpeg_is_converted_to_srgb() -> None:
    # Stored as red in a space whose red primary is sRGB's green: it is green.
    data = profiled_jpeg(RED, swapped_primaries_profile())
    assert color_close(centre(load_tile(data, 200, **LIMITS)), GREEN)
    assert color_close(centre(load_fitted(data, 100, max_pixels=10**8)), GREEN)


def test_a_profiled_png_with_alpha_is_converted_then_flattened_on_white() -> None:
    icc = swapped_primaries_profile()
    opaque = load_tile(profiled_png((*RED, 255), icc), 200, **LIMITS)
    clear = load_tile(profiled_png((*RED, 0), icc), 200, **LIMITS)
    assert color_close(centre(opaque), GREEN)
    assert centre(clear) == WHITE


def test_blue_stays_blue_where_only_red_and_green_moved() -> None:
    data = profiled_jpeg(BLUE, swapped_primaries_profile())
    assert color_close(centre(load_tile(data, 200, **LIMITS)), BLUE)


def test_an_srgb_profile_leaves_the_colours_alone() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    colour = (200, 40, 90)
    cell = load_tile(profiled_jpeg(colour, srgb), 200, **LIMITS)
    assert color_close(centre(cell), colour, tol=3)


@pytest.mark.parametrize(
    "icc",
    [b"not a profile at all", swapped_primaries_profile()[:90]],
    ids=["garbage", "truncated"],
)
def test_an_unreadable_profile_is_ignored(icc: bytes) -> None:
    cell = load_tile(profiled_jpeg(RED, icc), 200, **LIMITS)
    assert color_close(centre(cell), RED)


def test_a_profile_of_another_colour_space_is_ignored() -> None:
    # An RGB profile on a grayscale JPEG cannot describe it: plain conversion.
    buffer = io.BytesIO()
    Image.new("L", (320, 480), 90).save(buffer, "JPEG", icc_profile=swapped_primaries_profile())
    cell = load_tile(buffer.getvalue(), 200, **LIMITS)
    assert color_close(centre(cell), (90, 90, 90), tol=3)


def test_one_profile_shared_by_many_threads_converts_every_cell() -> None:
    icc = swapped_primaries_profile()
    covers = [profiled_jpeg(RED, icc), profiled_jpeg(BLUE, icc)] * 16
    with ThreadPoolExecutor(8) as pool:
        cells = list(pool.map(lambda data: load_tile(data, 200, **LIMITS), covers))
    expected = [GREEN, BLUE] * 16
    assert all(color_close(centre(c), e) for c, e in zip(cells, expected, strict=True))
