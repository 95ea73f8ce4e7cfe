"""The million-row CSV planned on AWS (moto server): time, peak RSS, message sizes.

The export of ``bench_million`` (28,572 creators x 35 shuffled rows, 250-character
URLs) is uploaded to the input bucket of a moto server (server mode on
127.0.0.1, in this process, as ``tests/support/aws.py`` starts it) whose
resources come from :func:`~imgpipe.adapters.aws_resources.ensure_resources`.
The planner, :meth:`FanOut.plan` from :func:`imgpipe.bootstrap.make_fanout`
(what the planner Lambda runs for a ``csv_s3`` message), then runs in a child
process started through ``benchmarks.rusage_launcher`` (its own peak RSS). Its
work queue is wrapped to record every message body it sends.

Printed: the child's wall time and the time of ``plan`` alone, its peak RSS
(a Lambda has at most 3,008 MB here), the number of messages and the largest
body (SQS refuses bodies over 256 KB). moto answers slowly (every DynamoDB
item and SQS batch is a request to this process), so the times are an upper
bound. ``--creators N`` (or ``IMGPIPE_BENCH_MILLION_CREATORS``) for a smaller
file; several ``--creators`` values give the scaling.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from benchmarks.bench_million import COVERS_PER_CREATOR, write_csv

MOTO_CREATORS = 2858  # x 35 = 100,030 rows

CSV_KEY = "manual-uploads/million.csv"  # outside csv-files/: no S3 notification
LAMBDA_MB = 3008
SQS_BODY_LIMIT = 256 * 1024


class RecordingQueue:
    """A WorkQueue that counts what is sent through it and keeps the largest body size."""

    def __init__(self, inner: object) -> None:
        self.inner = inner
        self.messages = 0
        self.largest = 0
        self.sent_bytes = 0

    def send(self, bodies: Sequence[str]) -> None:
        sizes = [len(body.encode()) for body in bodies]
        self.messages += len(sizes)
        self.largest = max([self.largest, *sizes])
        self.sent_bytes += sum(sizes)
        self.inner.send(bodies)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def child_plan() -> dict[str, object]:
    """In the child: the planner as the Lambda builds it, on the settings of the environment."""
    started = time.perf_counter()
    from imgpipe.bootstrap import make_fanout, open_distributed
    from imgpipe.settings import Settings

    settings = Settings()
    ports = open_distributed(settings)
    recorder = RecordingQueue(ports.queue)
    ports.queue = recorder  # type: ignore[assignment]
    fanout = make_fanout(settings, ports)
    planning = time.perf_counter()
    outcome = fanout.plan(CSV_KEY)
    done = time.perf_counter()
    return {
        "seconds": done - started,
        "plan_s": done - planning,
        "creators": outcome.creators,
        "messages_sent": outcome.messages_sent,
        "error": outcome.error,
        "recorded_messages": recorder.messages,
        "largest_body": recorder.largest,
        "mean_body": recorder.sent_bytes / max(1, recorder.messages),
    }


def run_child(env: dict[str, str]) -> tuple[dict[str, object], float, float]:
    """The child's report, its peak RSS in MB and its wall time."""
    command = [sys.executable, "-m", "benchmarks.bench_million_aws", "--child"]
    with tempfile.NamedTemporaryFile(suffix=".json") as usage_file:
        launcher = [sys.executable, "-m", "benchmarks.rusage_launcher", usage_file.name, "--"]
        started = time.perf_counter()
        child = subprocess.run([*launcher, *command], capture_output=True, env=env)
        wall = time.perf_counter() - started
        usage = json.loads(Path(usage_file.name).read_text() or "{}")
    if child.returncode != 0:
        raise SystemExit(f"planner exited {child.returncode}\n{child.stderr.decode()[-3000:]}")
    report = json.loads(child.stdout.decode().strip().splitlines()[-1])
    return report, usage["maxrss_kb"] / 1024, wall


def plan_on_moto(csv_path: Path) -> tuple[dict[str, object], float, float, dict[str, int]]:
    from moto.server import ThreadedMotoServer

    from imgpipe.adapters.aws_clients import make_client
    from imgpipe.adapters.aws_resources import ensure_resources
    from imgpipe.settings import Settings

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    saved = dict(os.environ)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
        IMGPIPE_AWS_ENDPOINT_URL=f"http://{host}:{port}", IMGPIPE_BACKEND="aws",
        IMGPIPE_CROP="center",  # issue 9's targets are measured with the centre crop
    )  # fmt: skip
    try:
        names = ensure_resources(Settings(), prefix="bench")
        os.environ.update(names)
        settings = Settings()
        s3 = make_client("s3", settings)
        s3.upload_file(str(csv_path), names["IMGPIPE_INPUT_BUCKET"], CSV_KEY)
        report, rss, wall = run_child(dict(os.environ))
        sqs = make_client("sqs", settings)
        attributes = sqs.get_queue_attributes(
            QueueUrl=names["IMGPIPE_SQS_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        table = make_client("dynamodb", settings).describe_table(
            TableName=names["IMGPIPE_DYNAMODB_TABLE_NAME"]
        )["Table"]
        counts = {
            "queued": int(attributes["ApproximateNumberOfMessages"]),
            "items": int(table.get("ItemCount", -1)),
        }
        return report, rss, wall, counts
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        os.environ.clear()
        os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    # moto's server slows down faster than the input grows (a 300,000-row plan did not
    # finish in 23 minutes), so the default is 100,000 rows; --creators 28572 for 1M.
    default = int(os.environ.get("IMGPIPE_BENCH_MILLION_CREATORS", MOTO_CREATORS))
    parser.add_argument("--creators", type=int, nargs="+", default=[default])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_plan()))
        return 0

    status = 0
    print(
        f"million on AWS (moto server, {os.cpu_count()} cores): FanOut.plan of a CSV in S3, "
        "in a child process"
    )
    print(
        f"{'rows':>10} {'MB':>5} {'child s':>8} {'plan s':>7} {'peak RSS':>9} "
        f"{'messages':>9} {'largest body':>13} {'queued':>7}"
    )
    for creators in args.creators:
        with tempfile.TemporaryDirectory(prefix="imgpipe-million-aws-") as tmp:
            csv_path = Path(tmp) / "export.csv"
            rows = write_csv(csv_path, creators)
            size_mb = csv_path.stat().st_size / 1e6
            report, rss, wall, counts = plan_on_moto(csv_path)
        largest = int(report["largest_body"])  # type: ignore[call-overload]
        print(
            f"{rows:>10,} {size_mb:>5.0f} {wall:>8.1f} {report['plan_s']:>7.1f} "
            f"{rss:>7.0f}MB {report['messages_sent']:>9,} {largest:>11,} B "
            f"{counts['queued']:>7,}",
            flush=True,
        )
        if report["error"] or report["messages_sent"] != creators:
            print(f"FAIL: {report}")
            status = 1
        if rss > LAMBDA_MB or largest > SQS_BODY_LIMIT:
            print(f"FAIL: peak {rss:.0f} MB (limit {LAMBDA_MB}), largest body {largest} B")
            status = 1
    print(f"({COVERS_PER_CREATOR} covers per creator; Lambda limit {LAMBDA_MB} MB, SQS 256 KB)")
    return status


if __name__ == "__main__":
    sys.exit(main())
