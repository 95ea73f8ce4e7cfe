"""imgpipe.logs: correlation keys per asyncio task and thread, and the JSON line format."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgpipe.logs import CorrelationFilter, JsonFormatter, current_context, log_context


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(CorrelationFilter())
    logger = logging.getLogger("imgpipe.test_logs")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_concurrent_creators_keep_their_own_keys(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured

    async def creator(name: str) -> None:
        with log_context(creator=name):
            for step in range(3):
                await asyncio.sleep(0)  # the other creators run in between
                logger.info("step %d", step)
            await asyncio.to_thread(logger.info, "in a thread")

    async def batch() -> None:
        with log_context(batch_id="b1"):
            await asyncio.gather(*(creator(n) for n in ("ann", "bo", "cy")))
            logger.info("batch done")

    asyncio.run(batch())
    records = lines(stream)
    assert len(records) == 13
    for record in records[:-1]:
        assert record["batch_id"] == "b1"
        assert record["creator"] in ("ann", "bo", "cy")
    per_creator = {r["creator"] for r in records if r["message"] == "in a thread"}
    assert per_creator == {"ann", "bo", "cy"}
    assert records[-1]["message"] == "batch done" and "creator" not in records[-1]
    assert current_context() == {}


def test_extra_keys_win_and_exceptions_are_one_line(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    with log_context(batch_id="b1", creator=None):  # None: left out
        logger.info("explicit", extra={"batch_id": "b2", "path": Path("x")})
        try:
            raise ValueError("bad cover")
        except ValueError:
            logger.exception("failed")
    explicit, failed = lines(stream)
    assert explicit["batch_id"] == "b2" and explicit["path"] == "x" and "creator" not in explicit
    assert failed["level"] == "ERROR" and "ValueError: bad cover" in failed["exception"]
    assert len(stream.getvalue().splitlines()) == 2  # the traceback stayed inside its record
