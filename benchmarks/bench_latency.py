"""Over a 50 ms-latency loopback, default settings: 350 covers against the network floor.

10 creators x 35 covers (the distinct 1080x1920 files of ``bench_overhead``)
served by ``benchmarks.latency_server`` (its own process) on 127.0.0.1 with
50 ms added to every response. Per round, in turn, each a whole child process
started through ``benchmarks.rusage_launcher``:

- ``imgpipe run, http``: ``imgpipe run --allow-private-networks 127.0.0.0/8``
  with default settings (8 downloads in flight);
- ``imgpipe run, local``: the same covers as local files (no network at all);
- ``original design``: a thread pool of 8 per creator, creators in sequence,
  ``requests`` + Pillow with the original render (``bench_render.reference_render``)
  and the collage written to a file;
- ``bare download`` and ``bare + decode``: no imgpipe at all, one
  ``httpx.AsyncClient`` fetching the 350 URLs 8 at a time, the second also
  draft-decoding each cover to a centre-cropped cell on a thread per core. What
  httpx and this machine allow before any engine, state, collage or start-up of
  ours: how close to the floor an httpx client can come here.

The network floor is computed, not measured: 350 x 50 ms / 8 in flight = 2.19 s.
The claim to check: http run <= 1.25 x max(floor, local run), pair by pair
(median and range over ``--rounds``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from benchmarks.bench_e2e import LATENCY, Run, run_cli, start_server
from benchmarks.bench_overhead import FILES, cover_files, spread, write_csv

CREATORS = 10
COVERS_PER_CREATOR = 35
IN_FLIGHT = 8  # MAX_CONCURRENT_DOWNLOADS's default, and the original design's pool
TARGET = 1.25


def original_main(csv_path: Path, out: Path) -> int:
    """The original design, in its own process: per creator, 8 threads download, then render."""
    import csv

    import requests

    from benchmarks.bench_render import reference_render

    creators: dict[str, list[str]] = {}
    with csv_path.open(newline="") as stream:
        for row in csv.DictReader(stream):
            creators.setdefault(row["creator"], []).append(row["cover_url"])
    out.mkdir(parents=True, exist_ok=True)
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=IN_FLIGHT)
    session.mount("http://", adapter)

    def download(url: str) -> bytes:
        response = session.get(url, timeout=30)
        response.raise_for_status()
        return response.content

    for name, urls in creators.items():
        with ThreadPoolExecutor(IN_FLIGHT) as pool:
            covers = list(pool.map(download, urls))
        (out / f"{name}.jpg").write_bytes(reference_render(covers))
    return 0


def bare_main(urls_file: Path, decode: bool) -> int:
    """In its own process: fetch every URL with httpx, 8 in flight; maybe decode cells."""
    import asyncio
    import io

    # As imgpipe does (see imgpipe/__init__.py): httpx's command-line client is not
    # imported, so this client does not pay ~90 ms for a tool it never runs.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import httpx
    from PIL import Image

    from benchmarks.bench_render import CELL

    def cell(data: bytes) -> int:
        with Image.open(io.BytesIO(data)) as image:
            image.draft("RGB", (CELL, CELL))
            image.load()
            width, height = image.size
            side = min(width, height)
            left, top = (width - side) // 2, (height - side) // 2
            box = (left, top, left + side, top + side)
            return image.resize((CELL, CELL), Image.Resampling.BILINEAR, box=box).width

    async def fetch_all(urls: list[str]) -> list[int]:
        slots = asyncio.Semaphore(IN_FLIGHT)
        loop = asyncio.get_running_loop()
        limits = httpx.Limits(max_connections=IN_FLIGHT)
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            async with httpx.AsyncClient(limits=limits) as client:

                async def one(url: str) -> int:
                    async with slots:
                        response = await client.get(url)
                    response.raise_for_status()
                    if not decode:
                        return len(response.content)
                    return await loop.run_in_executor(pool, cell, response.content)

                return await asyncio.gather(*(one(url) for url in urls))

    urls = urls_file.read_text().split()
    done = asyncio.run(fetch_all(urls))
    return 0 if len(done) == len(urls) and all(done) else 1


def run_bare(urls_file: Path, decode: bool, images: int) -> Run:
    name = "bare + decode" if decode else "bare download"
    flags = ["--bare", "decode" if decode else "download", str(urls_file)]
    return run_child(name, flags, images)


def run_original(csv_path: Path, out: Path, images: int) -> Run:
    return run_child("original design", ["--original", str(csv_path), str(out)], images)


def run_child(name: str, flags: list[str], images: int) -> Run:
    import json

    command = [sys.executable, "-m", "benchmarks.bench_latency", *flags]
    with tempfile.NamedTemporaryFile(suffix=".json") as usage_file:
        launcher = [sys.executable, "-m", "benchmarks.rusage_launcher", usage_file.name, "--"]
        started = time.perf_counter()
        subprocess.run([*launcher, *command], check=True)
        wall = time.perf_counter() - started
        usage = json.loads(Path(usage_file.name).read_text())
    cpu = usage["user_s"] + usage["sys_s"]
    return Run(name, wall, cpu, usage["maxrss_kb"] / 1024, images)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-original", action="store_true", help="skip the original design")
    parser.add_argument("--original", nargs=2, type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bare", nargs=2, metavar=("MODE", "URLS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.original:
        return original_main(*args.original)
    if args.bare:
        return bare_main(Path(args.bare[1]), decode=args.bare[0] == "decode")

    table = cover_files(CREATORS)
    images = CREATORS * COVERS_PER_CREATOR
    floor = images * LATENCY / IN_FLIGHT
    print(
        f"latency: {CREATORS} creators x {COVERS_PER_CREATOR} covers = {images} 1080x1920 JPEGs "
        f"over 127.0.0.1 with {LATENCY * 1000:.0f} ms per response, default settings, "
        f"{os.cpu_count()} cores; network floor {images} x {LATENCY * 1000:.0f} ms / "
        f"{IN_FLIGHT} = {floor:.2f} s; {args.rounds} rounds"
    )
    kinds = ["http", "local", "bare", "bare+decode"] + ([] if args.no_original else ["original"])
    results: dict[str, list[Run]] = {kind: [] for kind in kinds}
    server, port = start_server(FILES)
    try:
        with tempfile.TemporaryDirectory(prefix="imgpipe-latency-") as tmp:
            work = Path(tmp)
            local_csv, http_csv = work / "local.csv", work / "http.csv"
            write_csv(local_csv, [[str(p) for p in paths] for paths in table])
            base = f"http://127.0.0.1:{port}"
            urls = [[f"{base}/c{c}/{p.name}" for p in ps] for c, ps in enumerate(table)]
            write_csv(http_csv, urls)
            urls_file = work / "urls.txt"
            urls_file.write_text("\n".join(url for row in urls for url in row))
            allow = ("--allow-private-networks", "127.0.0.0/8")
            run_cli("warm-up", http_csv, work / "out-warm-up", *allow)
            for round_ in range(args.rounds):
                for kind in kinds[round_ % len(kinds) :] + kinds[: round_ % len(kinds)]:
                    out = work / f"out-{kind}-{round_}"
                    if kind == "http":
                        run = run_cli("imgpipe run, http", http_csv, out, *allow)
                    elif kind == "local":
                        run = run_cli("imgpipe run, local", local_csv, out)
                    elif kind.startswith("bare"):
                        run = run_bare(urls_file, kind == "bare+decode", images)
                    else:
                        run = run_original(http_csv, out, images)
                    results[kind].append(run)
    finally:
        server.terminate()
        server.wait()

    print(f"{'process':<20} {'wall s median [min-max]':<26} {'cpu s':>6} {'peak RSS':>9}")
    for kind in kinds:
        group = results[kind]
        print(
            f"{group[0].name:<20} {spread([r.wall for r in group]):<26} "
            f"{statistics.median(r.cpu for r in group):>6.2f} "
            f"{max(r.peak_rss_mb for r in group):>7.0f}MB"
        )
    http, local = results["http"], results["local"]
    bound = [h.wall / max(floor, loc.wall) for h, loc in zip(http, local, strict=True)]
    verdict = "OK" if statistics.median(bound) <= TARGET else "MISSED"
    print(f"http / network floor: x{spread([h.wall / floor for h in http])}")
    over_local = [h.wall / loc.wall for h, loc in zip(http, local, strict=True)]
    print(f"http / local run, paired: x{spread(over_local)}")
    print(f"http / max(floor, local), paired: x{spread(bound)} (target <= {TARGET}) {verdict}")
    # How close an httpx client can come to the floor at all, with no imgpipe in it:
    # the target is out of reach when these alone are near or over it.
    for kind in ("bare", "bare+decode"):
        bare = results[kind]
        print(
            f"{bare[0].name} / network floor: x{spread([b.wall / floor for b in bare])}; "
            f"http run / {bare[0].name}, paired: "
            f"x{spread([h.wall / b.wall for h, b in zip(http, bare, strict=True)])}"
        )
    if "original" in results:
        ratios = [o.wall / h.wall for o, h in zip(results["original"], http, strict=True)]
        print(f"original design / http run, paired: x{spread(ratios)}")
    short = [run.images for run in http + local if run.images != images]
    if short:
        print(f"FAIL: runs used {short} covers, expected {images}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
