"""The claim loop's throttle: cover counts reach the creator's record at most once per
``progress_every`` and only when they changed; lease renewals keep their own rhythm.

The clock is a number the tests move; the last test runs a real pipeline on
in-memory ports and counts the writes its claim loop makes.
"""

from __future__ import annotations

import asyncio
from typing import Any

from imgpipe.adapters.memory import InMemoryObjectStore, InMemoryStateStore
from imgpipe.domain.records import CreatorStatus
from imgpipe.fetch.downloader import FetchResult
from imgpipe.service.claim_beat import Beat, ClaimBeat, CoverTally
from imgpipe.service.ledger import BatchLedger
from imgpipe.service.pipeline import CreatorPipeline
from imgpipe.service.results import PlanStats
from tests.support.images import jpeg
from tests.unit.test_pipeline import job, options


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def drive(beat: ClaimBeat, clock: Clock, tally: CoverTally, seconds: float) -> list[float]:
    """Tick the loop for ``seconds`` while a cover finishes every 10 ms; the write times."""
    writes: list[float] = []
    end = clock.now + seconds
    while clock.now < end:
        clock.now = round(clock.now + beat.tick, 6)
        for _ in range(round(beat.tick / 0.01)):
            tally.done(True)
        due = beat.due(tally.counts())
        if due is not None:
            beat.wrote(due, tally.counts())
            writes.append(clock.now)
    return writes


def test_a_busy_creator_writes_about_once_a_second_not_once_a_cover() -> None:
    clock, tally = Clock(), CoverTally()
    tally.started(2000)
    beat = ClaimBeat(renew_every=100.0, progress_every=1.0, clock=clock)
    writes = drive(beat, clock, tally, seconds=10.0)  # 1000 covers
    assert tally.ok == 1000
    assert 9 <= len(writes) <= 10
    gaps = [b - a for a, b in zip([0.0, *writes], writes, strict=False)]
    assert min(gaps) >= 1.0


def test_unchanged_counts_are_not_written_again() -> None:
    clock, tally = Clock(), CoverTally()
    tally.started(5)
    tally.done(False)
    beat = ClaimBeat(renew_every=100.0, progress_every=1.0, clock=clock)
    clock.now = 1.0
    due = beat.due(tally.counts())
    assert due == Beat(renewal=False)
    beat.wrote(due, tally.counts())
    for second in range(2, 99):
        clock.now = float(second)
        assert beat.due(tally.counts()) is None
    tally.done(True)
    clock.now = 99.5
    assert beat.due(tally.counts()) == Beat(renewal=False)


def test_renewals_keep_their_rhythm_whatever_the_progress_writes() -> None:
    clock, tally = Clock(), CoverTally()
    tally.started(10_000)
    beat = ClaimBeat(renew_every=10.0, progress_every=1.0, clock=clock)
    renewals: list[float] = []
    while clock.now < 35.0:
        clock.now = round(clock.now + beat.tick, 6)
        tally.done(True)
        due = beat.due(tally.counts())
        if due is not None:
            beat.wrote(due, tally.counts())
            if due.renewal:
                renewals.append(clock.now)
    assert renewals == [10.0, 20.0, 30.0]


def test_without_progress_every_only_renewals_write() -> None:
    clock, tally = Clock(), CoverTally()
    tally.started(100)
    beat = ClaimBeat(renew_every=100.0, progress_every=None, clock=clock)
    assert beat.tick == 100.0
    writes = drive(beat, clock, tally, seconds=200.0)
    assert writes == [100.0, 200.0]


def test_a_restart_of_the_creators_covers_resets_the_tally() -> None:
    tally = CoverTally()
    tally.started(3)
    tally.done(True)
    tally.done(False)
    assert tally.counts() == {"covers_ok": 1, "covers_failed": 1, "covers_total": 3}
    tally.started(2)  # safe mode starts the covers again
    assert tally.counts() == {"covers_ok": 0, "covers_failed": 0, "covers_total": 2}


class GatedFetcher:
    """Serves ``data`` for each URL once its gate opens (tests release covers one by one)."""

    def __init__(self, urls: list[str], data: bytes) -> None:
        self.data = data
        self.gates = {url: asyncio.Event() for url in urls}

    async def fetch(self, url: str) -> FetchResult:
        await self.gates[url].wait()
        return FetchResult(url, self.data, final_url=url)


class CountingLedger(BatchLedger):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.renewals: list[dict[str, int] | None] = []

    def renew(self, *args: Any, progress: dict[str, int] | None = None, **kwargs: Any) -> bool:
        self.renewals.append(progress)
        return super().renew(*args, progress=progress, **kwargs)


def test_the_pipeline_records_counts_while_covers_download_and_writes_little() -> None:
    store, state = InMemoryObjectStore(), InMemoryStateStore()
    ledger = CountingLedger(state, store, store, lease_seconds=300.0)
    urls = [f"u{i}" for i in range(6)]
    fetcher = GatedFetcher(urls, jpeg((200, 30, 30)))
    pipeline = CreatorPipeline(store, ledger, fetcher, progress_seconds=0.05)
    creator = job("Ann", urls)

    async def scenario() -> list[dict[str, int]]:
        context = ledger.open_batch(
            "b1", source="x.csv", total=1, settings={}, stats=PlanStats(0, 0, [])
        )
        ledger.add_pending(context, [creator])
        batch = state.get_batch("b1")
        assert batch is not None
        work = asyncio.create_task(pipeline.process(creator, context, options(), owner="me"))
        seen: list[dict[str, int]] = []
        for released in (2, 4):
            for url in urls[released - 2 : released]:
                fetcher.gates[url].set()
            for _ in range(200):  # the next beat writes within 0.05 s
                await asyncio.sleep(0.01)
                counts = ledger.live_progress(batch).get(creator.key)
                if counts and counts["covers_ok"] == released:
                    seen.append(counts)
                    break
        for _ in range(20):  # quiet: nothing new to write
            await asyncio.sleep(0.01)
        quiet = len(ledger.renewals)
        await asyncio.sleep(0.3)
        assert len(ledger.renewals) == quiet, "unchanged counts were written again"
        for gate in fetcher.gates.values():
            gate.set()
        result = await work
        assert result.status is CreatorStatus.COMPLETED
        assert ledger.live_progress(batch) == {}  # finished: no longer in flight
        return seen

    seen = asyncio.run(scenario())
    assert seen == [
        {"covers_ok": 2, "covers_failed": 0, "covers_total": 6},
        {"covers_ok": 4, "covers_failed": 0, "covers_total": 6},
    ]
    # Never the same counts twice (covers decoded between two beats may show, e.g. 3/6).
    written = [tuple(sorted(counts.items())) for counts in ledger.renewals if counts]
    assert len(written) == len(set(written)) >= 2
    assert len(ledger.renewals) <= 7  # 0/6 to 6/6
