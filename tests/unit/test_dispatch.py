"""The batch engine's planning loop and its dispatchers, without moto or a network.

:class:`BatchPlanner` is driven through a fake dispatcher that records what it was
handed and checks, at each dispatch, that the chunk's pending records are already
there; it can stop part-way or die mid-chunk. The two real dispatchers run the same
contract: every planned creator reaches a worker exactly once. The in-process pool
is also checked for its bound (never more creators held than ``2 x workers``),
its stop (claims in flight cancelled, the planner told) and its failures.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pytest

from imgpipe.adapters.memory import InMemoryObjectStore, InMemoryStateStore, InMemoryWorkQueue
from imgpipe.domain.manifest import CoverRef, CreatorJob, Manifest
from imgpipe.domain.records import CreatorStatus
from imgpipe.ports import Dispatcher
from imgpipe.service.batch import InMemoryJobs
from imgpipe.service.ledger import BatchLedger
from imgpipe.service.planner import BatchPlanner, checkpoint_key
from imgpipe.service.pool import PoolDispatcher
from imgpipe.service.queue_dispatch import QueueDispatcher
from imgpipe.service.results import BatchContext, PlanStats
from imgpipe.settings import BatchSpec

STATS = PlanStats(0, 0, [])


def jobs(count: int) -> InMemoryJobs:
    made = [
        CreatorJob(f"Creator {i}", f"c{i:04}", (CoverRef(i + 2, f"https://img.example/{i}.jpg"),))
        for i in range(count)
    ]
    return InMemoryJobs(Manifest(made, [], "creator_name", "cover_url", rows_read=count))


class DiedMidChunk(Exception):
    """The planner's process died here (a kill, a Lambda timeout)."""


class FakeDispatcher:
    """Records each dispatched chunk; checks the pending records came first."""

    def __init__(
        self,
        state: InMemoryStateStore,
        *,
        durable: bool,
        take: int | None = None,  # creators it accepts before it is stopping
        die_in_chunk: int | None = None,
    ) -> None:
        self.state, self.durable = state, durable
        self.take, self.die_in_chunk = take, die_in_chunk
        self.chunks: list[tuple[int, list[str]]] = []
        self.prepared: list[int] = []

    @property
    def handed(self) -> list[str]:
        return [key for _, keys in self.chunks for key in keys]

    def prepare(
        self, context: BatchContext, chunk: int, jobs: Sequence[CreatorJob]
    ) -> Mapping[str, dict[str, Any]]:
        self.prepared.append(chunk)
        return {job.key: {"chunk": chunk} for job in jobs}

    def dispatch(self, context: BatchContext, chunk: int, jobs: Sequence[CreatorJob]) -> int:
        for job in jobs:
            record = self.state.get_creator(job.key, context.batch_id)
            assert record is not None, f"{job.key} dispatched before its pending record"
        if chunk == self.die_in_chunk:
            raise DiedMidChunk(chunk)
        keys = [job.key for job in jobs]
        if self.take is not None:
            keys = keys[: max(0, self.take - len(self.handed))]
        self.chunks.append((chunk, keys))
        return len(keys)


class Harness:
    def __init__(self, creators: int, chunk_size: int = 3) -> None:
        self.state = InMemoryStateStore()
        self.plans = InMemoryObjectStore()
        self.ledger = BatchLedger(self.state, InMemoryObjectStore(), self.plans)
        self.planner = BatchPlanner(self.ledger, chunk_size=chunk_size)
        self.planned = jobs(creators)
        self.context = self.planner.open("b1", self.planned, STATS, BatchSpec(), source="t.csv")

    def fan_out(self, dispatcher: Dispatcher, **kwargs: Any) -> int:
        return self.planner.fan_out(self.context, self.planned, dispatcher, **kwargs)

    def checkpoint(self) -> int:
        return int(json.loads(self.plans.get(checkpoint_key("b1")))["chunks"])

    def statuses(self) -> dict[str, CreatorStatus]:
        return {r.creator_name: r.status for r in self.state.creators_in_batch("b1")}

    def finish(self, key: str) -> None:
        """What a worker leaves behind: the creator final."""
        record = self.state.get_creator(key, "b1")
        assert record is not None
        record.status = CreatorStatus.COMPLETED
        self.state.put_creator(record)


# -- the planning loop ----------------------------------------------------------------------


