"""The million-row CSV planned on AWS (moto server): time, peak RSS, message sizes.

The export of ``bench_million`` (28,572 creators x 35 shuffled rows, 250-character
URLs) is uploaded to the input bucket of a moto server (server mode on
127.0.0.1, in this process, as ``tests/support/aws.py`` starts it) whose
resources come from :func:`~imgpipe.adapters.aws_resources.ensure_resources`.
The planner, :meth:`FanOut.plan` from :func:`imgpipe.bootstrap.make_fanout`
(what the planner Lambda runs for a ``csv_s3`` message), then runs in a child
process started through ``benchmarks.rusage_launcher`` (its own peak RSS). Its
work queue is wrapped to record every message body it sends.

Printed: the child's wall time and the time of ``plan`` alone, its own CPU time
and peak RSS (a Lambda has at most 3,008 MB here), the CPU time of this process
(moto's server, and the consumer below), the number of messages and the largest
body (SQS refuses bodies over 256 KB). moto answers slowly (every DynamoDB item
and SQS batch is a request to this process), so the times are an upper bound.
``--creators N`` (or ``IMGPIPE_BENCH_MILLION_CREATORS``) for a smaller file;
several ``--creators`` values give the scaling.

Why a consumer empties the work queue while the planner sends (``--keep-queued``
turns it off): moto's ``SQSBackend.send_message`` (moto/sqs/models.py) reads
``queue.attributes`` for every message it stores, and ``Queue.attributes`` computes
ApproximateNumberOfMessages, ...Delayed and ...NotVisible by walking every message
on the queue (``Queue.messages``, ``Message.visible``/``delayed``, each calling
``unix_time_millis``). A send costs O(queue depth) there, so planning N creators
onto an undrained queue costs O(N^2) in moto (py-spy: 90 % of all samples at 3,000
creators; 1,000 -> 3,000 creators took 44 -> 242 s) while the planner's own CPU
time grows linearly. Real SQS's SendMessageBatch does not depend on the depth, and
a real queue is drained by the worker functions as the planner fills it: the
:class:`Consumer` here empties moto's queue every 0.2 s, so what remains is linear.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from benchmarks.bench_million import COVERS_PER_CREATOR, write_csv

MOTO_CREATORS = 28572  # x 35 = 1,000,020 rows: the CSV

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


class Consumer(threading.Thread):
    """Empties the work queue while the planner fills it, as the worker functions would,
    so moto's queue (and its O(depth) sends) stays short.

    It purges (moto's limit of one purge a minute is switched off by moto's own
    ``MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR``) rather than receives: moto's
    ReceiveMessage costs O(depth) per message received (``SQSBackend.receive_message``
    walks ``Queue.messages`` and, for each one,
    ``is_message_valid_based_on_retention_period`` computes ``Queue.attributes`` up to
    three times), so a receiving consumer falls behind the planner and the depth, and
    with it the cost of every send, grows anyway (1,000 -> 3,000 creators: 48 -> 445 s
    of moto CPU). A purge empties moto's list at once. Every message is accounted for
    all the same: SQS accepted each one (``SqsWorkQueue.send`` raises on a refused
    entry), and each creator's pending record, which keeps its message, is counted.
    ``deepest``: the most messages on the queue at one purge.
    """

    def __init__(self, sqs: object, url: str, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.sqs, self.url, self.interval = sqs, url, interval
        self.deepest = 0  # the most messages on the queue at one purge
        self.failure: BaseException | None = None
        self._done = threading.Event()

    def finish(self) -> None:
        """One last purge after the planner has finished, then stop."""
        self._done.set()
        self.join()
        if self.failure is not None:
            raise self.failure

    def run(self) -> None:
        try:
            while True:
                last = self._done.wait(self.interval)
                depth = int(
                    self.sqs.get_queue_attributes(  # type: ignore[attr-defined]
                        QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
                    )["Attributes"]["ApproximateNumberOfMessages"]
                )
                if depth:
                    self.sqs.purge_queue(QueueUrl=self.url)  # type: ignore[attr-defined]
                self.deepest = max(self.deepest, depth)
                if last:
                    return
        except BaseException as exc:  # reported by finish()
            self.failure = exc


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


def run_child(env: dict[str, str]) -> tuple[dict[str, object], dict[str, float], float]:
    """The child's report, its rusage (peak RSS in KB, CPU seconds) and its wall time."""
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
    return report, usage, wall


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def plan_on_moto(csv_path: Path, *, drain: bool) -> dict[str, object]:
    from moto.server import ThreadedMotoServer

    from imgpipe.adapters.aws_clients import make_client
    from imgpipe.adapters.aws_resources import ensure_resources
    from imgpipe.settings import Settings

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    # moto's state lives in this process, not in the server: without a reset, a second
    # --creators value would find the first one's table items (and queue) still there.
    reset = urllib.request.Request(f"http://{host}:{port}/moto-api/reset", method="POST")
    urllib.request.urlopen(reset, timeout=30).close()
    saved = dict(os.environ)
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1",
        IMGPIPE_AWS_ENDPOINT_URL=f"http://{host}:{port}", IMGPIPE_BACKEND="aws",
        IMGPIPE_CROP="center",  # issue 9's targets are measured with the centre crop
        # moto's own switch: the Consumer purges more often than SQS's once a minute
        MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR="false",
    )  # fmt: skip
    try:
        names = ensure_resources(Settings(), prefix="bench")
        os.environ.update(names)
        settings = Settings()
        s3 = make_client("s3", settings)
        s3.upload_file(str(csv_path), names["IMGPIPE_INPUT_BUCKET"], CSV_KEY)
        sqs = make_client("sqs", settings)
        consumer = Consumer(sqs, names["IMGPIPE_SQS_QUEUE_URL"]) if drain else None
        cpu_before = own_cpu()
        if consumer is not None:
            consumer.start()
        report, usage, wall = run_child(dict(os.environ))
        if consumer is not None:
            consumer.finish()
        server_cpu = own_cpu() - cpu_before
        attributes = sqs.get_queue_attributes(
            QueueUrl=names["IMGPIPE_SQS_QUEUE_URL"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        table = make_client("dynamodb", settings).describe_table(
            TableName=names["IMGPIPE_DYNAMODB_TABLE_NAME"]
        )["Table"]
        return {
            **report,
            "wall": wall,
            "rss_mb": usage["maxrss_kb"] / 1024,
            "child_cpu": usage["user_s"] + usage["sys_s"],
            "server_cpu": server_cpu,
            "queued": int(attributes["ApproximateNumberOfMessages"]),
            "items": int(table.get("ItemCount", -1)),
            "deepest": consumer.deepest if consumer is not None else None,
        }
    finally:
        with contextlib.suppress(Exception):
            server.stop()
        os.environ.clear()
        os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    default = int(os.environ.get("IMGPIPE_BENCH_MILLION_CREATORS", MOTO_CREATORS))
    parser.add_argument("--creators", type=int, nargs="+", default=[default])
    parser.add_argument(
        "--keep-queued",
        action="store_true",
        help="no consumer: every message stays on moto's queue (its sends then cost O(depth))",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_plan()))
        return 0

    drain = not args.keep_queued
    status = 0
    print(
        f"million on AWS (moto server, {os.cpu_count()} cores): FanOut.plan of a CSV in S3, "
        f"in a child process; work queue {'drained by a consumer' if drain else 'kept full'}"
    )
    print(
        f"{'rows':>10} {'MB':>5} {'child s':>8} {'plan s':>7} {'child CPU':>9} "
        f"{'moto CPU':>9} {'peak RSS':>9} {'messages':>9} {'largest body':>13} "
        f"{'queued':>7} {'items':>7} {'deepest':>8}"
    )
    for creators in args.creators:
        with tempfile.TemporaryDirectory(prefix="imgpipe-million-aws-") as tmp:
            csv_path = Path(tmp) / "export.csv"
            rows = write_csv(csv_path, creators)
            size_mb = csv_path.stat().st_size / 1e6
            report = plan_on_moto(csv_path, drain=drain)
        largest = int(report["largest_body"])  # type: ignore[call-overload]
        rss = float(report["rss_mb"])  # type: ignore[arg-type]
        print(
            f"{rows:>10,} {size_mb:>5.0f} {report['wall']:>8.1f} {report['plan_s']:>7.1f} "
            f"{report['child_cpu']:>8.1f}s {report['server_cpu']:>8.1f}s {rss:>7.0f}MB "
            f"{report['messages_sent']:>9,} {largest:>11,} B {report['queued']:>7,} "
            f"{report['items']:>7,} {report['deepest'] if drain else '-':>8}",
            flush=True,
        )
        if report["error"] or report["messages_sent"] != creators:
            print(f"FAIL: {report}")
            status = 1
        if int(report["items"]) != creators + 1:  # type: ignore[call-overload]
            print(f"FAIL: {report['items']} items in the table, not {creators} creators + batch")
            status = 1
        if rss > LAMBDA_MB or largest > SQS_BODY_LIMIT:
            print(f"FAIL: peak {rss:.0f} MB (limit {LAMBDA_MB}), largest body {largest} B")
            status = 1
    print(f"({COVERS_PER_CREATOR} covers per creator; Lambda limit {LAMBDA_MB} MB, SQS 256 KB)")
    return status


if __name__ == "__main__":
    sys.exit(main())
