"""Structured logs: correlation keys set once, and one JSON object per line.

The keys ``batch_id`` and ``creator`` are set where the work happens (the
pipeline, the batch runner, the Lambda handler) with :func:`log_context`. They
live in a context variable, so each asyncio task and each ``asyncio.to_thread``
call carries its own creator, and concurrent creators never mix their keys.
:class:`CorrelationFilter` copies them onto every record passing a handler: the
CLI's JSON handler and, on Lambda, Powertools Logger's handler.

Stdlib only: ``--log-format json`` needs no AWS extra.

Example:

>>> import io, json, logging
>>> stream = io.StringIO()
>>> handler = logging.StreamHandler(stream)
>>> handler.setFormatter(JsonFormatter())
>>> handler.addFilter(CorrelationFilter())
>>> demo = logging.getLogger("imgpipe.doctest")
>>> demo.addHandler(handler); demo.propagate = False
>>> with log_context(batch_id="b1", creator="ann"):
...     demo.warning("cover failed: %s", "http://x/a.jpg", extra={"reason": "http_404"})
>>> record = json.loads(stream.getvalue())
>>> record["message"], record["batch_id"], record["creator"], record["reason"]
('cover failed: http://x/a.jpg', 'b1', 'ann', 'http_404')
>>> sorted(current_context())  # cleared once the block ends
[]
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO, Any, Literal

__all__ = [
    "CORRELATION_KEYS",
    "EVENTS_LOGGER",
    "CorrelationFilter",
    "JsonFormatter",
    "LogFormat",
    "configure_logging",
    "current_context",
    "log_context",
]

CORRELATION_KEYS = ("batch_id", "creator")
# Per-creator and per-cover records: what a log pipeline wants, too many lines for a
# person watching a terminal (a million-row batch), so text mode leaves them out.
EVENTS_LOGGER = "imgpipe.events"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

LogFormat = Literal["text", "json"]

_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar(
    "imgpipe_log_context", default=MappingProxyType({})
)
# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


@contextmanager
def log_context(**keys: str | None) -> Iterator[None]:
    """Adds correlation keys to every record logged inside the block (None: left out)."""
    merged = {**_CONTEXT.get(), **{k: v for k, v in keys.items() if v is not None}}
    token = _CONTEXT.set(merged)
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_context() -> dict[str, str]:
    """The correlation keys in effect here (a copy)."""
    return dict(_CONTEXT.get())


class CorrelationFilter(logging.Filter):
    """Puts the current correlation keys on each record; keys given by ``extra=`` win."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: timestamp (UTC, ISO 8601), level, logger, message,
    the correlation keys, any ``extra=`` fields, and ``exception`` with its traceback."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        document: dict[str, Any] = {
            "timestamp": stamp.replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                document[key] = value
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            document["stack"] = record.stack_info
        # default=str: an extra that is not JSON (a Path, an enum) is still logged
        return json.dumps(document, ensure_ascii=False, default=str)


def configure_logging(
    log_format: LogFormat = "text",
    *,
    level: int = logging.INFO,
    text_format: str = TEXT_FORMAT,
    stream: IO[str] | None = None,
) -> None:
    """The root handler of a command: people's text, or JSON lines, on stderr.

    Logs never go to stdout, where ``--json`` prints its result. Text mode is the
    format each command always had; it leaves out the per-creator :data:`EVENTS_LOGGER`.
    Like ``logging.basicConfig``, it leaves a root logger that has handlers alone.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        handler.addFilter(CorrelationFilter())
        logging.getLogger(EVENTS_LOGGER).setLevel(logging.NOTSET)
    else:
        handler.setFormatter(logging.Formatter(text_format))
        logging.getLogger(EVENTS_LOGGER).setLevel(logging.WARNING)
    logging.basicConfig(level=level, handlers=[handler])
    # httpx logs every request at INFO; that drowns the progress and the batch's own logs.
    logging.getLogger("httpx").setLevel(logging.WARNING)