def test_every_chunk_is_pending_then_dispatched_then_checkpointed() -> None:
    h = Harness(creators=7)
    fake = FakeDispatcher(h.state, durable=True)
    assert h.fan_out(fake) == 7
    assert [(n, len(keys)) for n, keys in fake.chunks] == [(0, 3), (1, 3), (2, 1)]
    assert fake.handed == [f"c{i:04}" for i in range(7)]
    assert h.checkpoint() == 3
    assert set(h.statuses().values()) == {CreatorStatus.PENDING}
    record = h.state.get_creator("c0004", "b1")
    assert record is not None and record.metadata["chunk"] == 1  # the dispatcher's note


def test_a_replayed_durable_plan_dispatches_from_the_chunk_it_died_in() -> None:
    h = Harness(creators=8)
    first = FakeDispatcher(h.state, durable=True, die_in_chunk=1)
    with pytest.raises(DiedMidChunk):
        h.fan_out(first)
    assert h.checkpoint() == 1
    h.finish("c0000")  # a worker finished a creator of the checkpointed chunk
    h.finish("c0003")  # ... and one of the chunk the planner died in (its message went out)

    again = FakeDispatcher(h.state, durable=True)
    assert h.fan_out(again, continuing=True) == 5
    assert [n for n, _ in again.chunks] == [1, 2]  # the checkpointed chunk is not sent again
    assert again.prepared == [1, 2]
    statuses = h.statuses()
    assert statuses["c0000"] is statuses["c0003"] is CreatorStatus.COMPLETED  # kept as they were
    assert statuses["c0007"] is CreatorStatus.PENDING
    assert h.checkpoint() == 3


def test_a_rerun_hands_an_in_process_pool_every_unfinished_creator_again() -> None:
    h = Harness(creators=8)
    with pytest.raises(DiedMidChunk):
        h.fan_out(FakeDispatcher(h.state, durable=False, die_in_chunk=2))
    h.finish("c0001")

    rerun = FakeDispatcher(h.state, durable=False)
    handed = h.fan_out(rerun, continuing=True, skip={"c0001"})
    assert handed == 7
    assert rerun.handed == [f"c{i:04}" for i in range(8) if i != 1]
    assert rerun.prepared == [2]  # pending records of the checkpointed chunks exist already
    assert h.statuses()["c0001"] is CreatorStatus.COMPLETED


def test_a_stopping_dispatcher_ends_the_plan_before_its_checkpoint() -> None:
    h = Harness(creators=9)
    fake = FakeDispatcher(h.state, durable=False, take=4)
    assert h.fan_out(fake) == 4
    assert [n for n, _ in fake.chunks] == [0, 1]  # nothing offered after it said no
    assert h.checkpoint() == 1  # the chunk it stopped in is written again on resume
    assert len(h.statuses()) == 6  # the rest is never planned: the rerun plans it


def test_a_heartbeat_after_every_chunk_and_a_failing_one_is_not_fatal() -> None:
    h = Harness(creators=7)
    beats: list[int] = []

    def beat() -> None:
        beats.append(1)
        raise OSError("the planning queue is unreachable")

    assert h.fan_out(FakeDispatcher(h.state, durable=True), heartbeat=beat) == 7
    assert len(beats) == 3


def test_the_first_marker_wins_unless_the_planning_lock_is_held() -> None:
    h = Harness(creators=1)
    assert h.planner.mark("input-1", "b1") == ("b1", False)
    assert h.planner.mark("input-1", "b2") == ("b1", True)  # a redelivered event
    assert h.planner.mark("input-1", "b3", if_absent=False) == ("b3", False)
    assert h.planner.marked("input-1") == "b3"
    assert h.planner.unfinished("input-1") is None  # no record of b3
    h.planner.mark("input-1", "b1", if_absent=False)
    unfinished = h.planner.unfinished("input-1")
    assert unfinished is not None and unfinished.batch_id == "b1"


# -- the real dispatchers, one contract -----------------------------------------------------


def through_the_pool(h: Harness, workers: int) -> list[str]:
    reached: list[str] = []

    async def work(context: BatchContext, job: CreatorJob) -> None:
        await asyncio.sleep(0)
        reached.append(job.key)

    async def main() -> None:
        pool = PoolDispatcher(work, workers=workers)
        assert await pool.run(asyncio.to_thread(h.fan_out, pool)) is False

    asyncio.run(main())
    return reached


