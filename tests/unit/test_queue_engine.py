"""The queue engine (FanOut + BatchLedger) on in-memory ports: no moto, no network.

Plan -> per-creator messages -> process -> one summary; redeliveries, live and
expired claims on an injected clock, a state index that lags behind the table (as
DynamoDB's batch-id-index may), contention refused by the store. The fetcher is a
dictionary; real HTTP and real AWS-compatible servers are in tests/e2e.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from imgpipe.adapters.memory import InMemoryObjectStore, InMemoryStateStore, InMemoryWorkQueue
from imgpipe.adapters.sqlite_staging import stage_manifest
from imgpipe.domain.keys import creator_key
from imgpipe.domain.manifest import CreatorJob
from imgpipe.domain.records import BatchRecord, CreatorRecord, CreatorStatus
from imgpipe.errors import ClaimBusyError, ConflictError, SummaryPendingError
from imgpipe.ports import ObjectStore, StateStore, StoredObject
from imgpipe.service import closing
from imgpipe.service.fanout import DistributedPorts, FanOut
from imgpipe.service.ledger import BatchLedger
from imgpipe.service.results import BatchContext, CreatorResult
from imgpipe.settings import BatchSpec, Settings
from tests.support.images import jpeg
from tests.unit.test_pipeline import BLUE, GREEN, RED, DictFetcher

CONFIG = {"rows": 1, "cols": 3, "cell_size": 40}  # small collages: the tests are about state
# What a sweep with nothing to do answers (service/sweep.py)
NOTHING_SWEPT = dict.fromkeys(
    "stuck requeued finalized notices_resent settled backing_off failing more".split(), 0
)


class Clock:
    """The ledger's and the engine's time, moved by the test."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Engine:
    fanout: FanOut
    queue: InMemoryWorkQueue
    state: StateStore
    outputs: InMemoryObjectStore
    work: InMemoryObjectStore
    fetcher: DictFetcher
    clock: Clock
    sleeps: list[float] = field(default_factory=list)

    @property
    def ledger(self) -> BatchLedger:
        return self.fanout.ledger

    def plan(
        self,
        rows: list[tuple[str, str]],
        key: str = "csv-files/batch.csv",
        config: dict[str, Any] | None = None,
    ) -> str:
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["creator_name", "cover_url"])
        writer.writerows(rows)
        self.fanout.ports.inputs.put(key, text.getvalue().encode())
        planned = self.fanout.plan(key, CONFIG if config is None else config)
        assert planned.batch_id is not None and planned.error is None
        return planned.batch_id

    def messages(self) -> list[dict[str, Any]]:
        """Every message on the queue, deleted from it."""
        out = []
        for message in self.queue.receive(max_messages=1000, wait_seconds=0):
            out.append(json.loads(message.body))
            self.queue.delete(message)
        return out

    def process(self, message: dict[str, Any]) -> CreatorResult:
        return asyncio.run(self.fanout.process(message))

    def summaries(self) -> list[dict[str, Any]]:
        keys = list(self.outputs.list("results/processing-summaries/"))
        return [json.loads(self.outputs.get(k)) for k in keys]


class CountingStore(InMemoryObjectStore):
    """Counts every put per key: a summary overwritten with itself would hide a second write."""

    def __init__(self) -> None:
        super().__init__()
        self.puts: dict[str, int] = {}

    def put(self, key: str, data: bytes, **kwargs: Any) -> StoredObject:
        self.puts[key] = self.puts.get(key, 0) + 1
        return super().put(key, data, **kwargs)


