"""What queue messages carry: a ``csv_s3`` message's ``processing_config`` and the
per-creator messages the fan-out sends, decoded and checked at one seam.

A known option with a value of the wrong type or outside its range is a
MessageError naming it; unknown options are ignored::

    >>> options_from_config({"rows": 2, "group_by_creator": True})
    {'rows': 2}
    >>> options_from_config({"rows": "2"})
    Traceback (most recent call last):
    ...
    imgpipe.errors.MessageError: processing_config.rows: expected int, got '2'
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from imgpipe.domain.csv_text import check_encoding
from imgpipe.domain.spec import RANGES, check_crop
from imgpipe.errors import ConfigError, MessageError
from imgpipe.service.results import BatchContext

__all__ = ["options_from_config", "parse_creator_message"]

# The original system's processing_config names (and ours) -> BatchSpec fields.
_CONFIG_FIELDS = {
    "rows": ("rows", int),
    "cols": ("cols", int),
    "cell": ("cell_size", int),
    "quality": ("quality", int),
    "max_images_per_creator": ("max_images", int),
    "max_images": ("max_images", int),
    "min_images": ("min_images", int),
    "max_workers": ("max_workers", int),
    "timeout": ("timeout", float),
    "max_retries": ("retries", int),
    "retries": ("retries", int),
    "force": ("force", bool),
}
# How to read the CSV (the API's form fields, passed on to the planner as they are).
_TEXT_FIELDS = ("creator_column", "url_column", "encoding", "crop")
_TEXT_CHECKS = {"encoding": check_encoding, "crop": check_crop}


def options_from_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """BatchSpec overrides from a message's ``processing_config``.

    Unknown keys (``group_by_creator``...) are ignored; a known key with a value
    of the wrong type, or outside its range (``RANGES``), is a MessageError naming
    it. Network allowances never come from a message: only the operator's settings
    can open private ranges.
    """
    overrides: dict[str, Any] = {}
    for name, value in config.items():
        if name in _TEXT_FIELDS:
            if not isinstance(value, str):
                raise MessageError(f"processing_config.{name}: expected str, got {value!r}")
            try:
                check = _TEXT_CHECKS.get(name)
                overrides[name] = check(value) if check is not None else value
            except ConfigError as exc:
                raise MessageError(f"processing_config.{name}: {exc}") from exc
            continue
        if name not in _CONFIG_FIELDS:
            continue
        target, kind = _CONFIG_FIELDS[name]
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, int | float):
            raise MessageError(f"processing_config.{name}: expected {kind.__name__}, got {value!r}")
        if target in RANGES and kind(value) not in RANGES[target]:
            allowed = RANGES[target]
            raise MessageError(f"processing_config.{name}={value!r} is outside {allowed}")
        overrides[target] = kind(value)
    return overrides


def parse_creator_message(
    message: Mapping[str, Any],
) -> tuple[BatchContext, str, str, str, dict[str, Any]]:
    """(context, creator, key, CSV key, processing_config) of a per-creator message;
    MessageError naming what is missing or malformed."""
    try:
        context = BatchContext(
            batch_id=str(message["batch_id"]),
            processing_date=str(message["processing_date"]),
            ttl=int(message["ttl"]),
        )
        return (
            context,
            str(message["creator"]),
            str(message["key"]),
            str(message["csv_key"]),
            dict(message.get("processing_config", {})),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageError(f"malformed creator message: {exc!r}") from exc
