"""Start-up of the common commands, as whole processes: what every run pays first.

``imgpipe run`` on a header-only CSV (``--json``: no table, no bar), ``imgpipe status``
and ``imgpipe --help``, each started ``--runs`` times (median wall and CPU of the
finished child, from ``wait4``), beside a bare ``python -c pass``. With
``--vs SRC`` each command also runs from another checkout's ``src`` (``git archive``
of an earlier commit), in turn with this one, and the ratio is taken pair by pair::

    .venv/bin/python -m benchmarks startup --vs /tmp/main-src

Nearly all of it is imports (``python -X importtime -m imgpipe run ...`` shows which);
``tests/unit/test_startup_weight.py`` keeps what ``run`` need not load out of it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def timed(command: list[str], src: Path) -> tuple[float, float]:
    """(wall s, CPU s) of one run of ``command`` with ``src`` first on the path."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    quiet = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_WRONLY, 0) for fd in (1, 2)]
    start = time.perf_counter()
    pid = os.posix_spawnp(command[0], command, env, file_actions=quiet)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} exited {code}")
    return wall, usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks startup")
    parser.add_argument("--runs", type=int, default=12)
    parser.add_argument("--vs", type=Path, help="another checkout's src folder, the baseline")
    args = parser.parse_args(argv)
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="imgpipe-startup-") as folder:
        root = Path(folder)
        csv = root / "empty.csv"
        csv.write_text("creator,cover_url\n")
        sources = {"this": SRC, **({"vs": args.vs.resolve()} if args.vs else {})}
        imgpipe = [python, "-m", "imgpipe"]

        def commands(name: str) -> dict[str, list[str]]:
            """The command lines for the checkout ``name``, its own output folder; in order:
            ``status`` reads the batch that ``run`` recorded."""
            out = ["--out", str(root / name)]
            return {
                "python -c pass": [python, "-c", "pass"],
                "imgpipe run EMPTY.csv --json": [*imgpipe, "run", str(csv), "--json", *out],
                "imgpipe status": [*imgpipe, "status", *out],
                "imgpipe --help": [*imgpipe, "--help"],
            }

        print(f"Start-up, whole processes (median of {args.runs}; wall s / CPU s)")
        for label in commands("this"):
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in sources}
            for name, src in sources.items():  # one warm-up each: bytecode, page cache
                timed(commands(name)[label], src)
            for _ in range(args.runs):
                for name, src in sources.items():  # in turn: drift hits both alike
                    runs[name].append(timed(commands(name)[label], src))
            line = f"  {label:30}"
            for name in sources:
                wall = statistics.median(w for w, _ in runs[name])
                cpu = statistics.median(c for _, c in runs[name])
                line += f"  {name}: {wall:5.3f} / {cpu:5.3f}"
            if args.vs:
                pairs = zip(runs["this"], runs["vs"], strict=True)
                ratio = statistics.median(a / b for (a, _), (b, _) in pairs)
                line += f"  this/vs wall x{ratio:.2f}"
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
