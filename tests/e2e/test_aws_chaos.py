"""The AWS engine under chaos, against moto's S3, SQS and DynamoDB over HTTP.

Contention answered on the wire as DynamoDB answers it, workers and planners killed
with SIGKILL in the middle of their work, duplicate and concurrent deliveries, a
sweep that finds what dead workers left behind. Whatever happens, the end state is
the same: every creator final and counted once, one collage per creator, one
summary, nothing in a dead-letter queue.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from imgpipe.adapters.sqs_queue import SqsWorkQueue
from imgpipe.domain.keys import creator_key
from imgpipe.domain.manifest import CreatorJob
from imgpipe.domain.records import CreatorRecord, CreatorStatus
from imgpipe.entrypoints import aws_lambda, lambda_runtime
from imgpipe.entrypoints.worker import WorkerStats
from imgpipe.errors import ClaimBusyError
from imgpipe.ports import QueueMessage
from imgpipe.service import closing
from imgpipe.service import fanout as fanout_module
from imgpipe.service.fanout import FanOut
from imgpipe.service.results import BatchContext
from tests.support.aws import AWS_ENV
from tests.support.aws_deploy import Deployment
from tests.support.aws_faults import DynamoContention
from tests.support.covers import BLUE, GREEN, RED, solid_jpeg
from tests.support.http_server import FaultServer, Sequence, Serve
from tests.unit.test_queue_engine import NOTHING_SWEPT

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def chaos(deployed: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Deployment:
    """The deployment with the cover cache in a temporary folder (no run sees another's)."""
    monkeypatch.setenv("IMGPIPE_DATA_DIR", str(tmp_path / "data"))
    return deployed


# -- helpers -------------------------------------------------------------------------


def runtime() -> FanOut:
    _, fanout = lambda_runtime.runtime()
    assert isinstance(fanout, FanOut)
    return fanout


def poll(condition: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def drain(queue: SqsWorkQueue) -> list[QueueMessage]:
    """Every visible message, received (and so hidden) until released or deleted."""
    out: list[QueueMessage] = []
    while batch := queue.receive(max_messages=10, wait_seconds=0):
        out.extend(batch)
    return out


def plan_upload(deployed: Deployment) -> dict[str, Any]:
    """Plan the CSV just uploaded from its S3 notification, as the planner function does."""
    (notification,) = deployed.queue.receive(wait_seconds=1)
    (planned,) = aws_lambda.handle_record_body(notification.body)["results"]
    deployed.queue.delete(notification)
    assert isinstance(planned, dict)
    return planned


def creator_messages(deployed: Deployment, count: int) -> dict[str, QueueMessage]:
    messages = drain(deployed.queue)
    assert len(messages) == count
    return {json.loads(m.body)["creator"]: m for m in messages}


def child_env(deployed: Deployment, tmp_path: Path, **extra: str) -> dict[str, str]:
    """What a worker process on another host would have: the deployment's settings."""
    return {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(SRC),
        **AWS_ENV,
        **deployed.names,
        "IMGPIPE_BACKEND": "aws",
        "IMGPIPE_AWS_ENDPOINT_URL": str(deployed.settings.aws_endpoint_url),
        "IMGPIPE_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8",
        "IMGPIPE_DATA_DIR": str(tmp_path / "child-data"),
        "DEFAULT_MAX_RETRIES": "0",
        **extra,
    }


def spawn(code: str, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[str]:
    """A child process; its stderr (logs, a traceback) goes to ``log``."""
    with log.open("w") as errors:
        return subprocess.Popen(
            [sys.executable, "-c", code, *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
        )


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL: no handler, no finally block, no graceful release of anything."""
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert process.returncode == -signal.SIGKILL
    assert process.stdout is not None
    process.stdout.close()


class Died(BaseException):
    """The invocation ends here (a timeout, a kill): no handler runs after it."""


def die_in_invocation(
    monkeypatch: pytest.MonkeyPatch, body: str, at: tuple[object, str], why: str
) -> None:
    """Handle ``body`` in an invocation that dies when it calls ``at`` (an owner and
    the name of its method): nothing after that point runs, as after a kill."""

    def die(*args: object, **kwargs: object) -> None:
        raise Died(why)

    owner, name = at
    with monkeypatch.context() as patched:
        patched.setattr(owner, name, die)
        with pytest.raises(Died):
            aws_lambda.handle_record_body(body)


def die_after_claiming_the_summary(monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Handle ``body`` in an invocation that dies right after it claimed the batch's summary."""
    from imgpipe.service.summary import SummaryWriter

    at = (SummaryWriter, "publish")
    die_in_invocation(monkeypatch, body, at, "the invocation died after claiming the summary")


def work_until(deployed: Deployment, done: Callable[[], Any], rounds: int = 3) -> WorkerStats:
    """Work the queue until ``done()``: a deferred message may come back after a
    round ended (a round stops once the queue stayed empty for 2 s)."""
    total = WorkerStats()
    for _ in range(rounds):
        for loop in deployed.work():
            total.succeeded += loop.stats.succeeded
            total.failed += loop.stats.failed
            total.deferred += loop.stats.deferred
        if done():
            return total
    raise AssertionError(f"not done after {rounds} rounds of work: {total}")


def record_of(deployed: Deployment, batch_id: str, name: str) -> CreatorRecord | None:
    return deployed.state.get_creator(creator_key(name), batch_id)


def assert_batch_done(deployed: Deployment, batch_id: str, names: list[str]) -> dict[str, Any]:
    """Every creator final and counted once, one collage each, one summary, empty DLQs."""
    records = {r.creator_name: r for r in deployed.state.creators_in_batch(batch_id)}
    assert sorted(records) == sorted(creator_key(n) for n in names)
    assert {r.status for r in records.values()} == {CreatorStatus.COMPLETED}
    batch = deployed.state.get_batch(batch_id)
    assert batch is not None
    assert (batch.completed, batch.failed, batch.skipped) == (len(names), 0, 0)
    assert batch.summary_key == f"results/processing-summaries/{batch_id}.json"
    (summary,) = deployed.summaries()
    assert summary["batch_id"] == batch_id
    assert summary["totals"]["creators"] == summary["totals"]["completed"] == len(names)
    assert sorted(c["creator"] for c in summary["creators"]) == sorted(names)
    collages = [k for k in deployed.outputs.list("collages/") if k.endswith(".jpg")]
    assert len(collages) == len(names)
    assert sorted(r.collage_key or "" for r in records.values()) == sorted(collages)
    assert deployed.dlq.receive(wait_seconds=0) == []
    plan_dlq = SqsWorkQueue(deployed.names["IMGPIPE_PLAN_DLQ_URL"], settings=deployed.settings)
    assert plan_dlq.receive(wait_seconds=0) == []
    return summary


def covers(
    server: FaultServer, names: list[str], colour: tuple[int, int, int] = BLUE
) -> list[tuple[str, str]]:
    """One cover path per creator, so a path's hits count that creator's fetches."""
    data = solid_jpeg(colour)
    return [(name, server.add(f"/c{i}.jpg", Serve(data))) for i, name in enumerate(names)]


# -- 1. contention ---------------------------------------------------------------------


@pytest.mark.slow
def test_contention_on_every_write_is_retried_and_counted_once(chaos: Deployment) -> None:
    faults = DynamoContention(runtime().ports.state.client, failures=2)
    names = [f"contended {i}" for i in range(8)]
    with FaultServer() as server:
        chaos.upload_csv("csv-files/contended.csv", covers(server, names))
        loops = chaos.work(workers=2)
        hits = [server.hits(f"/c{i}.jpg") for i in range(len(names))]

    # Contention reached the code on every kind of write, as DynamoDB sends it.
    assert faults.injected["TransactionCanceledException"] >= len(names)  # every finish
    assert faults.injected["TransactionConflictException"] >= len(names)  # every claim
    assert faults.injected["ThrottlingException"] >= len(names)
    assert faults.injected["UnprocessedItems"] >= 1  # the pending records
    assert all(w.stats.failed == 0 for w in loops)
    (summary,) = chaos.summaries()
    assert_batch_done(chaos, summary["batch_id"], names)
    assert hits == [1] * len(names)  # nothing rendered twice


# -- 2. a worker killed between claim and finish ----------------------------------------

_WORKER = (
    "import sys\n"
    "from imgpipe.entrypoints import aws_lambda\n"
    "aws_lambda.handle_record_body(sys.argv[1])\n"
)


@pytest.mark.slow
def test_a_worker_killed_mid_work_is_taken_over_after_its_lease(
    chaos: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGPIPE_CREATOR_LEASE_SECONDS", "2")
    slow_then_fast = Sequence(Serve(solid_jpeg(RED), delay=30), Serve(solid_jpeg(RED)))
    with FaultServer() as server:
        victim_url = server.add("/victim.jpg", slow_then_fast)
        rows = [("Victim", victim_url), ("Bystander", server.add("/b.jpg", Serve(solid_jpeg())))]
        chaos.upload_csv("csv-files/killed.csv", rows)
        batch_id = plan_upload(chaos)["batch_id"]
        messages = creator_messages(chaos, 2)
        aws_lambda.handle_record_body(messages["Bystander"].body)
        chaos.queue.delete(messages["Bystander"])

        # A worker on another host claims the victim and dies while its cover downloads.
        env = child_env(chaos, tmp_path, IMGPIPE_CREATOR_LEASE_SECONDS="2", DEFAULT_TIMEOUT="60")
        worker = spawn(_WORKER, env, tmp_path / "worker.log", messages["Victim"].body)
        try:
            claimed = poll(
                lambda: server.hits("/victim.jpg") == 1 and record_of(chaos, batch_id, "Victim"),
                what="the child's claim and download",
            )
        finally:
            kill(worker)
        assert claimed.status is CreatorStatus.PROCESSING
        assert claimed.lease_owner and f":{worker.pid}:" in claimed.lease_owner

        # Redelivered while the dead worker's lease still runs: it waits for the lease.
        with pytest.raises(ClaimBusyError) as busy:
            aws_lambda.handle_record_body(messages["Victim"].body)
        assert 0 < busy.value.retry_after <= 2
        assert chaos.summaries() == []

        # Back on the queue: a worker defers it while the lease lives, then takes over.
        assert claimed.lease_expires - time.time() > 0.5  # still live, by a margin
        chaos.queue.release(messages["Victim"])
        stats = work_until(chaos, lambda: chaos.summaries())
        assert stats.deferred >= 1 and stats.succeeded == 1 and stats.failed == 0
        assert server.hits("/victim.jpg") == 2  # the dead attempt and the takeover

    finished = record_of(chaos, batch_id, "Victim")
    assert finished is not None and finished.lease_owner != claimed.lease_owner
    assert_batch_done(chaos, batch_id, ["Bystander", "Victim"])
    assert chaos.queue.receive(wait_seconds=0) == []


# -- 3. duplicate delivery ----------------------------------------------------------------


def test_a_message_delivered_twice_at_once_and_again_later_renders_once(
    chaos: Deployment,
) -> None:
    with FaultServer() as server:
        # Slow enough that both deliveries claim while the first one works.
        url = server.add("/dup.jpg", Serve(solid_jpeg(GREEN), delay=0.5))
        chaos.upload_csv("csv-files/dup.csv", [("Twice", url)])
        batch_id = plan_upload(chaos)["batch_id"]
        (message,) = creator_messages(chaos, 1).values()
        runtime()  # built once, before the threads race for it
        start = threading.Barrier(2)
        outcomes: list[str] = []

        def deliver() -> None:
            start.wait()
            try:
                result = aws_lambda.handle_record_body(message.body)
                outcomes.append("replayed" if result["replayed"] else "rendered")
            except ClaimBusyError:
                outcomes.append("busy")

        threads = [threading.Thread(target=deliver) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        later = aws_lambda.handle_record_body(message.body)
        hits = server.hits("/dup.jpg")

    assert sorted(outcomes) == ["busy", "rendered"]
    assert later["replayed"] is True and later["status"] == "completed"
    assert hits == 1
    assert_batch_done(chaos, batch_id, ["Twice"])


# -- 4. two workers at once ----------------------------------------------------------------


@pytest.mark.slow
def test_two_workers_with_four_threads_each_do_every_creator_once(chaos: Deployment) -> None:
    names = [f"busy {i:02d}" for i in range(20)]
    with FaultServer() as server:
        chaos.upload_csv("csv-files/twenty.csv", covers(server, names))
        loops = chaos.work(workers=2, concurrency=4)
        hits = [server.hits(f"/c{i}.jpg") for i in range(len(names))]
    assert sum(w.stats.succeeded for w in loops) == 21  # the upload + 20 creators
    assert all(w.stats.failed == 0 for w in loops)
    assert all(w.stats.succeeded > 0 for w in loops[:2])  # both workers took part
    (summary,) = chaos.summaries()
    assert_batch_done(chaos, summary["batch_id"], names)
    assert hits == [1] * len(names)
    assert len(list(chaos.outputs.list("results/metadata/"))) == len(names)


# -- 5. a planner killed mid-plan -----------------------------------------------------------

# Chunks of 5; the second chunk's messages go out, then the planner hangs (and is
# killed) before that chunk's checkpoint: the worst moment to die.
_PLANNER = """
import sys, time
from imgpipe.adapters.sqs_queue import SqsWorkQueue
from imgpipe.entrypoints import aws_lambda
from imgpipe.service import fanout
fanout.PLAN_CHUNK = 5
send, sent = SqsWorkQueue.send, []
def hanging_send(self, bodies):
    send(self, bodies)
    sent.append(len(bodies))
    if len(sent) == 2:
        print("sent", sum(sent), flush=True)
        time.sleep(120)
SqsWorkQueue.send = hanging_send
aws_lambda.handle_record_body(sys.argv[1])
"""


@pytest.mark.slow
def test_a_planner_killed_mid_plan_continues_from_its_checkpoint(
    chaos: Deployment, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"planned {i:02d}" for i in range(23)]  # chunks of 5, 5, 5, 5, 3
    with FaultServer() as server:
        chaos.upload_csv("csv-files/big.csv", covers(server, names))
        (notification,) = chaos.queue.receive(wait_seconds=1)

        planner = spawn(
            _PLANNER, child_env(chaos, tmp_path), tmp_path / "planner.log", notification.body
        )
        try:
            assert planner.stdout is not None
            assert planner.stdout.readline().split() == ["sent", "10"]
            (checkpoint_key,) = poll(
                lambda: [
                    k for k in chaos.plans.list("processing/") if k.endswith("/checkpoint.json")
                ],
                what="the first checkpoint",
            )
        finally:
            kill(planner)
        batch_id = checkpoint_key.split("/")[1]
        checkpoint = json.loads(chaos.plans.get(checkpoint_key))
        assert checkpoint == {"chunks": 1}

        # The planning message comes back (its visibility ran out): planning continues.
        monkeypatch.setattr(fanout_module, "PLAN_CHUNK", 5)
        (replanned,) = aws_lambda.handle_record_body(notification.body)["results"]
        chaos.queue.delete(notification)
        assert replanned["batch_id"] == batch_id and replanned["replayed"] is True
        assert replanned["messages_sent"] == 23 - 5  # the checkpointed chunk is not sent again

        queued = drain(chaos.queue)
        per_creator = Counter(json.loads(m.body)["creator"] for m in queued)
        for message in queued:
            chaos.queue.release(message)
        # The chunk the planner died in was sent twice; every other creator once.
        assert per_creator == {name: 2 if 5 <= i < 10 else 1 for i, name in enumerate(names)}

        chaos.work(workers=2)
        hits = [server.hits(f"/c{i}.jpg") for i in range(len(names))]
    assert hits == [1] * len(names)  # a creator with two messages still rendered once
    summary = assert_batch_done(chaos, batch_id, names)
    assert summary["totals"]["creators"] == 23
    batch = chaos.state.get_batch(batch_id)
    assert batch is not None and batch.total_creators == 23


# -- 6. the sweep ---------------------------------------------------------------------------


def _advance(fanout: FanOut, monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    later = datetime.now(UTC) + timedelta(seconds=seconds)
    monkeypatch.setattr(fanout.ledger, "clock", lambda: later)


def test_the_sweep_requeues_a_claim_whose_worker_and_message_are_gone(
    chaos: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMGPIPE_CREATOR_LEASE_SECONDS", "1")
    with FaultServer() as server:
        rows = [
            ("Lost", server.add("/lost.jpg", Serve(solid_jpeg(RED)))),
            ("Kept", server.add("/k.jpg", Serve(solid_jpeg()))),
        ]
        chaos.upload_csv("csv-files/swept.csv", rows)
        batch_id = plan_upload(chaos)["batch_id"]
        messages = creator_messages(chaos, 2)
        fanout = runtime()

        # A worker claimed "Lost" (keeping its message in the claim, as process() does),
        # died, and its message went away (to the DLQ, or deleted by mistake).
        lost = json.loads(messages["Lost"].body)
        context = BatchContext(lost["batch_id"], lost["processing_date"], lost["ttl"])
        job = CreatorJob("Lost", lost["key"], ())
        fanout.ledger.claim(job, context, "dead-host:1:gone", note={"message": lost})
        chaos.queue.delete(messages["Lost"])
        chaos.queue.release(messages["Kept"])

        # the lease is still live
        assert fanout.sweep() == NOTHING_SWEPT
        claim = record_of(chaos, batch_id, "Lost")
        assert claim is not None and claim.lease_owner == "dead-host:1:gone"
        poll(lambda: time.time() > claim.lease_expires, what="the dead claim's lease to end")
        # No grace here: the message is known to be gone (deleted above).
        swept = fanout.sweep(grace_seconds=0)
        assert swept == {**NOTHING_SWEPT, "stuck": 1, "requeued": 1}

        queued = drain(chaos.queue)
        requeued = {json.loads(m.body)["creator"]: json.loads(m.body) for m in queued}
        assert sorted(requeued) == ["Kept", "Lost"]
        assert requeued["Lost"] == lost  # the very message, from the claim's record
        for message in queued:
            chaos.queue.release(message)

        chaos.work()
        assert server.hits("/lost.jpg") == 1
    assert_batch_done(chaos, batch_id, ["Kept", "Lost"])
    # finished, with no notice owed: settled once, then no sweep visits it again
    assert fanout.sweep() == {**NOTHING_SWEPT, "settled": 1}
    assert fanout.sweep() == NOTHING_SWEPT


def test_the_sweep_writes_a_summary_whose_writer_died(
    chaos: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgpipe.errors import SummaryPendingError

    with FaultServer() as server:
        rows = [
            ("First", server.add("/1.jpg", Serve(solid_jpeg()))),
            ("Last", server.add("/2.jpg", Serve(solid_jpeg(RED)))),
        ]
        chaos.upload_csv("csv-files/orphan.csv", rows)
        batch_id = plan_upload(chaos)["batch_id"]
        messages = creator_messages(chaos, 2)
        fanout = runtime()
        monkeypatch.setattr(fanout.ledger, "summary_wait_seconds", 0.2)
        aws_lambda.handle_record_body(messages["First"].body)

        die_after_claiming_the_summary(monkeypatch, messages["Last"].body)
        for message in messages.values():
            chaos.queue.delete(message)  # e.g. the failing one ended in the DLQ and was purged

    batch = chaos.state.get_batch(batch_id)
    assert batch is not None and batch.completed == 2 and batch.summary_key is None
    # While the dead writer's summary claim is live, the sweep leaves it (and says why).
    assert fanout.sweep()["finalized"] == 0
    with pytest.raises(SummaryPendingError):
        fanout.finalize(batch_id)
    _advance(fanout, monkeypatch, closing.SUMMARY_LEASE_SECONDS + 1)
    assert fanout.sweep() == {**NOTHING_SWEPT, "finalized": 1}
    assert fanout.sweep()["finalized"] == 0  # once
    assert_batch_done(chaos, batch_id, ["First", "Last"])
