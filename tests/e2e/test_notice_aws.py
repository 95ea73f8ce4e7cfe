"""Completion notices on the AWS engine: moto's SNS topic, read by a subscribed SQS queue.

Whatever way the batch finishes -- two workers racing, every creator message
delivered twice, the sweep writing the summary of a writer that died -- the topic
gets exactly one digest per batch, sent by whoever wrote the summary. A sender that
dies mid-send leaves its claim ``sending``; once its lease ends, one sweep sends the
digest again, even when two sweeps run at once. A writer that dies after the summary
and before sending leaves its claim ``pending`` (made before the summary); once that
claim's lease ends, with the writer's summary claim, the sweep sends it.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from imgpipe.adapters.s3_store import S3ObjectStore
from imgpipe.adapters.sns_notifier import SnsNotifier
from imgpipe.bootstrap import notice_lease_seconds
from imgpipe.domain.keys import notice_key
from imgpipe.entrypoints import lambda_runtime
from imgpipe.service import closing
from imgpipe.service.notice import BatchNotices, digest_of_stored
from tests.e2e.test_aws_chaos import (
    _advance,
    assert_batch_done,
    covers,
    creator_messages,
    die_after_claiming_the_summary,
    die_in_invocation,
    plan_upload,
    runtime,
)
from tests.support.aws_deploy import Deployment
from tests.support.covers import RED, solid_jpeg
from tests.support.http_server import FaultServer, Serve
from tests.support.sns import SubscribedTopic


@pytest.fixture
def topic(deployed: Deployment, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> SubscribedTopic:
    """The deployment with IMGPIPE_NOTIFY_TOPIC_ARN set and a presigned summary link."""
    subscribed = SubscribedTopic.create(deployed.settings, "imgpipe-done")
    monkeypatch.setenv("IMGPIPE_NOTIFY_TOPIC_ARN", subscribed.arn)
    monkeypatch.setenv("IMGPIPE_NOTIFY_PRESIGN_SECONDS", "600")
    monkeypatch.setenv("IMGPIPE_DATA_DIR", str(tmp_path / "data"))  # a cover cache of its own
    lambda_runtime.runtime.cache_clear()  # the runtime reads the settings once
    return subscribed


def notice_record(deployed: Deployment, batch_id: str) -> dict[str, object]:
    data: dict[str, object] = json.loads(deployed.outputs.get(notice_key(batch_id)))
    return data


@pytest.mark.slow
def test_two_workers_and_duplicate_deliveries_publish_one_digest(
    deployed: Deployment, topic: SubscribedTopic
) -> None:
    names = [f"creator {i}" for i in range(6)]
    with FaultServer() as server:
        deployed.upload_csv("csv-files/notified.csv", covers(server, names))
        batch_id = plan_upload(deployed)["batch_id"]
        messages = creator_messages(deployed, len(names)).values()
        deployed.queue.send([m.body for m in messages])  # every message a second time
        for message in messages:
            deployed.queue.release(message)
        loops = deployed.work(workers=2)
        assert runtime().sweep()["finalized"] == 0

    # A copy that met its twin's live claim is deferred (the twin finishes the creator).
    assert all(w.stats.failed == 0 for w in loops)
    assert sum(w.stats.succeeded + w.stats.deferred for w in loops) == 2 * len(names)
    summary = assert_batch_done(deployed, batch_id, names)
    [(digest, attributes)] = topic.received()
    assert attributes == {"idempotency_key": batch_id}
    assert digest["batch_id"] == digest["idempotency_key"] == batch_id
    assert digest["status"] == "completed"
    assert digest["counts"]["completed"] == len(names) and digest["failure_reasons"] == {}
    assert digest["summary_key"] == summary["summary_key"]
    # the presigned link fetches the summary itself
    link = digest["summary_url"]
    assert "X-Amz-Expires=600" in link
    with urllib.request.urlopen(link, timeout=10) as response:
        assert json.loads(response.read()) == summary
    recorded = notice_record(deployed, batch_id)
    (delivery,) = recorded["deliveries"]  # type: ignore[misc]
    assert (delivery["channel"], delivery["status"]) == ("sns", "sent")
    assert delivery["message_id"]


@pytest.mark.slow
def test_the_sweep_that_writes_a_dead_writers_summary_sends_its_notice(
    deployed: Deployment, topic: SubscribedTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultServer() as server:
        rows = [("Only", server.add("/1.jpg", Serve(solid_jpeg(RED))))]
        deployed.upload_csv("csv-files/orphan.csv", rows)
        batch_id = plan_upload(deployed)["batch_id"]
        (message,) = creator_messages(deployed, 1).values()
        fanout = runtime()
        monkeypatch.setattr(fanout.ledger, "summary_wait_seconds", 0.2)

        die_after_claiming_the_summary(monkeypatch, message.body)
        deployed.queue.delete(message)

    assert topic.received(quiet_seconds=0.3) == []  # no summary, no notice
    _advance(fanout, monkeypatch, closing.SUMMARY_LEASE_SECONDS + 1)
    assert fanout.sweep()["finalized"] == 1
    assert fanout.sweep()["finalized"] == 0
    [(digest, _)] = topic.received()
    assert digest["batch_id"] == batch_id and digest["counts"]["completed"] == 1


def die_while_sending_the_notice(monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Handle ``body`` (the last creator) in an invocation that times out while it
    publishes the notice: summary written, notice claimed, nothing sent or recorded."""
    why = "the invocation timed out while publishing the notice"
    die_in_invocation(monkeypatch, body, (SnsNotifier, "send"), why)