def engine(
    covers: dict[str, bytes | str],
    *,
    lease: float = 30.0,
    wrap: Any = None,
) -> Engine:
    """The wiring of ``bootstrap.make_fanout``, on in-memory ports and a fake fetcher."""
    clock, sleeps = Clock(), []
    state: StateStore = InMemoryStateStore()
    if wrap is not None:
        state = wrap(state)
    inputs, outputs, work = InMemoryObjectStore(), CountingStore(), InMemoryObjectStore()
    queue = InMemoryWorkQueue()
    fetcher = DictFetcher(covers)

    @asynccontextmanager
    async def fetchers(
        options: BatchSpec, csv_key: str, store: ObjectStore
    ) -> AsyncIterator[DictFetcher]:
        yield fetcher

    ledger = BatchLedger(
        state, outputs, work, lease_seconds=lease, clock=clock, sleep=sleeps.append
    )
    ledger.summary_wait_seconds = 0.0  # a claimed summary not written: fail at once
    ports = DistributedPorts(inputs, outputs, work, state, queue)
    fanout = FanOut(ports, ledger, Settings(), fetchers, stage=stage_manifest, clock=clock)
    return Engine(fanout, queue, state, outputs, work, fetcher, clock, sleeps)


COVERS: dict[str, bytes | str] = {
    "https://img.example/a1.jpg": jpeg(RED),
    "https://img.example/a2.jpg": jpeg(GREEN),
    "https://img.example/b1.jpg": jpeg(BLUE),
    "https://img.example/c1.jpg": "http_404",
}
ROWS = [
    ("Ann", "https://img.example/a1.jpg"),
    ("Bob", "https://img.example/b1.jpg"),
    ("Ann", "https://img.example/a2.jpg"),
    ("Cy", "https://img.example/c1.jpg"),
]


def counters(e: Engine, batch_id: str) -> tuple[int, int, int]:
    batch = e.state.get_batch(batch_id)
    assert batch is not None
    return batch.completed, batch.failed, batch.skipped


def dead_claim(e: Engine, message: dict[str, Any], owner: str = "dead-host:9:gone") -> None:
    """What a worker that claimed the creator and died leaves behind."""
    context = BatchContext(message["batch_id"], message["processing_date"], message["ttl"])
    job = CreatorJob(message["creator"], message["key"], ())
    assert e.ledger.claim(job, context, owner, note={"message": message}) is None


# -- plan -> process -> summary ------------------------------------------------------------


def test_plan_then_every_message_then_exactly_one_summary() -> None:
    e = engine(COVERS)
    batch_id = e.plan(ROWS)
    messages = e.messages()
    assert sorted(m["creator"] for m in messages) == ["Ann", "Bob", "Cy"]
    pending = {r.creator_name: r.status for r in e.state.creators_in_batch(batch_id)}
    assert set(pending.values()) == {CreatorStatus.PENDING}

    results = {m["creator"]: e.process(m) for m in messages}

    assert {k: r.status for k, r in results.items()} == {
        "Ann": CreatorStatus.COMPLETED,
        "Bob": CreatorStatus.COMPLETED,
        "Cy": CreatorStatus.FAILED,
    }
    assert results["Ann"].images_used == 2
    assert counters(e, batch_id) == (2, 1, 0)
    (summary,) = e.summaries()
    assert summary["batch_id"] == batch_id
    assert (summary["totals"]["completed"], summary["totals"]["failed"]) == (2, 1)
    assert sorted(c["creator"] for c in summary["creators"]) == ["Ann", "Bob", "Cy"]
    assert len([k for k in e.outputs.list("collages/") if k.endswith(".jpg")]) == 2
    batch = e.state.get_batch(batch_id)
    assert (
        batch is not None
        and batch.summary_key
        and batch.status.value == ("completed_with_failures")
    )
    # the CSV is archived, so an upload of the same name starts a new batch
    assert list(e.fanout.ports.inputs.list("csv-files/")) == []
    assert e.fanout.ports.inputs.exists("archived/processed/batch.csv")


def test_a_replanned_csv_is_the_same_batch_and_resends_nothing_checkpointed() -> None:
    e = engine(COVERS)
    batch_id = e.plan(ROWS)
    first = e.messages()
    again = e.fanout.plan("csv-files/batch.csv", CONFIG)  # the S3 event, redelivered
    assert again.batch_id == batch_id and again.replayed is True
    assert again.messages_sent == 0 and e.messages() == []
    assert len(first) == 3


