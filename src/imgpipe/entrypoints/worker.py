"""``imgpipe worker``: the Lambda handler's code fed by long-polling SQS on any host.

Messages are deleted only after their work succeeded; a failed one is released
for another delivery after a short delay, and after the queue's
``maxReceiveCount`` (5) SQS moves it to the dead-letter queue — the same
at-least-once semantics as the Lambda event source. A message whose creator is
claimed by another live worker comes back when that claim would expire, and
long work extends its message's visibility (a heartbeat)::

    worker = QueueWorker(queue, handle_record_body, concurrency=4)
    worker.run(exit_when_idle=30)
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from imgpipe.errors import ClaimBusyError
from imgpipe.ports import QueueMessage, WorkQueue

__all__ = ["MessageLease", "QueueWorker", "WorkerStats"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MessageLease:
    """The message being worked on, so the work can keep it or put it back."""

    queue: WorkQueue
    message: QueueMessage

    def extend(self, seconds: float) -> None:
        """Heartbeat: keep the message invisible ``seconds`` more."""
        self.queue.extend(self.message, seconds=max(1, math.ceil(seconds)))

    def defer(self, seconds: float) -> None:
        """Let the message come back in ``seconds`` (SQS allows at most 12 hours)."""
        self.queue.release(self.message, delay_seconds=min(43_200, max(0, math.ceil(seconds))))


@dataclass
class WorkerStats:
    succeeded: int = 0
    failed: int = 0
    deferred: int = 0


class QueueWorker:
    """``concurrency`` threads, each receiving and handling one message at a time."""

    def __init__(
        self,
        queue: WorkQueue,
        handle: Callable[[str, MessageLease], object],
        *,
        concurrency: int = 1,
        wait_seconds: int = 20,
        retry_delay: int = 5,
    ) -> None:
        self.queue = queue
        self.handle = handle
        self.concurrency = max(1, concurrency)
        self.wait_seconds = wait_seconds
        self.retry_delay = retry_delay
        self.stats = WorkerStats()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_activity = time.monotonic()
        self._busy = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, exit_when_idle: float | None = None) -> WorkerStats:
        """Work until :meth:`stop`, or until no message arrived for ``exit_when_idle`` s."""
        threads = [
            threading.Thread(target=self._loop, args=(exit_when_idle,), name=f"imgpipe-worker-{i}")
            for i in range(self.concurrency)
        ]
        for thread in threads:
            thread.start()
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(0.5)
        except KeyboardInterrupt:
            log.warning("stopping: finishing the messages in hand")
            self.stop()
            for thread in threads:
                thread.join()
        return self.stats

    def _idle_for(self) -> float:
        with self._lock:
            return 0.0 if self._busy else time.monotonic() - self._last_activity

    def _loop(self, exit_when_idle: float | None) -> None:
        while not self._stop.is_set():
            if exit_when_idle is not None and self._idle_for() >= exit_when_idle:
                self._stop.set()
                break
            wait = self.wait_seconds
            if exit_when_idle is not None:
                wait = max(0, min(wait, int(exit_when_idle)))
            try:
                messages = self.queue.receive(max_messages=1, wait_seconds=wait)
            except Exception:
                log.exception("receive failed; retrying")
                time.sleep(1)
                continue
            for message in messages:
                self._work(message)

    def _work(self, message: QueueMessage) -> None:
        with self._lock:
            self._busy += 1
        lease = MessageLease(self.queue, message)
        try:
            self.handle(message.body, lease)
        except ClaimBusyError as exc:  # not a failure: another worker has it for now
            log.info("message %s deferred %.0f s: %s", message.message_id, exc.retry_after, exc)
            with self._lock:
                self.stats.deferred += 1
            try:
                lease.defer(exc.retry_after)
            except Exception:
                log.exception("could not defer message %s", message.message_id)
        except Exception as exc:
            log.warning(
                "message %s failed (receive %d): %s",
                message.message_id,
                message.receive_count,
                exc,
            )
            with self._lock:
                self.stats.failed += 1
            try:  # back on the queue soon; SQS counts receives and dead-letters it
                self.queue.release(message, delay_seconds=self.retry_delay)
            except Exception:
                log.exception("could not release message %s", message.message_id)
        else:
            self.queue.delete(message)
            with self._lock:
                self.stats.succeeded += 1
        finally:
            with self._lock:
                self._busy -= 1
                self._last_activity = time.monotonic()
