"""sniff_format: image formats by magic bytes, and what must not pass for an image."""

from __future__ import annotations

import pytest

from imgpipe.imaging.formats import SNIFF_BYTES, sniff_format
from tests.support.images import encode, solid


@pytest.mark.parametrize(
    ("pillow_format", "params", "expected"),
    [
        ("JPEG", {"quality": 80}, "jpeg"),
        ("PNG", {}, "png"),
        ("GIF", {}, "gif"),
        ("WEBP", {"quality": 80}, "webp"),
        ("WEBP", {"lossless": True}, "webp"),
        ("AVIF", {"quality": 60}, "avif"),
        ("BMP", {}, "bmp"),
        ("TIFF", {}, "tiff"),
        ("TIFF", {"compression": "tiff_lzw"}, "tiff"),
    ],
)
def test_real_files_are_recognised(
    pillow_format: str, params: dict[str, object], expected: str
) -> None:
    data = encode(solid((10, 20, 30), (16, 12)), pillow_format, **params)
    assert sniff_format(data) == expected
    assert sniff_format(data[:SNIFF_BYTES]) == expected  # the head is enough


@pytest.mark.parametrize(
    "head",
    [
        b"\x89PNG\r\n\x1a\n",
        b"\xff\xd8\xff\xe0",
        b"GIF89a",
        b"GIF87a",
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",
        b"II*\x00\x08\x00\x00\x00",
        b"MM\x00*\x00\x00\x00\x08",
        b"II+\x00\x08\x00\x00\x00",  # BigTIFF
        b"BM" + bytes(12) + (40).to_bytes(4, "little"),
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf",
        b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf",  # AVIF as a compatible brand
        b"\x00\x00\x00\x18ftypavis\x00\x00\x00\x00avismsf1",  # image sequence
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic",
    ],
)
def test_signatures(head: bytes) -> None:
    assert sniff_format(head) is not None


@pytest.mark.parametrize(
    "head",
    [
        b"",
        b"<!DOCTYPE html><html><body>404</body></html>",
        b"<?xml version='1.0'?><svg/>",  # SVG is not a raster cover
        b'{"error": "not found"}',
        b"BM is a fine start for a sentence, not a bitmap",
        b"RIFF\x24\x00\x00\x00WAVEfmt ",  # RIFF, but audio
        b"\xff\xd8",  # too short to be a JPEG
        b"\x89PNG\r\n",
        b"GIF8",
        bytes(64),
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2",  # an MP4 video
        b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00avif",  # "avif" past the box's end
    ],
)
def test_non_images_are_none(head: bytes) -> None:
    assert sniff_format(head) is None


def test_accepts_a_bytearray() -> None:
    assert sniff_format(bytearray(b"\x89PNG\r\n\x1a\n" + bytes(24))) == "png"


def test_heic_is_recognised_and_avif_wins_over_the_generic_heif_brand() -> None:
    from tests.support.covers import solid_heic

    assert sniff_format(solid_heic()[:SNIFF_BYTES]) == "heic"
    assert sniff_format(b"\x00\x00\x00\x1cftypmif1\x00\x00\x00\x00mif1avifmiaf") == "avif"