# -- redelivery and claims ------------------------------------------------------------------


def test_a_redelivered_message_is_a_replay_counted_once() -> None:
    e = engine(COVERS)
    batch_id = e.plan(ROWS)
    ann = next(m for m in e.messages() if m["creator"] == "Ann")
    first = e.process(ann)
    fetched = list(e.fetcher.calls)
    again = e.process(ann)
    assert (first.replayed, again.replayed) == (False, True)
    assert again.status is CreatorStatus.COMPLETED and again.collage_key == first.collage_key
    assert e.fetcher.calls == fetched  # nothing fetched again
    assert counters(e, batch_id) == (1, 0, 0)
    assert len([k for k in e.outputs.list("collages/") if k.endswith(".jpg")]) == 1


def test_a_live_claim_of_another_worker_makes_the_message_wait() -> None:
    e = engine(COVERS, lease=30.0)
    batch_id = e.plan(ROWS)
    bob = next(m for m in e.messages() if m["creator"] == "Bob")
    dead_claim(e, bob)
    e.clock.advance(10)
    with pytest.raises(ClaimBusyError) as busy:
        e.process(bob)
    assert busy.value.retry_after == pytest.approx(20.0)  # until the claim would expire
    assert e.fetcher.calls == []
    record = e.state.get_creator(creator_key("Bob"), batch_id)
    assert record is not None and record.status is CreatorStatus.PROCESSING
    assert record.lease_owner == "dead-host:9:gone"


def test_an_expired_claim_is_taken_over_and_the_dead_owner_cannot_count_twice() -> None:
    e = engine(COVERS, lease=30.0)
    batch_id = e.plan(ROWS)
    bob = next(m for m in e.messages() if m["creator"] == "Bob")
    dead_claim(e, bob)
    e.clock.advance(31)
    result = e.process(bob)
    assert result.status is CreatorStatus.COMPLETED and not result.replayed
    record = e.state.get_creator(creator_key("Bob"), batch_id)
    assert record is not None and record.status is CreatorStatus.COMPLETED
    assert record.lease_owner != "dead-host:9:gone"
    assert counters(e, batch_id) == (1, 0, 0)

    # The "dead" owner was only slow: its late finish must not count Bob again.
    context = BatchContext(bob["batch_id"], bob["processing_date"], bob["ttl"])
    late = CreatorResult("Bob", creator_key("Bob"), CreatorStatus.COMPLETED, images_used=1)
    e.ledger.finish(late, context, "dead-host:9:gone", document_key="results/metadata/x.json")
    assert counters(e, batch_id) == (1, 0, 0)


def test_a_claim_the_sweep_finds_expired_is_sent_again_from_its_record() -> None:
    e = engine(COVERS, lease=30.0)
    e.plan(ROWS)
    messages = e.messages()
    bob = next(m for m in messages if m["creator"] == "Bob")
    dead_claim(e, bob)
    assert e.fanout.sweep() == NOTHING_SWEPT
    e.clock.advance(31)  # expired, but its own redelivery may still come: one lease of grace
    assert e.fanout.sweep() == NOTHING_SWEPT
    e.clock.advance(30)
    assert e.fanout.sweep() == {**NOTHING_SWEPT, "stuck": 1, "requeued": 1}
    assert e.messages() == [bob]
    for message in messages:
        e.process(message)
    (summary,) = e.summaries()
    assert summary["totals"]["creators"] == 3


# -- message size ----------------------------------------------------------------------------


