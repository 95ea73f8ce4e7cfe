"""The opaque cursors of the state stores' paged reads (``StateStore.creators_page``,
``StateStore.open_batches``): JSON the caller hands back unread.

A cursor that is not one a store gave (edited, truncated, from another store) is a
StateError naming it, not a read from the start::

    >>> cursor = encode_cursor(["2026-01-02T00:00:00Z", "ann"])
    >>> decode_cursor(cursor)
    ['2026-01-02T00:00:00Z', 'ann']
    >>> decode_cursor("{")
    Traceback (most recent call last):
    ...
    imgpipe.errors.StateError: page cursor '{' is not one this store gave
"""

from __future__ import annotations

import json
from typing import Any

from imgpipe.errors import StateError

__all__ = ["decode_cursor", "encode_cursor"]


def encode_cursor(position: Any) -> str:
    return json.dumps(position, ensure_ascii=False, separators=(",", ":"))


def decode_cursor(cursor: str, *, shape: type = list) -> Any:
    """The position ``cursor`` encodes, of type ``shape`` (a list, or a dict for DynamoDB's
    ``LastEvaluatedKey``)."""
    try:
        position = json.loads(cursor)
    except ValueError:
        position = None
    if not isinstance(position, shape) or not position:
        raise StateError(f"page cursor {cursor[:200]!r} is not one this store gave")
    return position
