"""Scale benchmark: does memory stay flat when the CSV grows 100-fold?

Two runs of the real CLI, each in a fresh child process and output folder, on
small local covers (so the run measures the pipeline's bookkeeping, not JPEG
decoding): 100 creators, then 10,000 creators, 3 covers each. Reported side by
side: wall time, creators per second and the child's peak RSS. The claim to
check: peak RSS is bounded by ``--workers``, not by the number of creators
(ratio of peaks close to 1 while the input grows 100x), and the summary and
gallery still account for every creator.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

from PIL import Image

from benchmarks.bench_e2e import Run, run_cli

SMALL, LARGE = 100, 10_000
COVERS_PER_CREATOR = 3
POOL = 60  # distinct cover files; creator c uses covers c, c+1, c+2 (mod POOL)


def make_covers(folder: Path) -> list[Path]:
    paths = []
    for i in range(POOL):
        path = folder / f"cover_{i:02d}.jpg"
        colour = ((i * 37) % 256, (i * 91) % 256, (i * 53) % 256)
        Image.new("RGB", (180, 320), colour).save(path, "JPEG", quality=85)
        paths.append(path)
    return paths


def write_csv(path: Path, covers: list[Path], creators: int) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["creator", "cover_url"])
        for c in range(creators):
            for j in range(COVERS_PER_CREATOR):
                writer.writerow([f"creator {c:05d}", str(covers[(c + j) % POOL])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--large", type=int, default=LARGE)
    args = parser.parse_args(argv)
    print(
        f"scale: {SMALL} vs {args.large} creators x {COVERS_PER_CREATOR} covers "
        "(180x320 local JPEGs), default settings"
    )
    runs: list[tuple[int, Run]] = []
    with tempfile.TemporaryDirectory(prefix="imgpipe-scale-") as tmp:
        work = Path(tmp)
        covers = make_covers(work)
        for creators in (SMALL, args.large):
            manifest = work / f"covers-{creators}.csv"
            write_csv(manifest, covers, creators)
            run = run_cli(f"{creators} creators", manifest, work / f"out-{creators}", "--quiet")
            runs.append((creators, run))
            gallery = (work / f"out-{creators}" / "index.html").read_text()
            missing = sum(f"creator {c:05d}" not in gallery for c in range(creators))
            if missing:
                print(f"FAIL: the gallery of {creators} creators misses {missing} of them")
                return 1

    print(f"{'run':<18} {'wall s':>7} {'creators/s':>11} {'peak RSS':>9}")
    for creators, run in runs:
        print(
            f"{run.name:<18} {run.wall:>7.2f} {creators / run.wall:>11.1f} "
            f"{run.peak_rss_mb:>7.0f}MB"
        )
    (small_n, small), (large_n, large) = runs
    print(
        f"input x{large_n / small_n:.0f}: peak RSS x{large.peak_rss_mb / small.peak_rss_mb:.2f}, "
        f"time per creator x{(large.wall / large_n) / (small.wall / small_n):.2f}"
    )
    expected = [n * COVERS_PER_CREATOR for n, _ in runs]
    if [run.images for _, run in runs] != expected:
        print(f"FAIL: covers used {[run.images for _, run in runs]}, expected {expected}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