def test_messages_stay_small_whatever_the_urls() -> None:
    prefixes = [f"https://cdn.example/{i:03d}/" for i in range(105)]
    urls = [p + "x" * (250 - len(p) - 4) + ".jpg" for p in prefixes]
    assert {len(u) for u in urls} == {250}
    rows = [(name, url) for name in ("Ann", "Bob", "Cy") for url in urls]
    e = engine({})
    e.plan(rows, config={})  # the default 5 x 7 grid keeps 3 x 35 = 105 covers
    bodies = [m.body for m in e.queue.receive(max_messages=10, wait_seconds=0)]
    assert len(bodies) == 3
    assert max(len(b.encode()) for b in bodies) < 1024
    for body in bodies:  # the message names where its covers are, all 105 of them
        plan_key, offset, length = json.loads(body)["plan"]
        line = json.loads(e.work.get_range(plan_key, offset, length))
        assert [url for _, url in line["covers"]] == urls


# -- a lagging index -------------------------------------------------------------------------


class LaggingIndex:
    """A state store whose ``creators_in_batch`` (an index) misses the ``hidden`` most
    recently finished creators for its first ``lag_calls`` calls, as a GSI would."""

    def __init__(self, inner: StateStore, *, lag_calls: int, hidden: int = 2) -> None:
        self.inner = inner
        self.lag_calls = lag_calls
        self.hidden = hidden
        self.index_calls = 0
        self.finished: list[str] = []

    def creators_in_batch(self, batch_id: str) -> Iterator[CreatorRecord]:
        self.index_calls += 1
        lagging = self.index_calls <= self.lag_calls
        unseen = set(self.finished[-self.hidden :]) if lagging else set()
        return iter(
            [r for r in self.inner.creators_in_batch(batch_id) if r.creator_name not in unseen]
        )

    def finish_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...],
        owner: str | None = None,
    ) -> BatchRecord | None:
        batch = self.inner.finish_creator(record, expected=expected, owner=owner)
        self.finished.append(record.creator_name)
        return batch

    def put_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...] | None = None,
        takeover_at: float | None = None,
        owner: str | None = None,
    ) -> None:
        self.inner.put_creator(record, expected=expected, takeover_at=takeover_at, owner=owner)

    def put_creators(self, records: Sequence[CreatorRecord], *, if_absent: bool) -> None:
        self.inner.put_creators(records, if_absent=if_absent)

    def get_creator(self, creator_name: str, batch_id: str) -> CreatorRecord | None:
        return self.inner.get_creator(creator_name, batch_id)

    def creators_with_status(
        self, status: CreatorStatus, *, limit: int = 1000, processing_date: str | None = None
    ) -> list[CreatorRecord]:
        return self.inner.creators_with_status(status, limit=limit, processing_date=processing_date)

    def creator_history(self, creator_name: str, limit: int = 50) -> list[CreatorRecord]:
        return self.inner.creator_history(creator_name, limit)

    def release_summary(self, batch_id: str, *, claimed_at: float) -> None:
        self.inner.release_summary(batch_id, claimed_at=claimed_at)

    def claim_summary(self, batch_id: str, *, now: float, lease_seconds: float) -> bool:
        return self.inner.claim_summary(batch_id, now=now, lease_seconds=lease_seconds)

    def put_batch(self, batch: BatchRecord) -> None:
        self.inner.put_batch(batch)

    def get_batch(self, batch_id: str) -> BatchRecord | None:
        return self.inner.get_batch(batch_id)

    def list_batches(self, limit: int = 50) -> list[BatchRecord]:
        return self.inner.list_batches(limit)


def test_the_summary_reads_a_lagging_index_again_until_every_creator_shows() -> None:
    lagging: list[LaggingIndex] = []

    def wrap(state: StateStore) -> LaggingIndex:
        lagging.append(LaggingIndex(state, lag_calls=3, hidden=2))
        return lagging[0]

    e = engine(COVERS, wrap=wrap)
    batch_id = e.plan(ROWS)
    for message in e.messages():
        e.process(message)

    (summary,) = e.summaries()
    assert sorted(c["creator"] for c in summary["creators"]) == ["Ann", "Bob", "Cy"]
    totals = summary["totals"]
    assert (totals["creators"], totals["completed"], totals["failed"]) == (3, 2, 1)
    assert lagging[0].index_calls == 4  # three lagging reads, then a full one
    step = closing.INDEX_CATCH_UP_SECONDS
    assert e.sleeps == [step, 2 * step, 3 * step]  # backed off, without waiting in the test
    assert counters(e, batch_id) == (2, 1, 0)


