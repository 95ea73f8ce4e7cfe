"""Service tests for one creator's pipeline and whole batches, on in-memory ports.

The fetcher here is a dictionary (url -> bytes or a failure reason); downloads
over real HTTP are covered in tests/integration and tests/e2e.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from PIL import Image

from imgpipe.adapters.memory import InMemoryObjectStore, InMemoryStateStore, InProcessBatchLocks
from imgpipe.domain.keys import creator_key
from imgpipe.domain.manifest import CoverRef, CreatorJob, Manifest
from imgpipe.domain.records import CreatorStatus
from imgpipe.errors import BatchLockedError, StorageError
from imgpipe.fetch.downloader import FetchResult
from imgpipe.ports import ObjectStore, StateStore
from imgpipe.service.batch import BatchInterruptedError, BatchRunner, InMemoryJobs
from imgpipe.service.ledger import BatchLedger
from imgpipe.service.memory import MemoryMonitor
from imgpipe.service.results import BatchContext
from imgpipe.service.summary import BatchSummary
from imgpipe.settings import BatchSpec
from tests.support.images import jpeg, png

RED, GREEN, BLUE, YELLOW = (220, 20, 20), (20, 200, 20), (20, 20, 220), (230, 230, 20)


class DictFetcher:
    """url -> bytes (served) or str (a failure reason)."""

    def __init__(self, responses: dict[str, bytes | str]) -> None:
        self.responses = dict(responses)
        self.calls: list[str] = []

    async def fetch(self, url: str) -> FetchResult:
        self.calls.append(url)
        value = self.responses.get(url, "http_404")
        if isinstance(value, bytes):
            return FetchResult(url, value, final_url=url)
        return FetchResult(url, None, reason=value, detail=f"fake {value}")


class SteppingClock:
    """Each call one second later, so collage keys of successive renders differ."""

    def __init__(self, start: datetime | None = None, step: float = 1.0) -> None:
        self.now = start or datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC)
        self.step = timedelta(seconds=step)

    def __call__(self) -> datetime:
        self.now += self.step
        return self.now


def job(name: str, urls: list[str]) -> CreatorJob:
    return CreatorJob(
        name, creator_key(name), tuple(CoverRef(i + 2, u) for i, u in enumerate(urls))
    )


def manifest(*jobs: CreatorJob) -> Manifest:
    return Manifest(list(jobs), [], "creator", "url", rows_read=sum(len(j.covers) for j in jobs))


def options(**overrides: object) -> BatchSpec:
    return BatchSpec.of(
        rows=2, cols=3, cell_size=40, max_images=6, min_image_size=10
    ).with_overrides(**overrides)


def make_runner(
    store: ObjectStore, state: StateStore, fetcher: DictFetcher, **kwargs: Any
) -> BatchRunner:
    clock = kwargs.get("clock") or SteppingClock()
    ledger = BatchLedger(state, store, store, clock=clock)
    return BatchRunner(ledger, fetcher, locks=InProcessBatchLocks(), **kwargs)


def run(runner: BatchRunner, m: Manifest, opts: BatchSpec) -> BatchSummary:
    planned = InMemoryJobs(m)
    return asyncio.run(
        runner.run(planned, planned.stats(), opts, source="test.csv", identity="test")
    )


@pytest.fixture
def ports() -> Iterator[tuple[InMemoryObjectStore, InMemoryStateStore]]:
    yield InMemoryObjectStore(), InMemoryStateStore()


def cell_colour(collage: bytes, index: int, cols: int = 3, cell: int = 40) -> tuple[int, ...]:
    with Image.open(io.BytesIO(collage)) as image:
        x = (index % cols) * cell + cell // 2
        y = (index // cols) * cell + cell // 2
        return tuple(image.convert("RGB").getpixel((x, y)))  # type: ignore[arg-type]


def close_to(actual: tuple[int, ...], expected: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


def test_covers_land_in_csv_order_and_state_is_recorded(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    fetcher = DictFetcher({"a": jpeg(RED), "b": png(GREEN), "c": jpeg(BLUE)})
    runner = make_runner(store, state, fetcher, clock=SteppingClock())
    summary = run(runner, manifest(job("Ann", ["a", "b", "c"])), options())

    assert summary.totals["completed"] == 1 and summary.exit_code == 0
    creator = summary.creators[0]
    collage = store.get(creator["collage_key"])
    with Image.open(io.BytesIO(collage)) as image:
        assert image.size == (120, 40)  # 3 covers, 3 columns -> one row
    for index, colour in enumerate([RED, GREEN, BLUE]):
        assert close_to(cell_colour(collage, index), colour), index
    record = state.get_creator("Ann", summary.batch_id)
    assert record is not None and record.status is CreatorStatus.COMPLETED
    assert record.images_processed == 3 and record.collage_key == creator["collage_key"]
    assert creator["collage_key"].startswith("collages/by-creator/Ann/collage_2026")
    meta = json.loads(store.get(f"results/metadata/{summary.batch_id}/Ann.json"))
    assert [c["cell"] for c in meta["covers"]] == [0, 1, 2]
    saved = json.loads(store.get(summary.summary_key))
    assert saved["totals"]["images_used"] == 3
    assert "collages/by-creator/Ann/" in store.get("index.html").decode()


def test_duplicates_count_once_and_failures_are_backfilled(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    responses: dict[str, bytes | str] = {
        "bad": "http_500",
        "red": jpeg(RED),
        "red-again": jpeg(RED),  # same bytes under another URL
        "green": jpeg(GREEN),
        "blue": jpeg(BLUE),
        "yellow": jpeg(YELLOW),
    }
    fetcher = DictFetcher(responses)
    runner = make_runner(store, state, fetcher, clock=SteppingClock())
    urls = ["bad", "red", "red-again", "green", "blue", "yellow"]
    summary = run(runner, manifest(job("Bo", urls)), options(max_images=3))

    creator = summary.creators[0]
    assert creator["images_used"] == 3 and creator["duplicates"] == 1
    collage = store.get(creator["collage_key"])
    for index, colour in enumerate([RED, GREEN, BLUE]):
        assert close_to(cell_colour(collage, index), colour)
    assert "yellow" not in fetcher.calls  # the grid was full before it was needed
    assert summary.failures_by_reason == {"http_500": 1}
    assert [f["url"] for f in summary.failed_urls] == ["bad"]


def test_a_failed_creator_does_not_fail_the_others(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    fetcher = DictFetcher({"ok": jpeg(RED), "tiny": jpeg(RED, size=(5, 5)), "html": b"<html>"})
    runner = make_runner(store, state, fetcher, clock=SteppingClock())
    m = manifest(job("good", ["ok"]), job("bad", ["tiny", "html", "gone"]))
    summary = run(runner, m, options())

    assert summary.exit_code == 3
    by_name = {c["creator"]: c for c in summary.creators}
    assert by_name["good"]["status"] == "completed"
    assert by_name["bad"]["status"] == "failed"
    assert by_name["bad"]["failures"] == {"too_small": 1, "not_an_image": 1, "http_404": 1}
    assert "0 usable cover(s)" in by_name["bad"]["error"]
    assert summary.failures_by_reason == {"too_small": 1, "not_an_image": 1, "http_404": 1}


def test_rerun_skips_unchanged_and_rerenders_only_what_changed(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    responses: dict[str, bytes | str] = {"a": jpeg(RED), "b": jpeg(GREEN), "c": jpeg(BLUE)}
    fetcher = DictFetcher(responses)
    runner = make_runner(store, state, fetcher, clock=SteppingClock())
    m = manifest(job("one", ["a", "b"]), job("two", ["c"]))
    first = run(runner, m, options())
    assert first.totals["completed"] == 2

    second = run(runner, m, options())
    assert second.totals["skipped_unchanged"] == 2 and second.totals["completed"] == 0
    assert [c["collage_key"] for c in second.creators] == [c["collage_key"] for c in first.creators]

    fetcher.responses["c"] = jpeg(YELLOW)
    third = run(runner, m, options())
    statuses = {c["creator"]: c["status"] for c in third.creators}
    assert statuses == {"one": "skipped_unchanged", "two": "completed"}
    new_key = third.creators[1]["collage_key"]
    assert new_key != first.creators[1]["collage_key"]
    assert close_to(cell_colour(store.get(new_key), 0), YELLOW)

    forced = run(runner, m, options(force=True))
    assert forced.totals["completed"] == 2
    assert (
        len([k for k in store.list("collages/") if k.endswith(".jpg")]) == 5
    )  # 2 + 1 + 2 renders, nothing overwritten


def test_same_second_renders_never_overwrite(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    fetcher = DictFetcher({"a": jpeg(RED), "b": jpeg(GREEN), "c": jpeg(BLUE)})
    # Batches a millisecond apart: distinct records, same second in the collage name.
    frozen = SteppingClock(step=0.001)
    runner = make_runner(store, state, fetcher, clock=frozen)
    runs = [manifest(job("same", [url])) for url in "abc"]
    keys = [run(runner, m, options(force=True)).creators[0]["collage_key"] for m in runs]
    assert keys[0].endswith("_100000.jpg")
    assert keys[1].endswith("_100000_1.jpg") and keys[2].endswith("_100000_2.jpg")
    assert all(
        close_to(cell_colour(store.get(k), 0), c)
        for k, c in zip(keys, (RED, GREEN, BLUE), strict=True)
    )


def test_a_retried_render_reuses_its_collage_object(ports) -> None:  # type: ignore[no-untyped-def]
    """A crash between the collage and the record: the rerun continues the same batch,
    finds its own object (same bytes) and keeps it instead of adding a second one."""
    _, state = ports

    class CrashAfterCollage(InMemoryObjectStore):
        crashes = 1

        def put(self, key: str, data: bytes, **kwargs):  # type: ignore[no-untyped-def,override]
            if key.startswith("results/metadata/") and self.crashes:
                self.crashes -= 1
                raise StorageError("lost power")
            return super().put(key, data, **kwargs)

    store = CrashAfterCollage()
    fetcher = DictFetcher({"a": jpeg(RED), "b": jpeg(BLUE)})
    m = manifest(job("same", ["a"]), job("other", ["b"]))
    with pytest.raises(BatchInterruptedError) as stopped:
        run(make_runner(store, state, fetcher), m, options(max_workers=1))
    assert (stopped.value.done, stopped.value.total) == (1, 2)
    assert (
        len([k for k in store.list("collages/") if k.endswith(".jpg")]) == 2
    )  # both rendered, one not recorded
    summary = run(make_runner(store, state, fetcher), m, options())
    assert summary.batch_id == stopped.value.batch_id  # continued, not started over
    assert {c["status"] for c in summary.creators} == {"completed"}
    assert len([k for k in store.list("collages/") if k.endswith(".jpg")]) == 2
    assert sorted(fetcher.calls) == ["a", "a", "b"]  # only the unrecorded creator again


def test_memory_pressure_retries_in_safe_mode(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    readings = iter([95.0] + [50.0] * 100)  # critical once, then fine
    monitor = MemoryMonitor(warning=80, critical=90, reader=lambda: next(readings))
    urls = [f"u{i}" for i in range(30)]
    colours = [(i * 8 % 256, 100, 200 - i * 5) for i in range(30)]
    responses: dict[str, bytes | str] = {u: jpeg(c) for u, c in zip(urls, colours, strict=True)}
    runner = make_runner(
        store, state, DictFetcher(responses), monitor=monitor, clock=SteppingClock()
    )
    # Flat covers a few levels apart look alike to the near-duplicate check; this test
    # is about safe mode, so every cover must count.
    opts = BatchSpec.of(
        rows=5, cols=7, cell_size=20, max_images=35, min_image_size=10, near_duplicates=0
    )
    summary = run(runner, manifest(job("big", urls)), opts)

    creator = summary.creators[0]
    assert creator["status"] == "completed" and creator["safe_mode"] is True
    assert creator["images_used"] == 20  # safe mode caps covers at 20
    assert summary.peak_memory_percent == 95.0


def test_memory_pressure_twice_fails_only_that_creator(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    readings = iter([95.0, 95.0] + [10.0] * 100)
    monitor = MemoryMonitor(warning=80, critical=90, reader=lambda: next(readings))
    fetcher = DictFetcher({"a": jpeg(RED), "b": jpeg(BLUE)})
    runner = make_runner(store, state, fetcher, monitor=monitor, clock=SteppingClock())
    summary = run(
        runner, manifest(job("first", ["a"]), job("second", ["b"])), options(max_workers=1)
    )
    statuses = {c["creator"]: c["status"] for c in summary.creators}
    assert statuses == {"first": "failed", "second": "completed"}
    assert summary.creators[0]["error"].startswith("memory_critical")


def test_redelivered_creator_is_replayed_not_rendered_again(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    fetcher = DictFetcher({"a": jpeg(RED)})
    runner = make_runner(store, state, fetcher, clock=SteppingClock())
    m = manifest(job("again", ["a"]))
    summary = run(runner, m, options())

    record = state.get_creator("again", summary.batch_id)
    assert record is not None
    context = BatchContext(summary.batch_id, record.processing_date, record.ttl)
    replay = asyncio.run(runner.pipeline.process(m.jobs[0], context, options(), owner="w2"))
    assert replay.replayed and replay.status is CreatorStatus.COMPLETED
    assert replay.collage_key == summary.creators[0]["collage_key"]
    assert len([k for k in store.list("collages/") if k.endswith(".jpg")]) == 1
    assert fetcher.calls == ["a"]


def test_store_failure_for_one_creator_is_contained(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports

    class FlakyStore(InMemoryObjectStore):
        def put(self, key: str, data: bytes, **kwargs):  # type: ignore[no-untyped-def,override]
            if "/broken/" in key:
                raise OSError("disk on fire")
            return super().put(key, data, **kwargs)

    flaky = FlakyStore()
    fetcher = DictFetcher({"a": jpeg(RED), "b": jpeg(BLUE)})
    runner = make_runner(flaky, state, fetcher, clock=SteppingClock())
    summary = run(runner, manifest(job("broken", ["a"]), job("fine", ["b"])), options())
    statuses = {c["creator"]: c["status"] for c in summary.creators}
    assert statuses == {"broken": "failed", "fine": "completed"}
    assert "disk on fire" in summary.creators[0]["error"]


def test_deduplication_can_be_turned_off(ports) -> None:  # type: ignore[no-untyped-def]
    """ENABLE_DEDUPLICATION=false: the same bytes under two URLs fill two cells."""
    store, state = ports
    red = jpeg(RED)
    fetcher = DictFetcher({"a": red, "b": red, "c": jpeg(BLUE)})
    on = run(make_runner(store, state, fetcher), manifest(job("Ann", ["a", "b", "c"])), options())
    assert (on.creators[0]["images_used"], on.creators[0]["duplicates"]) == (2, 1)
    off = run(
        make_runner(store, state, fetcher),
        manifest(job("Ann", ["a", "b", "c"])),
        options(deduplicate=False, force=True),
    )
    assert (off.creators[0]["images_used"], off.creators[0]["duplicates"]) == (3, 0)
    collage = store.get(off.creators[0]["collage_key"])
    assert close_to(cell_colour(collage, 0), RED) and close_to(cell_colour(collage, 1), RED)
    assert close_to(cell_colour(collage, 2), BLUE)


def test_an_input_being_planned_elsewhere_is_refused(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    locks = InProcessBatchLocks()
    held = locks.acquire("plan-test")  # another process is planning the same input
    assert held is not None
    ledger = BatchLedger(state, store, store, clock=SteppingClock())
    runner = BatchRunner(ledger, DictFetcher({"a": jpeg(RED)}), locks=locks)
    planned = InMemoryJobs(manifest(job("Ann", ["a"])))
    with pytest.raises(BatchLockedError, match="planned by another process"):
        asyncio.run(
            runner.run(planned, planned.stats(), options(), source="t.csv", identity="test")
        )
    assert state.list_batches() == []
    held.release()
    summary = asyncio.run(
        runner.run(planned, planned.stats(), options(), source="t.csv", identity="test")
    )
    assert summary.totals["completed"] == 1


def _stop_ann_mid_way(
    store: ObjectStore, ledger: BatchLedger, state: StateStore, entered: Any, proceed: Any
) -> None:
    """Process Ann (pending, one red cover) and stop her task once ``entered`` is set by
    a slow store, then let the store go on: the stop must surface as CancelledError."""
    from imgpipe.domain.records import CreatorRecord
    from imgpipe.service.pipeline import CreatorPipeline

    context = BatchContext("b1", "2026-11-23T10:00:00+00:00", 0)
    state.put_creator(
        CreatorRecord("Ann", context.processing_date, "b1", CreatorStatus.PENDING), expected=()
    )
    pipeline = CreatorPipeline(store, ledger, DictFetcher({"a": jpeg(RED)}))

    async def stop_mid_way() -> None:
        task = asyncio.create_task(
            pipeline.process(job("Ann", ["a"]), context, options(), owner="me")
        )
        await asyncio.to_thread(entered.wait, 5)
        task.cancel()
        proceed.set()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(stop_mid_way())


def test_a_stop_while_the_claim_is_on_its_way_gives_the_claim_back(ports) -> None:  # type: ignore[no-untyped-def]
    """The claim runs in a thread: cancelled mid-claim, it is still made, then released."""
    import threading

    store, state = ports
    entered, proceed = threading.Event(), threading.Event()

    class SlowClaims(BatchLedger):
        def claim(self, *args: Any, **kwargs: Any) -> Any:
            entered.set()
            proceed.wait(5)  # a slow store: the stop arrives meanwhile
            return super().claim(*args, **kwargs)

    _stop_ann_mid_way(store, SlowClaims(state, store, store, clock=SteppingClock()), state,
                      entered, proceed)  # fmt: skip
    record = state.get_creator("Ann", "b1")
    assert record is not None and record.status is CreatorStatus.PENDING


def test_a_stop_while_the_collage_is_stored_finishes_the_creator(ports) -> None:  # type: ignore[no-untyped-def]
    """Once the render has started, a stop waits for it: the creator ends completed with
    its one collage recorded, and the stop is honoured after. Given back instead, the
    stored collage was named by no record (and a --new-batch run made a second one)."""
    import threading

    store, state = ports
    entered, proceed = threading.Event(), threading.Event()

    class SlowCollages(InMemoryObjectStore):
        def put(self, key: str, data: bytes, **kwargs: Any) -> None:
            if "/collage_" in key and key.endswith(".jpg"):
                entered.set()
                proceed.wait(5)  # a slow store: the stop arrives meanwhile
            super().put(key, data, **kwargs)

    slow = SlowCollages()
    _stop_ann_mid_way(slow, BatchLedger(state, slow, slow, clock=SteppingClock()), state,
                      entered, proceed)  # fmt: skip
    record = state.get_creator("Ann", "b1")
    assert record is not None and record.status is CreatorStatus.COMPLETED
    collages = [k for k in slow.list("") if "/collage_" in k and k.endswith(".jpg")]
    assert collages == [record.collage_key]


def _photo_cover(seed: int, **change: Any) -> bytes:
    """A photo-like 9:16 cover, optionally re-encoded, resized, cropped or brightened."""
    from tests.support.photos import photo

    image = photo(seed, (540, 960))
    if "scale" in change:
        image = image.resize((round(540 * change["scale"]), round(960 * change["scale"])))
    if "crop" in change:
        w, h = image.size
        cut = change["crop"] / 2
        image = image.crop(
            (round(w * cut), round(h * cut), round(w * (1 - cut)), round(h * (1 - cut)))
        )
    if "brighter" in change:
        image = image.point(lambda v: min(255, v + change["brighter"]))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=change.get("quality", 90))
    return buffer.getvalue()


def _bits_apart(a: bytes, b: bytes, cell: int) -> int:
    from imgpipe.imaging.decode import load_tile
    from imgpipe.imaging.perceptual import hamming, look_of

    crop = BatchSpec().render.crop  # the cell as the pipeline cuts it, by default

    def bits(data: bytes) -> int:
        return look_of(load_tile(data, cell, max_pixels=10**8, min_size=10, crop=crop)).bits

    return hamming(bits(a), bits(b))


def test_near_duplicates_count_once_and_name_the_cover_they_look_like(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    covers = {
        "a": _photo_cover(1),
        "a-q60": _photo_cover(1, quality=60),
        "b": _photo_cover(2),
        "a-90%": _photo_cover(1, scale=0.9),
        "a-crop": _photo_cover(1, crop=0.05),
        "a-brighter": _photo_cover(1, brighter=10),
        "c": _photo_cover(3),
    }
    urls = list(covers)
    fetcher = DictFetcher(dict(covers))
    cell = 200  # the hash is taken on the cell: at the default cell size, as users run
    bits = {name: _bits_apart(covers["a"], data, cell) for name, data in covers.items()}
    default = BatchSpec().collect.near_duplicates
    # Re-encodes, resizes and brightness stay within the default; a 5 % crop moves
    # 2-9 bits (see CollectSpec.near_duplicates), within 10.
    assert max(bits["a-q60"], bits["a-90%"], bits["a-brighter"]) <= default
    assert bits["a-crop"] <= 10 and min(bits["b"], bits["c"]) > 10
    variants = ("a-q60", "a-90%", "a-crop", "a-brighter")
    merged = sum(1 for name in variants if bits[name] <= default)
    at_default = run(
        make_runner(store, state, fetcher), manifest(job("Ann", urls)), options(cell_size=cell)
    )
    assert (at_default.creators[0]["images_used"], at_default.creators[0]["duplicates"]) == (
        7 - merged,
        merged,
    )
    summary = run(
        make_runner(store, state, fetcher),
        manifest(job("Ann", urls)),
        options(near_duplicates=10, cell_size=cell, force=True),
    )
    creator = summary.creators[0]
    assert (creator["images_used"], creator["duplicates"]) == (3, 4)
    (metadata_key,) = store.list(f"results/metadata/{summary.batch_id}/")
    metadata = json.loads(store.get(metadata_key))
    by_url = {c["url"]: c for c in metadata["covers"]}
    for variant in ("a-q60", "a-90%", "a-crop", "a-brighter"):
        assert by_url[variant]["reason"] == "near_duplicate", (variant, by_url[variant])
        assert by_url[variant]["detail"].startswith("looks like the cover of line 2 ")
    assert [by_url[u]["cell"] for u in ("a", "b", "c")] == [0, 1, 2]
    assert not summary.failures_by_reason  # near-duplicates are not failures


def test_near_duplicates_off_keeps_every_variant_and_changes_the_fingerprint(ports) -> None:  # type: ignore[no-untyped-def]
    store, state = ports
    covers = {"a": _photo_cover(1), "a-q60": _photo_cover(1, quality=60), "b": _photo_cover(2)}
    fetcher = DictFetcher(dict(covers))
    jobs = manifest(job("Ann", list(covers)))
    on = run(make_runner(store, state, fetcher), jobs, options(cell_size=200))
    off = run(make_runner(store, state, fetcher), jobs, options(near_duplicates=0, cell_size=200))
    assert on.creators[0]["images_used"] == 2 and off.creators[0]["images_used"] == 3
    assert off.creators[0]["status"] == "completed"  # re-rendered, not skipped as unchanged


def test_different_pictures_and_other_framings_do_not_look_alike() -> None:
    """Every pair of 20 different photo-like covers, and pans across one photograph,
    stay above the default threshold (what the default was chosen from)."""
    from imgpipe.imaging.decode import load_tile
    from imgpipe.imaging.perceptual import alike, look_of
    from tests.support.photos import photo

    threshold = BatchSpec().collect.near_duplicates

    def look(data: bytes):  # type: ignore[no-untyped-def]
        return look_of(load_tile(data, 200, max_pixels=10**8, min_size=16))

    looks = [look(_photo_cover(seed)) for seed in range(20)]
    assert not any(alike(a, b, threshold) for i, a in enumerate(looks) for b in looks[i + 1 :])
    scene = photo(99, (1600, 960))  # a wide photograph, framed at three pans
    frames = []
    for left in (0, 300, 600):
        buffer = io.BytesIO()
        scene.crop((left, 0, left + 540, 960)).save(buffer, "JPEG", quality=90)
        frames.append(look(buffer.getvalue()))
    assert not any(alike(a, b, threshold) for i, a in enumerate(frames) for b in frames[i + 1 :])