def through_the_queue(h: Harness, workers: int) -> list[str]:
    queue = InMemoryWorkQueue()
    dispatcher = QueueDispatcher(h.plans, queue, csv_key="csv-files/t.csv", keep=3)
    h.fan_out(dispatcher)
    reached = []
    for message in queue.receive(max_messages=1000, wait_seconds=0):
        body = json.loads(message.body)
        plan, offset, length = body["plan"]
        line = json.loads(h.plans.get_range(plan, offset, length))
        assert line["key"] == body["key"] and line["covers"][0][1].startswith("https://")
        reached.append(body["key"])
    return reached


@pytest.mark.parametrize("deliver", [through_the_pool, through_the_queue])
def test_every_planned_creator_reaches_a_worker_once(
    deliver: Callable[[Harness, int], list[str]],
) -> None:
    h = Harness(creators=50, chunk_size=7)
    reached = deliver(h, 4)
    assert sorted(reached) == [f"c{i:04}" for i in range(50)]
    assert h.checkpoint() == 8


# -- the in-process pool --------------------------------------------------------------------


def test_the_pool_holds_at_most_twice_its_workers_however_many_creators() -> None:
    h = Harness(creators=2000, chunk_size=500)
    workers, in_flight, peaks = 4, [0], {"in_flight": 0, "tasks": 0, "queued": 0}
    pool: PoolDispatcher

    async def work(context: BatchContext, job: CreatorJob) -> None:
        in_flight[0] += 1
        peaks["in_flight"] = max(peaks["in_flight"], in_flight[0])
        peaks["tasks"] = max(peaks["tasks"], len(asyncio.all_tasks()))
        peaks["queued"] = max(peaks["queued"], pool._queue.qsize())
        await asyncio.sleep(0)
        in_flight[0] -= 1

    async def main() -> bool:
        nonlocal pool
        pool = PoolDispatcher(work, workers=workers)
        return await pool.run(asyncio.to_thread(h.fan_out, pool))

    assert asyncio.run(main()) is False
    assert pool.started == 2000
    assert peaks["in_flight"] == workers
    assert peaks["queued"] <= workers
    # the workers, the feeder, the stop watcher and main itself: never one per creator
    assert peaks["tasks"] <= workers + 4


def test_a_stop_cancels_creators_in_flight_and_tells_the_planner() -> None:
    h = Harness(creators=100, chunk_size=10)
    started, cancelled = [], []

    async def main() -> tuple[bool, int]:
        stop = asyncio.Event()

        async def work(context: BatchContext, job: CreatorJob) -> None:
            started.append(job.key)
            if len(started) <= 10:
                return  # done at once
            if len(started) == 12:
                stop.set()  # SIGINT arrives while creators are in flight
            try:
                await asyncio.Event().wait()  # works until it is cancelled
            except asyncio.CancelledError:
                cancelled.append(job.key)  # the pipeline gives its claim back here
                raise

        pool = PoolDispatcher(work, workers=3, stop=stop)
        handed: list[int] = []
        stopped = await pool.run(asyncio.to_thread(lambda: handed.append(h.fan_out(pool))))
        return stopped, handed[0]

    stopped, handed = asyncio.run(main())
    assert stopped is True
    assert len(started) == 12  # nothing new starts once the stop is seen
    assert cancelled == started[10:]  # the two still working were cancelled
    assert handed < 100  # the planner was told, and planned no further
    assert len(h.statuses()) < 100


def test_a_planner_failure_cancels_the_workers_and_is_raised() -> None:
    h = Harness(creators=40, chunk_size=2)  # chunks 0 and 1 fill both workers and the queue
    cancelled: list[str] = []
    block = threading.Event()

    async def work(context: BatchContext, job: CreatorJob) -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.append(job.key)
            raise

    class BrokenPending(Exception):
        pass

    original = h.ledger.add_pending
    calls = [0]

    def add_pending(*args: Any, **kwargs: Any) -> int:
        calls[0] += 1
        if calls[0] == 3:
            block.set()
            raise BrokenPending("the state store went away")
        return original(*args, **kwargs)

    h.ledger.add_pending = add_pending  # type: ignore[method-assign]

    async def main() -> None:
        pool = PoolDispatcher(work, workers=2)
        await pool.run(asyncio.to_thread(h.fan_out, pool))

    with pytest.raises(BrokenPending):
        asyncio.run(main())
    assert block.is_set() and len(cancelled) == 2  # both workers were busy, and let go


def test_dispatching_outside_a_running_pool_is_a_clear_error() -> None:
    pool = PoolDispatcher(lambda context, job: asyncio.sleep(0), workers=1)
    with pytest.raises(RuntimeError, match="before run"):
        pool.dispatch(BatchContext("b1", "2026-11-23T10:00:00+00:00", 0), 0, [])
