"""``python -m benchmarks [NAME...]``: run every ``benchmarks/bench_*.py`` (or the named ones).

Each module has ``main(argv) -> int``; modules run in name order with ``bench_render``
first, and the exit status is the first non-zero one. ``make bench`` runs them all:
render, e2e, scale, aws, compare, decode_budget and million (staging a 1,000,000-row CSV; set
``IMGPIPE_BENCH_MILLION_CREATORS`` to a small number for a quick run).
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
    wanted = [a.removeprefix("bench_") for a in argv]
    names = [n for n in discover() if not wanted or n.removeprefix("bench_") in wanted]
    status = 0
    for i, name in enumerate(names):
        if i:
            print()
        module = importlib.import_module(f"benchmarks.{name}")
        status = status or int(module.main([]) or 0)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