def test_an_index_that_never_catches_up_writes_no_summary() -> None:
    lagging: list[LaggingIndex] = []

    def wrap(state: StateStore) -> LaggingIndex:
        lagging.append(LaggingIndex(state, lag_calls=10**6, hidden=1))
        return lagging[0]

    e = engine(COVERS, wrap=wrap)
    batch_id = e.plan(ROWS)
    *first, last = e.messages()
    for message in first:
        e.process(message)
    with pytest.raises(SummaryPendingError):
        e.process(last)  # its message fails, so it comes back
    assert e.summaries() == []
    assert list(e.outputs.list("results/processing-summaries/")) == []
    batch = e.state.get_batch(batch_id)
    assert batch is not None and batch.summary_key is None and not batch.status.is_final
    assert len(e.sleeps) == closing.INDEX_CATCH_UP_TRIES
    assert counters(e, batch_id) == (2, 1, 0)  # the creators themselves are done

    # The attempt that gave up released its summary claim: once the index has caught
    # up, the redelivered message writes the summary at once, complete.
    lagging[0].lag_calls = 0
    assert e.process(last).replayed is True
    (summary,) = e.summaries()
    assert sorted(c["creator"] for c in summary["creators"]) == ["Ann", "Bob", "Cy"]


# -- contention at the port -------------------------------------------------------------------


class Contended(LaggingIndex):
    """Refuses the first ``refusals`` attempts of every batch write and finish, as
    DynamoDB does under contention (ConflictError: nothing written)."""

    def __init__(self, inner: StateStore, refusals: int = 2) -> None:
        super().__init__(inner, lag_calls=0)
        self.refusals = refusals
        self.attempts: dict[str, int] = {}

    def _refuse(self, what: str) -> None:
        self.attempts[what] = self.attempts.get(what, 0) + 1
        if self.attempts[what] <= self.refusals:
            raise ConflictError(f"{what}: TransactionConflict")

    def put_batch(self, batch: BatchRecord) -> None:
        self._refuse(f"batch {batch.batch_id} {batch.summary_key}")
        super().put_batch(batch)

    def finish_creator(
        self,
        record: CreatorRecord,
        *,
        expected: tuple[CreatorStatus, ...],
        owner: str | None = None,
    ) -> BatchRecord | None:
        self._refuse(f"finish {record.creator_name}")
        return super().finish_creator(record, expected=expected, owner=owner)


def test_writes_refused_for_contention_are_retried_and_counted_once() -> None:
    e = engine(COVERS, wrap=Contended)
    batch_id = e.plan(ROWS)
    for message in e.messages():
        e.process(message)
    assert counters(e, batch_id) == (2, 1, 0)
    (summary,) = e.summaries()
    assert summary["totals"]["creators"] == 3
    batch = e.state.get_batch(batch_id)
    assert batch is not None and batch.summary_key  # the closing write was retried too
    assert len(e.sleeps) >= 2 * 5  # two refusals each: the batch twice, three finishes


def test_the_summary_is_written_once_however_often_the_batch_is_finished() -> None:
    """Counts the writes, not the objects: every message delivered twice, then direct
    finalize calls and a sweep, and the summary object is put exactly once."""
    e = engine(COVERS)
    batch_id = e.plan(ROWS)
    messages = e.messages()
    for message in messages + messages:  # each delivered twice
        e.process(message)
    assert e.fanout.finalize(batch_id) is None
    assert e.fanout.sweep()["finalized"] == 0
    assert isinstance(e.outputs, CountingStore)
    summary_writes = {k: n for k, n in e.outputs.puts.items() if "processing-summaries" in k}
    assert summary_writes == {f"results/processing-summaries/{batch_id}.json": 1}
    assert e.outputs.puts["index.html"] == 1
