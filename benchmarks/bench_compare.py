"""Compare endpoint benchmark: latency for two 12-megapixel JPEGs, and peak server memory.

``imgpipe serve`` runs as its own process (so its memory is measured alone) on
127.0.0.1. Side by side in one run:

1. Latency of ``POST /v1/compare`` with two 4000x3000 JPEGs (median of 9 after one
   warm-up), against the in-process baseline of merely decoding both files at
   full resolution, which a naive implementation pays before any comparison.
2. Peak RSS of the server while 20 compare requests run at once (3 rounds),
   sampled every 5 ms with psutil, against its idle RSS after warm-up and against
   the decoded size of 40 full-resolution images (what holding them would cost).
"""

from __future__ import annotations

import asyncio
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil
from PIL import Image

from benchmarks.bench_render import CACHE

SIZE = (4000, 3000)
CONCURRENT = 20
ROUNDS = 3
REPEATS = 9


def twelve_megapixel_pair() -> tuple[bytes, bytes]:
    """Two photo-like 12 MP JPEGs (cached), the second a re-encoded, slightly shifted copy."""
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = CACHE / "compare-a.jpg", CACHE / "compare-b.jpg"
    if not all(p.exists() for p in paths):
        from tests.support.photos import photo

        image = photo(42, SIZE)
        image.save(paths[0], "JPEG", quality=92)
        image.transform(SIZE, Image.Transform.AFFINE, (1, 0, 12, 0, 1, 8)).save(
            paths[1], "JPEG", quality=80
        )
    return paths[0].read_bytes(), paths[1].read_bytes()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    data_dir: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "IMGPIPE_BACKEND": "local", "IMGPIPE_API_KEY": "", **(env or {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "imgpipe", "serve", "--port", str(port), "--out", str(data_dir),
         "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return process, url
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("imgpipe serve did not start")


def files(a: bytes, b: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("files", ("a.jpg", a, "image/jpeg")), ("files", ("b.jpg", b, "image/jpeg"))]


def decode_full(a: bytes, b: bytes) -> None:
    for data in (a, b):
        with Image.open(io.BytesIO(data)) as image:
            image.convert("RGB").load()


class PeakRss:
    """Samples a process's RSS in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int) -> None:
        self.process = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def burst(url: str, a: bytes, b: bytes) -> list[float]:
    async with httpx.AsyncClient(timeout=300) as client:

        async def one() -> float:
            started = time.perf_counter()
            response = await client.post(url + "/v1/compare", files=files(a, b))
            response.raise_for_status()
            return time.perf_counter() - started

        return list(await asyncio.gather(*(one() for _ in range(CONCURRENT))))


def main(argv: list[str]) -> int:
    a, b = twelve_megapixel_pair()
    print(f"compare: two {SIZE[0]}x{SIZE[1]} JPEGs ({len(a) / 1e6:.1f} MB, {len(b) / 1e6:.1f} MB)")
    with tempfile.TemporaryDirectory() as tmp:
        process, url = start_server(Path(tmp))
        try:
            with httpx.Client(timeout=300) as client:
                warm = client.post(url + "/v1/compare", files=files(a, b)).json()["data"]
                api_ms, decode_ms = [], []
                for _ in range(REPEATS):  # interleaved, so noise hits both alike
                    started = time.perf_counter()
                    client.post(url + "/v1/compare", files=files(a, b)).raise_for_status()
                    api_ms.append((time.perf_counter() - started) * 1000)
                    started = time.perf_counter()
                    decode_full(a, b)
                    decode_ms.append((time.perf_counter() - started) * 1000)
            idle = psutil.Process(process.pid).memory_info().rss
            with PeakRss(process.pid) as peak:
                latencies = [t for _ in range(ROUNDS) for t in asyncio.run(burst(url, a, b))]
        finally:
            process.terminate()
            process.wait(timeout=30)
    api, base = statistics.median(api_ms), statistics.median(decode_ms)
    print(f"  similarity of the pair: {warm['similarity']} (similar={warm['similar']})")
    print(f"  POST /v1/compare       median {api:7.1f} ms   best {min(api_ms):7.1f} ms")
    print(f"  full decode of both    median {base:7.1f} ms   best {min(decode_ms):7.1f} ms")
    print(f"  ratio endpoint / full decode: {api / base:.2f}x")
    decoded = 2 * CONCURRENT * SIZE[0] * SIZE[1] * 3
    typical = statistics.median(latencies)
    print(f"  {CONCURRENT} concurrent x {ROUNDS} rounds: median {typical:.2f} s,"
          f" max {max(latencies):.2f} s per request")  # fmt: skip
    print(f"  server RSS idle {idle / 2**20:6.0f} MB   peak {peak.peak / 2**20:6.0f} MB"
          f"   (+{(peak.peak - idle) / 2**20:.0f} MB)")  # fmt: skip
    print(f"  peak vs holding {2 * CONCURRENT} decoded 12 MP images ({decoded / 2**20:.0f} MB):"
          f" {peak.peak / decoded:.2f}x")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
