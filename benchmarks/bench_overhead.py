"""Whole-process overhead: ``imgpipe run`` of 700 local covers against the decode floor.

20 creators x 35 covers, each cover its own 1080x1920 photo-like JPEG file (the
35 covers of ``bench_render``, each shifted by a different offset per creator and
re-encoded at q85: distinct files with realistic entropy, cached under
``.bench/covers-700``). Two whole processes per round, alternating, each started
through ``benchmarks.rusage_launcher`` (its own CPU and peak RSS):

- ``floor``: ``python -m benchmarks.bench_overhead --floor LIST``, a process pool
  of one process per core that opens each file with Pillow, calls
  ``draft("RGB", (200, 200))`` and ``load()``, nothing else (interpreter start-up
  and the pool's included, as the run's are);
- ``imgpipe run``: ``python -m imgpipe run covers.csv --out <fresh> --json``
  with default settings.

- ``bare render, threads`` and ``bare render, processes``: the work a run does
  per cover and per creator (read, hash, draft decode to a centre-cropped cell,
  near-duplicate look; collage and preview) and nothing else, one creator at a
  time on a pool of one thread (as imgpipe runs it) or one forked process per
  core. No CLI, settings, state or engine: how close to the floor the render
  itself can come on this machine.

The ratio is taken pair by pair (median and range over ``--rounds``); the claim
to check is run / floor <= 1.4 (it was 2.1 before the batch-engine rewrite:
4.7 s against 2.2 s). Also printed: the render alone, in process, single thread
(``load_cell`` x35 + ``render_collage`` against the draft decode of the same 35
covers, as ``bench_render`` measures it).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing import Pool
from pathlib import Path

from PIL import Image, ImageChops

from benchmarks.bench_e2e import Run, run_cli
from benchmarks.bench_render import CACHE, CELL, decode_floor, imgpipe_render, load_covers

CREATORS = 20
COVERS_PER_CREATOR = 35
TARGET = 1.4
FILES_VERSION = 1  # bump when shifted_cover() changes, to invalidate the cache
FILES = CACHE.parent / "covers-700"


def shifted_cover(base: bytes, creator: int) -> bytes:
    """The base cover rolled by a creator-specific offset, re-encoded at q85."""
    with Image.open(io.BytesIO(base)) as image:
        rolled = ImageChops.offset(image.convert("RGB"), 97 * creator, 389 * creator)
    buffer = io.BytesIO()
    rolled.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def cover_files(creators: int) -> list[list[Path]]:
    """``creators`` lists of 35 distinct cover files, generated on first use."""
    bases = load_covers(COVERS_PER_CREATOR)
    FILES.mkdir(parents=True, exist_ok=True)
    table = []
    for c in range(creators):
        paths = []
        for j, base in enumerate(bases):
            path = FILES / f"cover_v{FILES_VERSION}_c{c:02d}_{j:02d}.jpg"
            if not path.exists():
                data = base if c == 0 else shifted_cover(base, c)
                path.write_bytes(data)
            paths.append(path)
        table.append(paths)
    return table


def write_csv(path: Path, table: Sequence[Sequence[str]]) -> None:
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["creator", "cover_url"])
        for c, urls in enumerate(table):
            writer.writerows([f"creator {c:02d}", url] for url in urls)


# -- the floor (its own process) ----------------------------------------------------


def _draft_decode(path: str) -> None:
    with Image.open(path) as image:
        image.draft("RGB", (CELL, CELL))
        image.load()


def floor_main(list_file: Path) -> int:
    paths = list_file.read_text().split("\n")
    with Pool(os.cpu_count() or 1) as pool:
        for _ in pool.imap_unordered(_draft_decode, paths, chunksize=4):
            pass
    return 0


# -- the bare render (its own process): imgpipe's per-cover and per-creator work, no engine


def _bare_creator(paths: Sequence[str]) -> int:
    """What a run does for one creator's covers, minus everything else: read, hash,
    draft-decode to a centre-cropped cell, near-duplicate look; collage and preview."""
    from imgpipe.domain.fingerprints import content_hash
    from imgpipe.domain.layout import plan_grid
    from imgpipe.imaging.collage import render_collage
    from imgpipe.imaging.decode import load_tile
    from imgpipe.imaging.perceptual import look_of
    from imgpipe.imaging.preview import render_preview

    tiles = []
    for path in paths:
        data = Path(path).read_bytes()
        content_hash(data)
        tile = load_tile(data, CELL, max_pixels=100_000_000, min_size=1, crop="center")
        look_of(tile)
        tiles.append(tile)
    grid = plan_grid(len(tiles), rows=5, cols=7, cell_size=CELL)
    collage = render_collage(tiles, grid, quality=95)
    return len(render_preview(collage))


def bare_main(list_file: Path, kind: str) -> int:
    from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
    from multiprocessing import get_context

    paths = list_file.read_text().split("\n")
    creators = [paths[i : i + COVERS_PER_CREATOR] for i in range(0, len(paths), COVERS_PER_CREATOR)]
    workers = os.cpu_count() or 1
    pool: Executor = (
        ThreadPoolExecutor(workers)
        if kind == "threads"
        else ProcessPoolExecutor(workers, mp_context=get_context("fork"))
    )
    with pool:
        for _ in pool.map(_bare_creator, creators):
            pass
    return 0


def run_child(name: str, list_file: Path, *flags: str) -> Run:
    command = [sys.executable, "-m", "benchmarks.bench_overhead", *flags, str(list_file)]
    with tempfile.NamedTemporaryFile(suffix=".json") as usage_file:
        launcher = [sys.executable, "-m", "benchmarks.rusage_launcher", usage_file.name, "--"]
        started = time.perf_counter()
        subprocess.run([*launcher, *command], check=True)
        wall = time.perf_counter() - started
        usage = json.loads(Path(usage_file.name).read_text())
    paths = len(list_file.read_text().split("\n"))
    cpu = usage["user_s"] + usage["sys_s"]  # the pool's workers are waited for by the child
    return Run(name, wall, cpu, usage["maxrss_kb"] / 1024, paths)


def run_floor(list_file: Path) -> Run:
    return run_child("floor", list_file, "--floor")


# -- report -------------------------------------------------------------------------


def spread(values: Sequence[float], unit: str = "") -> str:
    return f"{statistics.median(values):.2f}{unit} [{min(values):.2f}-{max(values):.2f}]"


def render_alone(rounds: int) -> list[float]:
    """Paired in-process ratios: imgpipe's render of 35 covers / their draft decode."""
    covers = load_covers(COVERS_PER_CREATOR)
    imgpipe_render(covers)  # warm-up
    ratios = []
    for _ in range(rounds):
        started = time.perf_counter()
        decode_floor(covers)
        floor = time.perf_counter() - started
        started = time.perf_counter()
        imgpipe_render(covers)
        ratios.append((time.perf_counter() - started) / floor)
    return ratios


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--creators", type=int, default=CREATORS)
    parser.add_argument("--floor", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs=2, metavar=("KIND", "LIST"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor:
        return floor_main(args.floor)
    if args.bare:
        return bare_main(Path(args.bare[1]), args.bare[0])

    table = cover_files(args.creators)
    expected = args.creators * COVERS_PER_CREATOR
    print(
        f"overhead: {args.creators} creators x {COVERS_PER_CREATOR} local covers = {expected} "
        f"1080x1920 JPEGs, {os.cpu_count()} cores; whole processes, {args.rounds} rounds"
    )
    runs: list[Run] = []
    floors: list[Run] = []
    bare: dict[str, list[Run]] = {"threads": [], "processes": []}
    with tempfile.TemporaryDirectory(prefix="imgpipe-overhead-") as tmp:
        work = Path(tmp)
        csv_path = work / "covers.csv"
        write_csv(csv_path, [[str(p) for p in paths] for paths in table])
        list_file = work / "covers.txt"
        list_file.write_text("\n".join(str(p) for paths in table for p in paths))
        run_floor(list_file)  # warm-up: page cache, .pyc files
        for round_ in range(args.rounds):
            floors.append(run_floor(list_file))
            runs.append(run_cli("imgpipe run", csv_path, work / f"out-{round_}"))
            for kind, group in bare.items():
                group.append(run_child(f"bare, {kind}", list_file, "--bare", kind))

    ratios = [run.wall / floor.wall for run, floor in zip(runs, floors, strict=True)]
    print(f"{'process':<12} {'wall s median [min-max]':<26} {'cpu s':>6} {'peak RSS':>9}")
    for name, group in (("floor", floors), ("imgpipe run", runs)):
        print(
            f"{name:<12} {spread([r.wall for r in group]):<26} "
            f"{statistics.median(r.cpu for r in group):>6.2f} "
            f"{max(r.peak_rss_mb for r in group):>7.0f}MB"
        )
    verdict = "OK" if statistics.median(ratios) <= TARGET else "MISSED"
    print(f"run / floor, paired: x{spread(ratios)} (target <= {TARGET}) {verdict}")
    # The same work with no engine, CLI, settings or state: what the render itself
    # costs on this machine, with threads (as imgpipe runs it) and with processes.
    for kind, group in bare.items():
        paired = [b.wall / f.wall for b, f in zip(group, floors, strict=True)]
        cpu = statistics.median(b.cpu for b in group)
        print(
            f"bare render, {kind} (no engine, no CLI) / floor, paired: x{spread(paired)} "
            f"({spread([b.wall for b in group], ' s')}, {cpu:.2f} cpu s)"
        )
    alone = render_alone(max(5, args.rounds))
    print(f"render alone (in process, 1 thread, 35 covers) / draft decode: x{spread(alone)}")
    short = [run.images for run in runs if run.images != expected]
    if short:
        print(f"FAIL: runs used {short} covers, expected {expected}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
