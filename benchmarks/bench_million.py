"""Million-row benchmark: staging a 1,000,000-row CSV against the csv module reading it.

The export is generated deterministically in a temp folder: 28,572 creators x 35
covers, rows shuffled (as a database export without ORDER BY gives them),
250-character signed-looking https URLs, about 270 MB. Two runs, each in a fresh
child process started through ``benchmarks.rusage_launcher`` (so its peak RSS is
its own):

- ``csv module``: ``csv.reader`` over the file, touching every cell (the floor);
- ``stage + jobs``: :func:`~imgpipe.adapters.sqlite_staging.stage_manifest`
  into a SQLite scratch file, then every job of :meth:`StagedManifest.jobs`.

The claims to check: staging peaks well under 512 MB whatever the row count
(``parse_manifest`` peaked at 3,957 MB on this file) and takes within ~20x of
the csv module. ``--creators N`` or ``IMGPIPE_BENCH_MILLION_CREATORS=N`` shrinks
the file for a smoke run (``python -m benchmarks million``).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CREATORS = 28_572
COVERS_PER_CREATOR = 35
URL_LENGTH = 250
SEED = 20260102
RSS_LIMIT_MB = 512
TIME_RATIO_LIMIT = 20


CDN_HOST = "p16-sign.cdn.example.com"


def cover_url(creator: int, cover: int, host: str = CDN_HOST) -> str:
    """A 250-character URL shaped like a CDN's signed link; the same for the same inputs."""
    head = f"https://{host}/obj/tos-maliva-p-0068/{creator:05d}{cover:02d}.jpeg"
    signature = hashlib.sha256(f"{creator}/{cover}".encode()).hexdigest()
    tail = f"?x-expires=1767312000&x-signature={signature}{signature}"
    return (head + tail)[:URL_LENGTH].ljust(URL_LENGTH, "0")


def write_csv(path: Path, creators: int, host: str = CDN_HOST) -> int:
    rows = [(c, j) for c in range(creators) for j in range(COVERS_PER_CREATOR)]
    random.Random(SEED).shuffle(rows)
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "creator_name", "cover_url", "views"])
        for i, (c, j) in enumerate(rows):
            writer.writerow(
                [i, f"creator {c:05d}", cover_url(c, j, host), (c * 7919 + j) % 100_000]
            )
    return len(rows)


def child_read(csv_path: Path) -> dict[str, float]:
    started = time.perf_counter()
    rows = cells = 0
    with csv_path.open(encoding="utf-8-sig", newline="") as stream:
        for row in csv.reader(stream):
            rows += 1
            cells += len(row)
    return {"seconds": time.perf_counter() - started, "rows": rows - 1, "cells": cells}


def child_stage(csv_path: Path, db_path: Path) -> dict[str, float]:
    from imgpipe.adapters.sqlite_staging import stage_manifest

    started = time.perf_counter()
    with csv_path.open(encoding="utf-8-sig", newline="") as stream:
        staged = stage_manifest(stream, path=db_path, max_covers_per_creator=COVERS_PER_CREATOR)
    staged_at = time.perf_counter()
    with staged:
        jobs = covers = 0
        for job in staged.jobs():
            jobs += 1
            covers += len(job.covers)
        result = {"rows": staged.rows_read, "problems": staged.problem_count}
    done = time.perf_counter()
    return {
        **result,
        "seconds": done - started,
        "stage_s": staged_at - started,
        "jobs_s": done - staged_at,
        "jobs": jobs,
        "covers": covers,
        "db_mb": db_path.stat().st_size / 1e6,
    }


def run_child(*args: str) -> tuple[dict[str, float], float]:
    """The child's own report and its peak RSS in MB."""
    command = [sys.executable, "-m", "benchmarks.bench_million", "--child", *args]
    with tempfile.NamedTemporaryFile(suffix=".json") as usage_file:
        launcher = [sys.executable, "-m", "benchmarks.rusage_launcher", usage_file.name, "--"]
        child = subprocess.run([*launcher, *command], capture_output=True)
        usage = json.loads(Path(usage_file.name).read_text() or "{}")
    if child.returncode != 0:
        raise SystemExit(f"{args[0]}: exited {child.returncode}\n{child.stderr.decode()[-2000:]}")
    return json.loads(child.stdout), usage["maxrss_kb"] / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = int(os.environ.get("IMGPIPE_BENCH_MILLION_CREATORS", CREATORS))
    parser.add_argument("--creators", type=int, default=default)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *paths = args.child
        report = child_read(Path(paths[0])) if kind == "read" else child_stage(*map(Path, paths))
        print(json.dumps(report))
        return 0

    with tempfile.TemporaryDirectory(prefix="imgpipe-million-") as tmp:
        work = Path(tmp)
        csv_path = work / "export.csv"
        rows = write_csv(csv_path, args.creators)
        size_mb = csv_path.stat().st_size / 1e6
        print(
            f"million: {args.creators:,} creators x {COVERS_PER_CREATOR} shuffled rows = "
            f"{rows:,} rows, {URL_LENGTH}-char URLs, {size_mb:.0f} MB CSV"
        )
        read, read_rss = run_child("read", str(csv_path))
        stage, stage_rss = run_child("stage", str(csv_path), str(work / "staging.sqlite3"))

    print(f"{'run':<16} {'seconds':>8} {'rows/s':>10} {'peak RSS':>9}")
    for name, report, rss in (("csv module", read, read_rss), ("stage + jobs", stage, stage_rss)):
        print(
            f"{name:<16} {report['seconds']:>8.2f} {rows / report['seconds']:>10,.0f} {rss:>7.0f}MB"
        )
    ratio = stage["seconds"] / read["seconds"]
    print(
        f"stage {stage['stage_s']:.2f} s + jobs {stage['jobs_s']:.2f} s; "
        f"time x{ratio:.1f} of the csv module (limit x{TIME_RATIO_LIMIT}); "
        f"peak RSS {stage_rss:.0f} MB (limit {RSS_LIMIT_MB} MB); "
        f"scratch file {stage['db_mb']:.0f} MB"
    )
    expected = (rows, args.creators, rows, 0)
    got = (stage["rows"], stage["jobs"], stage["covers"], stage["problems"])
    if got != expected or read["rows"] != rows:
        print(f"FAIL: staged (rows, jobs, covers, problems) {got}, expected {expected}")
        return 1
    if stage_rss > RSS_LIMIT_MB:
        print(f"FAIL: staging peaked at {stage_rss:.0f} MB, above {RSS_LIMIT_MB} MB")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
