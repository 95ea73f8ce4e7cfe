"""Million rows, whole process: ``imgpipe run`` of a 1,000,020-row CSV against the csv module.

The export of ``bench_million`` (28,572 creators x 35 shuffled rows, 250-character
https URLs), except that every URL's host is a literal private address
(``https://10.0.0.1/...``): the address guard refuses each cover at once, without
DNS or a connection, so what is measured is the engine's own cost (staging,
planning, records, leases, the summary and the gallery), not the network. Two
children per round, each started through ``benchmarks.rusage_launcher`` (its own
peak RSS):

- ``csv module``: ``csv.reader`` over the file, touching every cell (the floor);
- ``imgpipe run``: ``python -m imgpipe run export.csv --out <fresh> --quiet``
  with default settings; every creator fails (no usable cover), exit 3.

The claims to check: the run peaks at most 512 MB and takes within 60x of the
csv module. ``--creators N`` or ``IMGPIPE_BENCH_MILLION_CREATORS=N`` shrinks the
file for a smoke run; ``--rounds R`` repeats the pair (median and range printed).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.bench_million import COVERS_PER_CREATOR, CREATORS, URL_LENGTH, write_csv

PRIVATE_HOST = "10.0.0.1"
RSS_LIMIT_MB = 512
TIME_RATIO_LIMIT = 60


@dataclass
class Child:
    wall: float
    peak_rss_mb: float
    cpu: float
    exit: int
    stdout: bytes


def launch(command: list[str]) -> Child:
    """Run ``command`` through the launcher: wall time, its own peak RSS and CPU."""
    with tempfile.NamedTemporaryFile(suffix=".json") as usage_file:
        launcher = [sys.executable, "-m", "benchmarks.rusage_launcher", usage_file.name, "--"]
        started = time.perf_counter()
        child = subprocess.run([*launcher, *command], capture_output=True)
        wall = time.perf_counter() - started
        usage = json.loads(Path(usage_file.name).read_text() or "{}")
    if child.returncode not in (0, 3):  # 3: some creators failed, as they all must here
        tail = child.stderr.decode()[-2000:]
        raise SystemExit(f"{command[:4]}: exited {child.returncode}\n{tail}")
    return Child(
        wall=wall,
        peak_rss_mb=usage["maxrss_kb"] / 1024,  # Linux reports KiB
        cpu=usage["user_s"] + usage["sys_s"],
        exit=child.returncode,
        stdout=child.stdout,
    )


def read_summary(out: Path) -> dict[str, object]:
    (path,) = (out / "results" / "processing-summaries").glob("*.json")
    return dict(json.loads(path.read_text()))


def spread(values: list[float], unit: str = "") -> str:
    return (
        f"{statistics.median(values):.2f}{unit} "
        f"(min {min(values):.2f}, max {max(values):.2f}, n={len(values)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = int(os.environ.get("IMGPIPE_BENCH_MILLION_CREATORS", CREATORS))
    parser.add_argument("--creators", type=int, default=default)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args(argv)

    reads: list[Child] = []
    runs: list[Child] = []
    with tempfile.TemporaryDirectory(prefix="imgpipe-million-run-") as tmp:
        work = Path(tmp)
        csv_path = work / "export.csv"
        rows = write_csv(csv_path, args.creators, host=PRIVATE_HOST)
        size_mb = csv_path.stat().st_size / 1e6
        print(
            f"million run: {args.creators:,} creators x {COVERS_PER_CREATOR} shuffled rows = "
            f"{rows:,} rows, {URL_LENGTH}-char https URLs on {PRIVATE_HOST} (refused by the "
            f"address guard), {size_mb:.0f} MB CSV, {os.cpu_count()} cores"
        )
        read_command = [sys.executable, "-m", "benchmarks.bench_million", "--child", "read"]
        for round_ in range(args.rounds):
            reads.append(launch([*read_command, str(csv_path)]))
            out = work / f"out-{round_}"
            run = [sys.executable, "-m", "imgpipe", "run", str(csv_path), "--out", str(out)]
            run += ["--crop", "center"]  # issue 9's targets are measured with the centre crop
            runs.append(launch([*run, "--quiet"]))
            summary = read_summary(out)
            totals = summary["totals"]
            assert isinstance(totals, dict)
            if round_ == 0:
                print(f"failures by reason: {summary['failures_by_reason']}")
            if (totals.get("rows_read"), totals.get("failed")) != (rows, args.creators):
                print(
                    f"FAIL: rows_read {totals.get('rows_read')}, failed {totals.get('failed')}; "
                    f"expected {rows} rows and {args.creators} failed creators"
                )
                return 1

    ratios = [run.wall / read.wall for run, read in zip(runs, reads, strict=True)]
    peak = max(run.peak_rss_mb for run in runs)
    print(f"{'child':<14} {'wall s (median, range)':<40} {'peak RSS':>9} {'cpu s':>7}")
    for name, children in (("csv module", reads), ("imgpipe run", runs)):
        print(
            f"{name:<14} {spread([c.wall for c in children]):<40} "
            f"{max(c.peak_rss_mb for c in children):>7.0f}MB "
            f"{statistics.median(c.cpu for c in children):>7.1f}"
        )
    print(
        f"imgpipe run / csv module: x{spread(ratios)} (limit x{TIME_RATIO_LIMIT}); "
        f"peak RSS {peak:.0f} MB (limit {RSS_LIMIT_MB} MB); "
        f"{rows / statistics.median(r.wall for r in runs):,.0f} rows/s"
    )
    status = 0
    if peak > RSS_LIMIT_MB:
        print(f"FAIL: imgpipe run peaked at {peak:.0f} MB, above {RSS_LIMIT_MB} MB")
        status = 1
    if statistics.median(ratios) > TIME_RATIO_LIMIT:
        print(f"FAIL: imgpipe run took x{statistics.median(ratios):.1f} of the csv module")
        status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
