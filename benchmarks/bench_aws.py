"""AWS path benchmark: handler import cost, and the fan-out on a local AWS-compatible server.

1. Import time of ``imgpipe.entrypoints.aws_lambda`` in a fresh interpreter (what a
   cold start pays before the first event), side by side with a bare interpreter
   and with ``import boto3`` (which the handler defers to first use). Median of 7.
2. End to end: 20 creators x 35 covers (1080x1920 JPEG from ``bench_render``)
   uploaded as a CSV to moto's S3 (server mode on 127.0.0.1); the S3 -> SQS
   notification, the fan-out and two ``imgpipe worker`` loops (the Lambda code)
   render every creator; compared with ``imgpipe run`` of the same covers on the
   local backend. Covers are served by ``latency_server`` with no added latency.
   moto runs in a thread of this process, so it competes with the workers for
   the GIL and the 2 cores: the ratio is an upper bound on the AWS path's cost.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.bench_e2e import start_server
from benchmarks.bench_render import CACHE, load_covers

CREATORS = 20
COVERS = 35


def import_ms(statement: str, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def write_csv(rows: list[tuple[str, str]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["creator", "url"])
    writer.writerows(rows)
    return text.getvalue().encode()


def aws_run(rows: list[tuple[str, str]]) -> tuple[float, dict[str, object]]:
    from moto.server import ThreadedMotoServer

    from imgpipe.adapters.aws_resources import ensure_resources
    from imgpipe.adapters.s3_store import S3ObjectStore
    from imgpipe.adapters.sqs_queue import SqsWorkQueue
    from imgpipe.entrypoints import aws_lambda, lambda_runtime
    from imgpipe.entrypoints.worker import QueueWorker
    from imgpipe.settings import Settings

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # The settings are read from the environment; restore it afterwards so the
    # benchmarks that follow in this process (and their children) run locally.
    saved = dict(os.environ)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
        IMGPIPE_AWS_ENDPOINT_URL=f"http://{host}:{port}", IMGPIPE_BACKEND="aws",
        IMGPIPE_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8", IMGPIPE_MAX_CONCURRENT_DOWNLOADS="35",
        IMGPIPE_CROP="center",  # issue 9's targets are measured with the centre crop
    )  # fmt: skip
    try:
        names = ensure_resources(Settings(), prefix="bench")
        os.environ.update(names)
        lambda_runtime.runtime.cache_clear()
        settings = Settings()
        queue = SqsWorkQueue(names["IMGPIPE_SQS_QUEUE_URL"], settings=settings)
        for message in queue.receive(wait_seconds=0):
            queue.delete(message)  # the notification's s3:TestEvent
        started = time.perf_counter()
        S3ObjectStore(names["IMGPIPE_INPUT_BUCKET"], settings=settings).put(
            "csv-files/bench.csv", write_csv(rows)
        )
        workers = [
            QueueWorker(queue, aws_lambda.handle_record_body, concurrency=1, wait_seconds=1)
            for _ in range(2)
        ]
        threads = [threading.Thread(target=w.run, kwargs={"exit_when_idle": 1.5}) for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        output = S3ObjectStore(names["IMGPIPE_OUTPUT_BUCKET"], settings=settings)
        (key,) = list(output.list("results/processing-summaries/"))
        summary = json.loads(output.get(key))
        # the workers wait 1.5 s of idleness before stopping; that is not work
        return time.perf_counter() - started - 1.5, summary
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


def local_run(rows: list[tuple[str, str]]) -> tuple[float, dict[str, object]]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.csv"
        path.write_bytes(write_csv(rows))
        command = [
            sys.executable, "-m", "imgpipe", "run", str(path), "--out", str(Path(tmp) / "out"),
            "--json", "--concurrency", "35", "--allow-private-networks", "127.0.0.0/8",
            "--crop", "center",
        ]  # fmt: skip
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, check=True)
        return time.perf_counter() - started, json.loads(result.stdout)


def main(argv: list[str] | None = None) -> int:
    bare = import_ms("pass")
    handler = import_ms("import imgpipe.entrypoints.aws_lambda")
    boto = import_ms("import boto3")
    print("AWS path: handler import (fresh interpreter, median of 7)")
    print(f"  python -c pass                          {bare:7.1f} ms")
    print(
        f"  import imgpipe.entrypoints.aws_lambda   {handler:7.1f} ms  (+{handler - bare:.1f} ms)"
    )
    print(f"  import boto3 (deferred by the handler)  {boto:7.1f} ms  (+{boto - bare:.1f} ms)")

    load_covers(COVERS)
    names = sorted(p.name for p in CACHE.glob("cover_v*_*.jpg"))[:COVERS]
    server, port = start_server_no_latency()
    try:
        rows = [
            (f"creator {c:02d}", f"http://127.0.0.1:{port}/c{c}/{name}")
            for c in range(CREATORS)
            for name in names
        ]
        local_s, local_summary = local_run(rows)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
        with contextlib.redirect_stdout(io.StringIO()):  # the workers' EMF documents
            aws_s, aws_summary = aws_run(rows)
    finally:
        server.terminate()
        server.wait()
    images = CREATORS * COVERS
    print(f"\nend to end: {CREATORS} creators x {COVERS} covers, {os.cpu_count()} cores")
    print(
        f"  local backend (imgpipe run)        {local_s:6.2f} s  {images / local_s:6.1f} images/s"
    )
    print(f"  moto S3+SQS+DynamoDB, 2 workers    {aws_s:6.2f} s  {images / aws_s:6.1f} images/s"
          f"  ({aws_s / local_s:.2f}x the local time)")  # fmt: skip
    ok = all(
        s["totals"]["completed"] == CREATORS  # type: ignore[index]
        for s in (local_summary, aws_summary)
    )
    if not ok:
        print("FAIL: not every creator completed")
    return 0 if ok else 1


def start_server_no_latency() -> tuple[subprocess.Popen[bytes], int]:
    import benchmarks.bench_e2e as e2e

    saved = e2e.LATENCY
    e2e.LATENCY = 0.0
    try:
        return start_server(CACHE)
    finally:
        e2e.LATENCY = saved


if __name__ == "__main__":
    sys.exit(main())
