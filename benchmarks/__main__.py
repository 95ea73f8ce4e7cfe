"""``python -m benchmarks``: the render benchmark, then the end-to-end one when present.

``bench_e2e`` is optional: it is imported lazily so that this entry point works
before (and without) it, but an import error *inside* it is not swallowed.
"""

from __future__ import annotations

import importlib
import sys

from benchmarks import bench_render

OPTIONAL = "benchmarks.bench_e2e"


def main() -> int:
    status = bench_render.main()
    try:
        module = importlib.import_module(OPTIONAL)
    except ModuleNotFoundError as exc:
        if exc.name != OPTIONAL:
            raise  # bench_e2e exists but one of its own imports is missing
        print(f"\n({OPTIONAL} not present; skipped)")
        return status
    print()
    return status or int(module.main() or 0)


if __name__ == "__main__":
    sys.exit(main())
