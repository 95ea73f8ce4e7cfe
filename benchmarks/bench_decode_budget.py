"""Decode budget benchmark: peak server memory under concurrent compress and compare loads.

``imgpipe serve`` runs as its own process on 127.0.0.1 (so its memory is measured
alone), once with the decode budget off (``IMGPIPE_DECODE_BUDGET_PIXELS=0``) and
once with the default, and for each:

1. 20 concurrent ``POST /v1/compress`` of one 7999x7999 RGBA PNG (a few hundred KB
   of bytes, 256 MB decoded): target peak RSS <= 600 MB.
2. 50 concurrent ``POST /v1/compare`` of two 1600x1600 JPEGs: target <= 400 MB.

Peak RSS is sampled every 5 ms with psutil. Each load gets a fresh server, so one
load's high-water mark (the allocator keeps freed memory) does not hide the other's.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
from PIL import Image, ImageDraw

from benchmarks.bench_compare import PeakRss, start_server
from benchmarks.bench_render import CACHE

PNG_SIDE = 7999
COMPRESSES = 20
COMPARES = 50
JPEG_SIDE = 1600
TARGETS_MB = {"compress": 600, "compare": 400}


def big_png() -> bytes:
    """A 7999x7999 RGBA PNG that compresses to a few hundred KB (cached)."""
    path = CACHE / "budget-7999-rgba.png"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGBA", (PNG_SIDE, PNG_SIDE), (255, 255, 255, 0))
        draw = ImageDraw.Draw(image)
        for i in range(0, PNG_SIDE, 400):
            draw.rectangle((i, i, i + 300, i + 300), fill=(200, 40, 40, 255))
        image.save(path, "PNG", compress_level=9)
    return path.read_bytes()


def jpeg_pair() -> tuple[bytes, bytes]:
    from tests.support.photos import photo

    out = []
    for seed in (1, 2):
        buffer = io.BytesIO()
        photo(seed, (JPEG_SIDE, JPEG_SIDE)).save(buffer, "JPEG", quality=90)
        out.append(buffer.getvalue())
    return out[0], out[1]


async def compress_burst(url: str, png: bytes) -> list[int]:
    async with httpx.AsyncClient(timeout=600) as client:

        async def one() -> int:
            files = {"file": ("big.png", png, "image/png")}
            return (await client.post(url + "/v1/compress", files=files)).status_code

        return list(await asyncio.gather(*(one() for _ in range(COMPRESSES))))


async def compare_burst(url: str, a: bytes, b: bytes) -> list[int]:
    async with httpx.AsyncClient(timeout=600) as client:

        async def one() -> int:
            files = [("files", ("a.jpg", a, "image/jpeg")), ("files", ("b.jpg", b, "image/jpeg"))]
            return (await client.post(url + "/v1/compare", files=files)).status_code

        return list(await asyncio.gather(*(one() for _ in range(COMPARES))))


def measure(
    load: str, budget: str, png: bytes, pair: tuple[bytes, bytes]
) -> tuple[int, int, float]:
    """(idle RSS, peak RSS, seconds) of a fresh server running one load."""
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(Path(tmp), {"IMGPIPE_DECODE_BUDGET_PIXELS": budget})
        try:
            idle = psutil.Process(process.pid).memory_info().rss
            started = time.perf_counter()
            with PeakRss(process.pid) as peak:
                if load == "compress":
                    codes = asyncio.run(compress_burst(url, png))
                else:
                    codes = asyncio.run(compare_burst(url, *pair))
            elapsed = time.perf_counter() - started
        finally:
            process.terminate()
            process.wait(timeout=30)
    if set(codes) != {200}:
        raise RuntimeError(f"{load} with budget {budget}: statuses {sorted(set(codes))}")
    return idle, peak.peak, elapsed


def main(argv: list[str]) -> int:
    png, pair = big_png(), jpeg_pair()
    default = os.environ.get("IMGPIPE_DECODE_BUDGET_PIXELS", "64000000")
    print(f"decode budget: {COMPRESSES} compresses of a {PNG_SIDE}x{PNG_SIDE} RGBA PNG"
          f" ({len(png) / 1e3:.0f} KB), {COMPARES} compares of two {JPEG_SIDE}x{JPEG_SIDE}"
          f" JPEGs ({len(pair[0]) / 1e3:.0f} KB, {len(pair[1]) / 1e3:.0f} KB)")  # fmt: skip
    status = 0
    for load in ("compress", "compare"):
        for label, budget in (("budget off", "0"), (f"budget {int(default):,} px", default)):
            idle, peak, elapsed = measure(load, budget, png, pair)
            target = TARGETS_MB[load]
            verdict = "ok" if peak / 2**20 <= target else "OVER"
            if budget != "0" and verdict == "OVER":
                status = 1
            print(f"  {load:8} {label:24} idle {idle / 2**20:5.0f} MB   peak {peak / 2**20:5.0f} MB"
                  f"   (target <= {target} MB: {verdict})   {elapsed:5.1f} s")  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
