"""What the pipeline leaves for pages: previews, collage sizes, live cover counts, status."""

from __future__ import annotations

import io

from PIL import Image

from imgpipe.adapters.memory import InMemoryObjectStore, InMemoryStateStore
from imgpipe.domain.keys import preview_key
from imgpipe.imaging.preview import PREVIEW_WIDTH
from imgpipe.service.progress import LiveProgress
from imgpipe.service.results import CreatorResult
from tests.support.images import jpeg
from tests.unit.test_pipeline import (
    BLUE,
    GREEN,
    RED,
    YELLOW,
    DictFetcher,
    SteppingClock,
    job,
    make_runner,
    manifest,
    options,
    run,
)


def size_of(data: bytes) -> tuple[str | None, tuple[int, int]]:
    with Image.open(io.BytesIO(data)) as image:
        return image.format, image.size


def test_a_rendered_collage_has_a_preview_and_a_known_size() -> None:
    store, state = InMemoryObjectStore(), InMemoryStateStore()
    fetcher = DictFetcher({"a": jpeg(RED), "b": jpeg(GREEN), "c": jpeg(BLUE), "d": jpeg(YELLOW)})
    # 200 px cells, 3 columns: a one-row collage of 600x200 and a two-row one of 600x400.
    opts = options(cell_size=200)
    summary = run(
        make_runner(store, state, fetcher),
        manifest(job("row", ["a", "b"]), job("two", ["a", "b", "c", "d"])),
        opts,
    )

    by_name = {c["creator"]: c for c in summary.creators}
    for name, (width, height) in {"row": (600, 200), "two": (600, 400)}.items():
        entry = by_name[name]
        assert size_of(store.get(entry["collage_key"]))[1] == (width, height)
        assert (entry["width"], entry["height"]) == (width, height)
        assert entry["preview_key"] == preview_key(entry["collage_key"], PREVIEW_WIDTH)
        fmt, (w, h) = size_of(store.get(entry["preview_key"]))
        assert fmt == "WEBP" and w == PREVIEW_WIDTH
        assert abs(w / h - width / height) < 0.02
        assert len(store.get(entry["preview_key"])) < len(store.get(entry["collage_key"]))
        record = state.get_creator(entry["key"], summary.batch_id)
        assert record is not None
        restored = CreatorResult.from_record(record)
        assert restored.preview_key == entry["preview_key"]
        assert restored.collage_size == (width, height)


def test_an_unchanged_creator_gets_the_preview_its_collage_lacks() -> None:
    store, state = InMemoryObjectStore(), InMemoryStateStore()
    fetcher = DictFetcher({"a": jpeg(RED), "b": jpeg(GREEN)})
    runner = make_runner(store, state, fetcher, clock=SteppingClock())
    first = run(runner, manifest(job("Ann", ["a", "b"])), options())
    (entry,) = first.creators
    store.delete(entry["preview_key"])  # a collage stored before previews existed

    second = run(runner, manifest(job("Ann", ["a", "b"])), options())

    (again,) = second.creators
    assert again["status"] == "skipped_unchanged"
    assert again["collage_key"] == entry["collage_key"]
    assert again["preview_key"] == entry["preview_key"]
    assert store.exists(again["preview_key"])
    assert (again["width"], again["height"]) == (entry["width"], entry["height"])


def test_live_progress_counts_each_creators_covers_while_it_runs() -> None:
    seen: list[dict[str, dict[str, int]]] = []

    class Watching(LiveProgress):
        def cover_done(self, key: str, ok: bool) -> None:
            super().cover_done(key, ok)
            seen.append(self.snapshot())

    store, state = InMemoryObjectStore(), InMemoryStateStore()
    fetcher = DictFetcher({"a": jpeg(RED), "b": jpeg(GREEN), "c": jpeg(BLUE)})
    live = Watching()
    run(
        make_runner(store, state, fetcher, progress=live),
        manifest(job("Ann", ["a", "b", "missing", "c"])),
        options(max_workers=1),
    )

    # Four covers fit the 2x3 grid; each one counted as it arrived, the 404 as failed.
    final = seen[-1]["Ann"]
    assert final == {"covers_ok": 3, "covers_failed": 1, "covers_total": 4}
    assert [s["Ann"]["covers_ok"] + s["Ann"]["covers_failed"] for s in seen] == [1, 2, 3, 4]
    assert live.snapshot() == {}  # a finished creator leaves the table


def test_a_batch_whose_every_creator_failed_is_failed() -> None:
    store, state = InMemoryObjectStore(), InMemoryStateStore()
    fetcher = DictFetcher({"a": jpeg(RED)})
    runner = make_runner(store, state, fetcher)
    failed = run(runner, manifest(job("x", ["gone"]), job("y", ["gone2"])), options())
    assert failed.status.value == "failed" and failed.exit_code == 3
    batch = state.get_batch(failed.batch_id)
    assert batch is not None and batch.status.value == "failed"

    some = run(runner, manifest(job("x", ["gone"]), job("z", ["a"])), options(force=True))
    assert some.status.value == "completed_with_failures"
