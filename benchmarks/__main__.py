"""``python -m benchmarks [NAME...] [OPTIONS]``: run every ``benchmarks/bench_*.py`` (or the
named ones); options (from the first argument that starts with ``-``) go to each named
benchmark, e.g. ``python -m benchmarks million_aws --creators 1000 3000``.

Each module has ``main(argv) -> int``; modules run in name order with ``bench_render``
first, and the exit status is the first non-zero one. ``make bench`` runs them all:
render, e2e, scale, aws, compare, decode_budget (peak RSS of the API server under
concurrent compresses and compares), smartcrop (``--crop smart`` against centre
on the render covers, paired), overhead (700 local covers against the decode
floor), latency (350 covers over a 50 ms loopback), million (staging a
1,000,000-row CSV), million_run (``imgpipe run`` of it), million_aws (planning
it on moto) and startup (``run``, ``status`` and ``--help`` as whole processes).
Set ``IMGPIPE_BENCH_MILLION_CREATORS`` to a small number for a quick run of the
three million benchmarks.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

FIRST = "bench_render"


def discover() -> list[str]:
    names = sorted(p.stem for p in Path(__file__).parent.glob("bench_*.py"))
    return sorted(names, key=lambda name: name != FIRST)


def main(argv: list[str]) -> int:
    split = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    wanted = [a.removeprefix("bench_") for a in argv[:split]]
    options = argv[split:]
    if options and not wanted:  # one benchmark's options would be errors in the others
        raise SystemExit("name the benchmark the options are for")
    names = [n for n in discover() if not wanted or n.removeprefix("bench_") in wanted]
    status = 0
    for i, name in enumerate(names):
        if i:
            print()
        module = importlib.import_module(f"benchmarks.{name}")
        # Every benchmark runs, whatever an earlier one returned (an `or` here
        # short-circuited: a missed target skipped every benchmark after it).
        result = int(module.main(options) or 0)
        status = status or result
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
