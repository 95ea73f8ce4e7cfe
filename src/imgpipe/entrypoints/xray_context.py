"""The X-Ray SDK's Lambda context, with one subsegment stack per asyncio task.

The SDK keeps the open subsegments on a thread-local stack. A creator downloads
its covers concurrently on one event loop, so with the patched httpx every
download pushed and popped the same stack: one download closed another's
subsegment, and the next call on it raised ``AlreadyEndedException``, which
failed a good cover (tests/e2e/test_lambda_observability.py caught it). Here the
stack lives in a context variable: a task (or an ``asyncio.to_thread`` call)
starts from its parent's stack and pushes onto its own copy, so concurrent
downloads nest under the creator's subsegment and never under each other.

Imported only when tracing is on (it imports the SDK): see ``lambda_observability``.
"""

from __future__ import annotations

import asyncio
import threading
from contextvars import ContextVar
from typing import Any

from aws_xray_sdk.core.lambda_launcher import LambdaContext

__all__ = ["TaskLambdaContext"]


def _owner() -> object:
    """The running task, or the thread outside any event loop (held, so never reused)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return task if task is not None else threading.current_thread()


class _TaskLocal:
    """What the SDK reads from ``threading.local``: ``entities`` and ``segment``."""

    def __init__(self) -> None:
        self._entities: ContextVar[tuple[object, list[Any]] | None] = ContextVar(
            "xray_entities", default=None
        )
        self._segment: ContextVar[Any] = ContextVar("xray_segment", default=None)

    @property
    def entities(self) -> list[Any] | None:
        held = self._entities.get()
        if held is None:
            return None
        owner, stack = held
        if owner is not _owner():  # inherited from the parent: copy before any push
            stack = list(stack)
            self._entities.set((_owner(), stack))
        return stack

    @entities.setter
    def entities(self, stack: list[Any]) -> None:
        self._entities.set((_owner(), stack))

    @property
    def segment(self) -> Any:
        return self._segment.get()

    @segment.setter
    def segment(self, segment: Any) -> None:
        self._segment.set(segment)

    def clear(self) -> None:
        self._entities.set(None)
        self._segment.set(None)


class TaskLambdaContext(LambdaContext):  # type: ignore[misc]  # the SDK is untyped
    """``LambdaContext`` (the facade segment from ``_X_AMZN_TRACE_ID``), task-local."""

    def __init__(self) -> None:
        super().__init__()
        self._local = _TaskLocal()

    def clear_trace_entities(self) -> None:
        self._local.clear()
