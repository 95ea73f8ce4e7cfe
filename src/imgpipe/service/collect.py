"""Collecting one creator's covers for its grid: fetch, decode, drop duplicates, backfill.

Kept apart from :mod:`.pipeline` because this is the one part of a creator's work
that talks to the network and decides cover by cover: which covers end up in the
grid, in which order, and why every other one did not. The pipeline around it
claims, renders, stores and finishes; it only sees the :class:`Collected` result.

Covers are taken in CSV order, one wave at a time of as many as the grid still
needs, so a failed cover is replaced by the next one in the list (backfill) and
covers never needed are never fetched (``not_attempted``). A cover is refused as
a ``duplicate`` when its bytes were accepted already, and as a ``near_duplicate``
when it looks like an accepted one (:mod:`imgpipe.imaging.perceptual`).

A grid of two, over covers that fail, repeat and run past what the grid needs::

    >>> import asyncio, io
    >>> from PIL import Image
    >>> from imgpipe.domain.manifest import CoverRef
    >>> from imgpipe.domain.spec import BatchSpec
    >>> from imgpipe.fetch.results import FetchResult
    >>> from imgpipe.service.progress import NullProgress
    >>> def jpeg(colour: str) -> bytes:
    ...     out = io.BytesIO()
    ...     Image.new("RGB", (120, 120), colour).save(out, "JPEG")
    ...     return out.getvalue()
    >>> served = {"a": None, "b": jpeg("red"), "c": jpeg("red"), "d": jpeg("blue"), "e": None}
    >>> class Server:
    ...     async def fetch(self, url: str) -> FetchResult:
    ...         data = served[url]
    ...         return FetchResult(url, data, reason=None if data else "http_404")
    >>> async def in_place(func, *args):  # the pipeline passes its executor here
    ...     return func(*args)
    >>> collector = CoverCollector(Server(), NullProgress(), run_cpu=in_place)
    >>> covers = [CoverRef(line, url) for line, url in enumerate("abcde", start=2)]
    >>> grid_of_two = BatchSpec.of(rows=1, cols=2)
    >>> collected = asyncio.run(collector.collect("k", covers, grid_of_two, CoverTally()))
    >>> [item.index for item in collected.accepted]      # b, then d backfills a's place
    [1, 3]
    >>> [collected.outcomes[i].reason for i in range(5)]  # e was never fetched
    ['http_404', None, 'duplicate', None, 'not_attempted']
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

from PIL import Image

from imgpipe.domain.fingerprints import content_hash
from imgpipe.domain.manifest import CoverRef
from imgpipe.domain.records import CoverOutcome, Reason
from imgpipe.errors import ImageError
from imgpipe.fetch.downloader import FetchResult
from imgpipe.imaging.decode import load_tile
from imgpipe.imaging.perceptual import Look, alike, hamming, look_of
from imgpipe.service.claim_beat import CoverTally
from imgpipe.service.progress import ProgressSink
from imgpipe.settings import BatchSpec

__all__ = ["Accepted", "Collected", "CoverCollector", "Fetcher", "RunCpu"]

# Runs a CPU-bound call off the event loop, on the pipeline's executor.
RunCpu = Callable[..., Awaitable[Any]]


class Fetcher(Protocol):
    async def fetch(self, url: str) -> FetchResult: ...


@dataclass
class Accepted:
    """A cover that goes into the grid."""

    index: int  # the cover's position in the creator's list
    sha256: str
    tile: Image.Image  # the decoded cover, cropped to fill one cell
    look: Look  # how it looks, for the near-duplicate check (imaging/perceptual.py)


class Collected(NamedTuple):
    """The covers for the grid in CSV order, and every cover's outcome by its position."""

    accepted: list[Accepted]
    outcomes: dict[int, CoverOutcome]


