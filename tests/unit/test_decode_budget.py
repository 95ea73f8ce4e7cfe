"""The decode budget: pixels in flight across threads, alone when too big, in order, never stuck."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest

from imgpipe.imaging.budget import DecodeBudget
from imgpipe.settings import Settings


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll a condition the test needs before its next step (a deadline, not an assertion)."""
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(0.001)


class Holder:
    """A thread that takes ``pixels`` from the budget and keeps them until told to let go."""

    def __init__(self, budget: DecodeBudget, pixels: int) -> None:
        self.granted = threading.Event()
        self.let_go = threading.Event()
        self.seen_in_flight = -1

        def run() -> None:
            with budget.hold(pixels):
                self.seen_in_flight = budget.in_flight
                self.granted.set()
                self.let_go.wait(10)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def finish(self) -> None:
        self.let_go.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def test_many_threads_never_hold_more_than_the_budget() -> None:
    budget = DecodeBudget(1_000)
    held, peak, lock = 0, 0, threading.Lock()
    sizes = [random.Random(seed).randint(1, 600) for seed in range(400)]

    def decode(pixels: int) -> None:
        nonlocal held, peak
        with budget.hold(pixels):
            with lock:
                held += pixels
                peak = max(peak, held)
            time.sleep(0.0005)  # lets others pile up; the bound must hold regardless
            with lock:
                held -= pixels

    threads = [threading.Thread(target=decode, args=(s,)) for s in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert peak <= 1_000 and budget.peak <= 1_000
    assert (budget.in_flight, budget.waiting) == (0, 0)


def test_an_image_over_the_whole_budget_waits_then_runs_alone() -> None:
    budget = DecodeBudget(100)
    small = Holder(budget, 30)
    assert small.granted.wait(5)
    huge = Holder(budget, 5_000)
    wait_until(lambda: budget.waiting == 1, "the huge image queues")
    assert not huge.granted.is_set()

    small.finish()
    assert huge.granted.wait(5)
    assert huge.seen_in_flight == 100  # charged the whole budget: nothing else fits beside it
    late = Holder(budget, 1)
    wait_until(lambda: budget.waiting == 1, "a one-pixel image queues behind it")
    assert not late.granted.is_set()

    huge.finish()
    assert late.granted.wait(5)
    late.finish()
    assert budget.in_flight == 0


def test_pixels_come_back_when_the_decode_raises() -> None:
    budget = DecodeBudget(100)
    with pytest.raises(OSError), budget.hold(100):
        raise OSError("truncated")
    assert budget.in_flight == 0
    done = threading.Event()
    threading.Thread(target=lambda: (budget.acquire(100), done.set()), daemon=True).start()
    assert done.wait(5)  # the whole budget is available again


def test_first_come_first_served_so_large_images_are_not_starved() -> None:
    budget = DecodeBudget(100)
    first = Holder(budget, 60)
    assert first.granted.wait(5)
    large = Holder(budget, 80)
    wait_until(lambda: budget.waiting == 1, "the large image queues")
    small = Holder(budget, 10)  # would fit beside the first, but the large one came earlier
    wait_until(lambda: budget.waiting == 2, "the small image queues behind it")
    assert not small.granted.is_set()

    first.finish()
    assert large.granted.wait(5)
    assert small.granted.wait(5)  # 80 + 10 fit together: it follows at once
    assert small.seen_in_flight == 90
    large.finish()
    small.finish()
    assert budget.peak == 90


def test_mixed_sizes_including_oversized_all_finish() -> None:
    budget = DecodeBudget(50)
    rng = random.Random(7)
    sizes = [rng.choice([1, 10, 49, 50, 51, 500]) for _ in range(200)]
    finished = []

    def decode(pixels: int) -> None:
        with budget.hold(pixels):
            assert budget.in_flight <= 50
        finished.append(pixels)

    threads = [threading.Thread(target=decode, args=(s,), daemon=True) for s in sizes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(finished) == len(sizes)  # no deadlock, no lost wake-up
    assert (budget.in_flight, budget.waiting) == (0, 0)


def test_a_zero_budget_bounds_nothing_but_still_counts() -> None:
    budget = DecodeBudget(0)
    with budget.hold(10**9), budget.hold(10**9):
        assert budget.in_flight == 2 * 10**9
    assert budget.peak == 2 * 10**9
    with pytest.raises(ValueError):
        DecodeBudget(-1)


def test_the_default_budget_fits_the_largest_allowed_image_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("IMGPIPE_DECODE_BUDGET_PIXELS", raising=False)
    default = Settings()
    assert default.decode_budget_pixels == 64_000_000
    assert default.max_image_pixels <= default.decode_budget_pixels < 2 * default.max_image_pixels
    monkeypatch.setenv("IMGPIPE_DECODE_BUDGET_PIXELS", "1234")
    assert Settings().decode_budget_pixels == 1234
