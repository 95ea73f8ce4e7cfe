"""Hand-built ICC v2 RGB profiles (matrix + gamma), for colour-management tests.

Pillow can only create sRGB, LAB and XYZ profiles; a test that proves an
embedded profile is honoured needs one whose colours differ from sRGB in an
unmistakable way. :func:`swapped_primaries_profile` describes an RGB space whose
red and green primaries are sRGB's green and red: a pixel stored as pure red
in it *is* pure green, which a colour-managed decoder must show::

    data = solid_jpeg_with_profile(RED, swapped_primaries_profile())
    # colour-managed: a green cover; read as plain sRGB: a red one
"""

from __future__ import annotations

import io
import struct

from PIL import Image

__all__ = ["profiled_jpeg", "profiled_png", "swapped_primaries_profile"]

# sRGB's colorants, adapted to the D50 profile connection space (ICC's sRGB profile).
_SRGB_RED = (0.4361, 0.2225, 0.0139)
_SRGB_GREEN = (0.3851, 0.7169, 0.0971)
_SRGB_BLUE = (0.1431, 0.0606, 0.7141)
_D50 = (0.9642, 1.0, 0.8249)


def swapped_primaries_profile(description: str = "imgpipe test: red and green swapped") -> bytes:
    """An ICC v2 display profile whose red and green primaries are sRGB's green and red."""
    return rgb_profile(_SRGB_GREEN, _SRGB_RED, _SRGB_BLUE, description=description)


def rgb_profile(
    red: tuple[float, float, float],
    green: tuple[float, float, float],
    blue: tuple[float, float, float],
    *,
    description: str,
    gamma: float = 2.2,
) -> bytes:
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256)) + bytes(2)
    tags = [
        (b"desc", _text_description(description)),
        (b"wtpt", _xyz(_D50)),
        (b"rXYZ", _xyz(red)),
        (b"gXYZ", _xyz(green)),
        (b"bXYZ", _xyz(blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
        (b"cprt", b"text" + bytes(4) + b"public domain\x00\x00\x00"),
    ]
    table_size = 4 + 12 * len(tags)
    offset = 128 + table_size
    table, body = struct.pack(">I", len(tags)), b""
    for signature, data in tags:
        table += signature + struct.pack(">II", offset + len(body), len(data))
        body += data + bytes(-len(data) % 4)
    size = 128 + table_size + len(body)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + struct.pack(">I", 0x02100000)  # version 2.1
        + b"mntrRGB XYZ "
        + struct.pack(">6H", 2026, 1, 1, 0, 0, 0)
        + b"acsp"
        + b"APPL"
        + bytes(4 + 4 + 4 + 8 + 4)  # flags, manufacturer, model, attributes, intent
        + _s15(_D50)
        + b"lcms"
        + bytes(44)
    )
    assert len(header) == 128
    return header + table + body


def profiled_jpeg(
    color: tuple[int, int, int], icc: bytes, size: tuple[int, int] = (320, 480)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "JPEG", quality=95, icc_profile=icc)
    return buffer.getvalue()


def profiled_png(
    color: tuple[int, int, int, int], icc: bytes, size: tuple[int, int] = (320, 480)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGBA", size, color).save(buffer, "PNG", icc_profile=icc)
    return buffer.getvalue()


def _s15(values: tuple[float, float, float]) -> bytes:
    return struct.pack(">3i", *(round(v * 65536) for v in values))


def _xyz(values: tuple[float, float, float]) -> bytes:
    return b"XYZ " + bytes(4) + _s15(values)


def _text_description(text: str) -> bytes:
    ascii_text = text.encode("ascii") + b"\x00"
    return (
        b"desc"
        + bytes(4)
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + struct.pack(">II", 0, 0)  # no Unicode description
        + struct.pack(">HB", 0, 0)  # no ScriptCode description
        + bytes(67)
    )
