"""How a cell looks, compactly: re-encodes, resizes and slight crops of a cover look alike.

Two measures, both on the small tile the collage uses (a few microseconds):

- the difference hash (dHash): the tile in grey, shrunk to 9x8, one bit per pair
  of horizontal neighbours (is the left one brighter?). Re-encoding, resizing and
  a uniform change of brightness keep almost every bit; a different picture flips
  about half of them.
- the mean colour, because the hash sees structure only: a flat red cover and a
  flat blue one have the same hash, and must not count as one.

    >>> from PIL import Image
    >>> tile = Image.linear_gradient("L").convert("RGB")
    >>> alike(look_of(tile), look_of(tile.resize((180, 180))), max_bits=6)
    True
    >>> red, blue = Image.new("RGB", (9, 9), "red"), Image.new("RGB", (9, 9), "blue")
    >>> alike(look_of(red), look_of(blue), max_bits=6)
    False
"""

from __future__ import annotations

from typing import NamedTuple

from PIL import Image

__all__ = ["Look", "alike", "hamming", "look_of"]

_COLUMNS, _ROWS = 9, 8  # 8 x 8 comparisons = 64 bits
# Largest difference of a mean channel (0-255) between two covers that look alike:
# a brightness change of +10 moves it by about 10, a re-encode by 1 or 2.
_COLOUR_TOLERANCE = 24


# The left pixel of each compared pair, row by row.
_PAIRS = tuple(row * _COLUMNS + col for row in range(_ROWS) for col in range(_COLUMNS - 1))


class Look(NamedTuple):
    bits: int  # the 64-bit dHash, most significant bit first (row by row)
    colour: tuple[int, ...]  # mean R, G, B


def look_of(tile: Image.Image) -> Look:
    """The tile's dHash and mean colour."""
    # Shrunk first, then made grey: the same values (grey is a weighted sum, box
    # shrinking an average) for a 72-pixel conversion instead of a whole tile's.
    small = tile.convert("RGB").resize((_COLUMNS, _ROWS), Image.Resampling.BOX)
    grey = small.convert("L").tobytes()
    bits = 0
    for index in _PAIRS:
        bits = (bits << 1) | (grey[index] > grey[index + 1])
    mean = small.resize((1, 1), Image.Resampling.BOX).getpixel((0, 0))
    return Look(bits, tuple(mean) if isinstance(mean, tuple) else (int(mean or 0),) * 3)


def hamming(a: int, b: int) -> int:
    """How many of the 64 bits differ."""
    return (a ^ b).bit_count()


def alike(a: Look, b: Look, max_bits: int) -> bool:
    """At most ``max_bits`` of the hashes differ and the mean colours are close."""
    if hamming(a.bits, b.bits) > max_bits:
        return False
    return max(abs(x - y) for x, y in zip(a.colour, b.colour, strict=True)) <= _COLOUR_TOLERANCE