class CoverCollector:
    """Fetches and decodes a creator's covers until its grid is full."""

    def __init__(self, fetcher: Fetcher, progress: ProgressSink, *, run_cpu: RunCpu) -> None:
        self.fetcher = fetcher
        self.progress = progress
        self.run_cpu = run_cpu

    async def collect(
        self, key: str, covers: Sequence[CoverRef], options: BatchSpec, tally: CoverTally
    ) -> Collected:
        """Fetch covers in CSV order until the grid is full, backfilling failures."""
        target = options.images_per_collage
        accepted: list[Accepted] = []
        outcomes: dict[int, CoverOutcome] = {}
        seen: set[str] = set()
        # Near-duplicates are a kind of duplicate: off with deduplication too.
        near = options.collect.near_duplicates if options.collect.deduplicate else 0
        next_index = 0
        while len(accepted) < target and next_index < len(covers):
            wave = range(next_index, min(len(covers), next_index + target - len(accepted)))
            next_index = wave.stop
            results = await asyncio.gather(
                *(self._fetch_tile(key, covers[i], options, tally) for i in wave)
            )
            for index, (outcome, decoded) in zip(wave, results, strict=True):
                if decoded is not None and options.collect.deduplicate and outcome.sha256 in seen:
                    outcome = replace(outcome, ok=False, reason=Reason.DUPLICATE.value)
                    decoded = None
                twin = _near_twin(decoded, accepted, near)
                if twin is not None and decoded is not None:
                    line, distance = (
                        covers[twin.index].line,
                        hamming(decoded.look.bits, twin.look.bits),
                    )
                    detail = f"looks like the cover of line {line} ({distance}/64 bits differ)"
                    outcome = replace(
                        outcome, ok=False, reason=Reason.NEAR_DUPLICATE.value, detail=detail
                    )
                    decoded = None
                if decoded is not None and outcome.sha256 is not None:
                    seen.add(outcome.sha256)
                    accepted.append(Accepted(index, outcome.sha256, decoded.tile, decoded.look))
                outcomes[index] = outcome
        for index in range(next_index, len(covers)):
            outcomes[index] = CoverOutcome(
                covers[index].line, covers[index].url, ok=False, reason=Reason.NOT_ATTEMPTED.value
            )
        accepted.sort(key=lambda item: item.index)
        return Collected(accepted, outcomes)

    async def _fetch_tile(
        self, key: str, cover: CoverRef, options: BatchSpec, tally: CoverTally
    ) -> tuple[CoverOutcome, _Decoded | None]:
        fetched = await self.fetcher.fetch(cover.url)
        base = CoverOutcome(
            cover.line,
            cover.url,
            ok=False,
            reason=fetched.reason,
            detail=fetched.detail,
            attempts=fetched.attempts,
        )
        if fetched.data is None or fetched.reason is not None:
            self._cover_done(key, False, tally)
            return base, None
        data = fetched.data
        try:
            digest, decoded = await self.run_cpu(_hash_and_decode, data, options)
        except ImageError as exc:
            self._cover_done(key, False, tally)
            return replace(base, reason=exc.reason, detail=exc.detail, bytes=len(data)), None
        self._cover_done(key, True, tally)
        return replace(base, ok=True, reason=None, sha256=digest, bytes=len(data)), decoded

    def _cover_done(self, key: str, ok: bool, tally: CoverTally) -> None:
        tally.done(ok)
        self.progress.cover_done(key, ok)


class _Decoded(NamedTuple):
    """A decoded cover ready for the grid, and how it looks to the near-duplicate check."""

    tile: Image.Image
    look: Look


def _hash_and_decode(data: bytes, options: BatchSpec) -> tuple[str, _Decoded]:
    tile = load_tile(
        data,
        options.render.cell_size,
        max_pixels=options.collect.max_pixels,
        min_size=options.collect.min_image_size,
        crop=options.render.crop,
    )
    return content_hash(data), _Decoded(tile, look_of(tile))


def _near_twin(
    decoded: _Decoded | None, accepted: Sequence[Accepted], bits: int
) -> Accepted | None:
    """The first accepted cover ``decoded`` looks like, within ``bits`` (0: the check is off)."""
    if decoded is None or not bits:
        return None
    return next((item for item in accepted if alike(decoded.look, item.look, bits)), None)
