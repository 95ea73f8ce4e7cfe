"""In-memory WorkQueue and in-process batch locks: fakes for service unit tests.

Kept apart from :mod:`imgpipe.adapters.memory` (whose stores re-export them) so each
module stays small. The queue has SQS's visibility and receive counts::

    queue = InMemoryWorkQueue(visibility=30, max_receives=5)
    queue.send(['{"creator": "ann"}'])
    (message,) = queue.receive()
    queue.delete(message)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from imgpipe.ports import QueueMessage

__all__ = ["InMemoryWorkQueue", "InProcessBatchLocks"]


class _HeldLock:
    def __init__(self, owner: InProcessBatchLocks, batch_id: str) -> None:
        self._owner, self._batch_id = owner, batch_id

    def release(self) -> None:
        with self._owner._lock:
            self._owner._held.discard(self._batch_id)


class InProcessBatchLocks:
    """Batch locks within one process (tests, a Lambda's inline run)."""

    def __init__(self) -> None:
        self._held: set[str] = set()
        self._lock = threading.Lock()

    def acquire(self, batch_id: str) -> _HeldLock | None:
        with self._lock:
            if batch_id in self._held:
                return None
            self._held.add(batch_id)
        return _HeldLock(self, batch_id)

    def is_held(self, batch_id: str) -> bool:
        with self._lock:
            return batch_id in self._held


class InMemoryWorkQueue:
    """At-least-once messages in memory, with SQS's visibility and receive counts.

    ``receive`` hands out visible messages and hides them for ``visibility``
    seconds of the injected clock; ``release``/``extend`` change that; after
    ``max_receives`` receives an undeleted message moves to ``dead_letters``.
    """

    def __init__(
        self,
        *,
        visibility: float = 30.0,
        max_receives: int = 5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.visibility = visibility
        self.max_receives = max_receives
        self.clock = clock
        self.dead_letters: list[str] = []
        self.sent: list[str] = []
        self._messages: dict[str, list[Any]] = {}  # id -> [body, visible_at, receives]
        self._counter = 0
        self._lock = threading.Lock()

    def send(self, bodies: Sequence[str]) -> None:
        with self._lock:
            for body in bodies:
                self._counter += 1
                self._messages[f"m{self._counter}"] = [body, 0.0, 0]
                self.sent.append(body)

    def receive(self, *, max_messages: int = 10, wait_seconds: int = 20) -> list[QueueMessage]:
        now = self.clock()
        out: list[QueueMessage] = []
        with self._lock:
            for ident, entry in list(self._messages.items()):
                if len(out) >= max_messages:
                    break
                if entry[1] > now:
                    continue
                if entry[2] >= self.max_receives:
                    self.dead_letters.append(entry[0])
                    del self._messages[ident]
                    continue
                entry[1], entry[2] = now + self.visibility, entry[2] + 1
                out.append(QueueMessage(ident, entry[0], receipt=ident, receive_count=entry[2]))
        return out

    def delete(self, message: QueueMessage) -> None:
        with self._lock:
            self._messages.pop(message.receipt, None)

    def release(self, message: QueueMessage, *, delay_seconds: int = 0) -> None:
        self.extend(message, seconds=delay_seconds)

    def extend(self, message: QueueMessage, *, seconds: int) -> None:
        with self._lock:
            entry = self._messages.get(message.receipt)
            if entry is not None:
                entry[1] = self.clock() + seconds

    def depth(self) -> int:
        with self._lock:
            return len(self._messages)