@pytest.mark.slow
def test_a_notice_whose_sender_died_is_sent_again_by_one_of_two_sweeps(
    deployed: Deployment, topic: SubscribedTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultServer() as server:
        rows = [("Only", server.add("/1.jpg", Serve(solid_jpeg(RED))))]
        deployed.upload_csv("csv-files/cut-short.csv", rows)
        batch_id = plan_upload(deployed)["batch_id"]
        (message,) = creator_messages(deployed, 1).values()
        die_while_sending_the_notice(monkeypatch, message.body)
        deployed.queue.delete(message)

    stranded = notice_record(deployed, batch_id)
    assert (stranded["state"], stranded["deliveries"], stranded["attempt"]) == ("sending", [], 1)
    assert topic.received(quiet_seconds=0.3) == []
    first = runtime()
    assert first.sweep()["notices_resent"] == 0  # its lease still runs: the sender may live

    # Two sweeps at once (two containers), both past the lease, both reading the
    # stranded claim before either writes: the create-if-absent marker decides.
    lambda_runtime.runtime.cache_clear()
    second = runtime()
    assert second is not first
    lease = notice_lease_seconds(deployed.settings)
    for fanout in (first, second):
        _advance(fanout, monkeypatch, lease + 1)
    both_read = threading.Barrier(2, timeout=20)
    key = notice_key(batch_id)
    plain_get = S3ObjectStore.get

    def get_together(store: S3ObjectStore, wanted: str) -> bytes:
        data = plain_get(store, wanted)
        if wanted == key:
            both_read.wait()
        return data

    with monkeypatch.context() as patched:
        patched.setattr(S3ObjectStore, "get", get_together)
        with ThreadPoolExecutor(2) as pool:
            counts = list(pool.map(lambda fanout: fanout.sweep(), (first, second)))

    assert sorted(c["notices_resent"] for c in counts) == [0, 1]
    [(digest, attributes)] = topic.received()
    assert digest["batch_id"] == batch_id and attributes == {"idempotency_key": batch_id}
    assert digest["counts"]["completed"] == 1
    done = notice_record(deployed, batch_id)
    assert (done["state"], done["attempt"]) == ("done", 2)
    (delivery,) = done["deliveries"]  # type: ignore[misc]
    assert (delivery["channel"], delivery["status"]) == ("sns", "sent")
    assert first.sweep()["notices_resent"] == 0 and topic.received(quiet_seconds=0.3) == []


def die_after_writing_the_summary(monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    """Handle ``body`` (the last creator) in an invocation that times out right after
    it wrote the summary and closed the batch: notice claimed (pending), nothing sent."""
    why = "the invocation timed out after writing the summary"
    die_in_invocation(monkeypatch, body, (BatchNotices, "announce"), why)


@pytest.mark.slow
def test_a_notice_whose_writer_died_after_the_summary_is_sent_by_the_sweep(
    deployed: Deployment, topic: SubscribedTopic, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FaultServer() as server:
        rows = [("Only", server.add("/1.jpg", Serve(solid_jpeg(RED))))]
        deployed.upload_csv("csv-files/summary-then-dead.csv", rows)
        batch_id = plan_upload(deployed)["batch_id"]
        (message,) = creator_messages(deployed, 1).values()
        die_after_writing_the_summary(monkeypatch, message.body)
        deployed.queue.delete(message)

    batch = deployed.state.get_batch(batch_id)
    assert batch is not None and batch.summary_key  # the summary is written, the batch closed
    claim = notice_record(deployed, batch_id)
    assert (claim["state"], claim["digest"], claim["deliveries"]) == ("pending", {}, [])
    assert topic.received(quiet_seconds=0.3) == []
    fanout = runtime()
    assert fanout.sweep()["notices_resent"] == 0  # its lease (the summary claim's) still runs

    _advance(fanout, monkeypatch, closing.SUMMARY_LEASE_SECONDS + 1)
    assert fanout.sweep()["notices_resent"] == 1
    assert fanout.sweep()["notices_resent"] == 0
    [(digest, attributes)] = topic.received()
    assert attributes == {"idempotency_key": batch_id}
    written = json.loads(deployed.outputs.get(batch.summary_key))
    assert digest | {"summary_url": None} == digest_of_stored(written) | {"summary_url": None}
    assert digest["counts"]["completed"] == 1
    done = notice_record(deployed, batch_id)
    assert (done["state"], done["attempt"]) == ("done", 2)
    assert topic.received(quiet_seconds=0.3) == []
