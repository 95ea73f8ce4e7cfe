"""What a creator's claim loop writes, and when: lease renewals and live cover counts.

A claim is renewed at a third of its lease. The local engine also asks for the
creator's cover counts to be written between renewals, so a dashboard in another
process (``imgpipe serve`` beside an ``imgpipe run``) shows "12/35 covers" while
they download. The counts ride on the renewal's own write (one conditional update
of the creator's record), and :class:`ClaimBeat` lets them through only when they
changed and at most once per ``progress_every`` seconds: a million-row batch costs
about one write a second per creator in flight, never one per cover, and a creator
done within a second costs none. Without ``progress_every`` (AWS: per creator is
enough) only the renewals write, and they carry the counts of that moment.

Example::

    >>> now = [0.0]
    >>> beat = ClaimBeat(renew_every=100.0, progress_every=1.0, clock=lambda: now[0])
    >>> tally = CoverTally(); tally.started(3); tally.done(True)
    >>> beat.due(tally.counts()) is None            # not a second since the claim
    True
    >>> now[0] = 1.0; due = beat.due(tally.counts()); due
    Beat(renewal=False)
    >>> beat.wrote(due, tally.counts()); now[0] = 2.5
    >>> beat.due(tally.counts()) is None            # nothing new to show
    True
    >>> now[0] = 101.0; beat.due(tally.counts())    # the lease needs its renewal
    Beat(renewal=True)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Beat", "ClaimBeat", "CoverTally", "MIN_TICK_SECONDS"]

MIN_TICK_SECONDS = 0.05  # the shortest sleep of a claim loop (tests use tiny leases)

Counts = dict[str, int]


class CoverTally:
    """One creator's cover counts while it is processed (the pipeline's event loop
    writes them, the claim loop reads them: same thread, no lock needed)."""

    def __init__(self) -> None:
        self.ok = 0
        self.failed = 0
        self.total = 0

    def started(self, total: int) -> None:
        """A (re)start of the creator's covers: ``total`` is how many its collage can use."""
        self.ok, self.failed, self.total = 0, 0, total

    def done(self, ok: bool) -> None:
        if ok:
            self.ok += 1
        else:
            self.failed += 1

    def counts(self) -> Counts:
        """The shape pages read (as :meth:`.progress.LiveProgress.snapshot` gives it)."""
        return {"covers_ok": self.ok, "covers_failed": self.failed, "covers_total": self.total}


class Beat(NamedTuple):
    """A write is due; ``renewal``: a lease's third has passed since the last renewal,
    so whatever else the claim holds (an SQS message's visibility) is extended too."""

    renewal: bool


class ClaimBeat:
    """Decides, at each tick of a claim loop, whether the creator's record is written."""

    def __init__(
        self,
        renew_every: float,
        progress_every: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.renew_every = max(MIN_TICK_SECONDS, renew_every)
        self.progress_every = (
            None if progress_every is None else max(MIN_TICK_SECONDS, progress_every)
        )
        self._clock = clock
        self._renewed = self._written = clock()  # the claim itself was the first write
        self._counts: Counts | None = None  # what the last write carried

    @property
    def tick(self) -> float:
        """How long the loop sleeps between two calls of :meth:`due`."""
        if self.progress_every is None:
            return self.renew_every
        return min(self.renew_every, self.progress_every)

    def due(self, counts: Counts) -> Beat | None:
        """The write due now with ``counts``, or None."""
        now = self._clock()
        if now - self._renewed >= self.renew_every:
            return Beat(renewal=True)
        if (
            self.progress_every is not None
            and counts != self._counts
            and now - self._written >= self.progress_every
        ):
            return Beat(renewal=False)
        return None

    def wrote(self, beat: Beat, counts: Counts) -> None:
        """The write ``beat`` asked for landed, carrying ``counts``."""
        now = self._clock()
        self._written, self._counts = now, dict(counts)
        if beat.renewal:
            self._renewed = now
