"""The in-process dispatcher: ``workers`` asyncio tasks fed through a bounded queue.

The planner runs in a thread (its state writes block) and hands each chunk to the
pool, which lives on the event loop. The queue holds at most ``workers`` creators
beyond those in flight, so the planner waits while the pool is busy: a million
creators are never a million tasks, nor a million jobs in memory::

    pool = PoolDispatcher(work, workers=8, stop=stop)
    stopped = await pool.run(asyncio.to_thread(planner.fan_out, context, planned, pool))

``work(context, job)`` renders one creator. When ``stop`` is set (SIGINT, SIGTERM) the
workers are cancelled, so creators in flight give their claims back while their
final writes finish, and the planner is told (``dispatch`` takes no more).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from imgpipe.domain.manifest import CreatorJob
from imgpipe.service.results import BatchContext

__all__ = ["PoolDispatcher"]

Work = Callable[[BatchContext, CreatorJob], Awaitable[None]]
_Item = tuple[BatchContext, CreatorJob] | None  # None: no more work, the worker ends


class PoolDispatcher:
    """Runs dispatched creators ``workers`` at a time on the running event loop."""

    durable = False  # the work dies with this process: a rerun dispatches it again

    def __init__(self, work: Work, *, workers: int, stop: asyncio.Event | None = None) -> None:
        self.work = work
        self.workers = max(1, workers)
        self.stop = stop
        self.started = 0  # creators taken by a worker (for tests and the curious)
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=self.workers)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def prepare(
        self, context: BatchContext, chunk: int, jobs: Sequence[CreatorJob]
    ) -> dict[str, dict[str, Any]]:
        return {}  # the pending records need nothing from an in-process pool

    def dispatch(self, context: BatchContext, chunk: int, jobs: Sequence[CreatorJob]) -> int:
        """From the planner's thread: blocks while the pool is full."""
        if self._loop is None:
            raise RuntimeError("PoolDispatcher.dispatch before run()")
        offered = asyncio.run_coroutine_threadsafe(self._offer(context, jobs), self._loop)
        return offered.result()

    async def run(self, planning: Awaitable[Any]) -> bool:
        """Run the pool until ``planning`` (which dispatches to it) is done and every
        creator it handed over is; True when ``stop`` cut the run short."""
        self._loop = asyncio.get_running_loop()
        workers: asyncio.Future[list[None]] = asyncio.gather(
            *(self._worker() for _ in range(self.workers))
        )
        feeding = asyncio.ensure_future(self._feed(planning))
        never = asyncio.Event()  # no stop event: nothing stops the pool but the end
        stopping = asyncio.ensure_future((self.stop or never).wait())
        running: set[asyncio.Future[Any]] = {feeding, workers}
        try:
            while running:
                done, _ = await asyncio.wait(
                    running | {stopping}, return_when=asyncio.FIRST_COMPLETED
                )
                for future in done & running:
                    running.discard(future)
                    future.result()  # re-raise what the planner or a worker raised
                if stopping in done and running:
                    return True
            return False
        finally:
            stopping.cancel()
            if running:
                await self._wind_down(workers, feeding)

    async def _feed(self, planning: Awaitable[Any]) -> None:
        await planning  # a failed planning ends here: the pool is wound down, not fed
        if not self._closed:
            for _ in range(self.workers):
                await self._queue.put(None)

    async def _wind_down(self, workers: asyncio.Future[Any], feeding: asyncio.Future[Any]) -> None:
        """Stopped, or something failed: in-flight creators give their claims back,
        and the planner's thread is let go before the loop moves on."""
        self._closed = True
        workers.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await workers
        self._drain()  # a planner waiting for room is let in, then sees the pool closed
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await feeding
        self._drain()

    def _drain(self) -> None:
        while not self._queue.empty():
            self._queue.get_nowait()

    async def _offer(self, context: BatchContext, jobs: Sequence[CreatorJob]) -> int:
        for given, job in enumerate(jobs):
            if self._closed or (self.stop is not None and self.stop.is_set()):
                return given
            await self._queue.put((context, job))
        return len(jobs)

    async def _worker(self) -> None:
        while (item := await self._queue.get()) is not None:
            if self.stop is not None and self.stop.is_set():
                return
            self.started += 1
            await self.work(*item)
