"""The AWS flow as AWS runs it, against moto's S3, SQS and DynamoDB over HTTP.

The input bucket notifies the queue of CSV uploads; ``QueueWorker`` (what
``imgpipe worker`` runs, and the same code as the Lambda handler) drains it.
Covers come from a FaultServer on 127.0.0.1 (allowed explicitly) and from objects
beside the CSV in the input bucket.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from PIL import Image

from imgpipe.adapters.aws_resources import MAX_RECEIVE_COUNT
from imgpipe.domain.records import CreatorStatus
from imgpipe.entrypoints import aws_lambda, lambda_runtime
from tests.support.aws import AWS_ENV
from tests.support.aws_deploy import Deployment
from tests.support.covers import BLUE, GREEN, RED, color_close, solid_jpeg, solid_png
from tests.support.http_server import FaultServer, Serve, Status

SRC = Path(__file__).resolve().parents[2] / "src"


def test_upload_to_collages_summary_and_archive(deployed: Deployment, tmp_path: Path) -> None:
    deployed.inputs.put("csv-files/launch/img/blue.jpg", solid_jpeg(BLUE))
    with FaultServer() as server:
        rows = [
            ("Zoë Dance", server.add("/red.jpg", Serve(solid_jpeg(RED)))),
            ("Zoë Dance", server.add("/green.png", Serve(solid_png(GREEN), "image/png"))),
            ("Zoë Dance", "img/blue.jpg"),  # beside the CSV in the input bucket
            ("Ann", server.add("/ann.jpg", Serve(solid_jpeg(GREEN)))),
            ("Gone", server.add("/gone.jpg", Status(404))),
        ]
        key = "csv-files/launch/spring launch ü.csv"  # S3 sends it as spring+launch+%C3%BC
        deployed.upload_csv(key, rows)
        deployed.work()

    (summary,) = deployed.summaries()
    assert summary["totals"]["creators"] == 3
    assert (summary["totals"]["completed"], summary["totals"]["failed"]) == (2, 1)
    assert summary["failures_by_reason"] == {"http_404": 1}
    batch_id = summary["batch_id"]

    creators = {c["creator"]: c for c in summary["creators"]}
    with Image.open(io.BytesIO(deployed.outputs.get(creators["Zoë Dance"]["collage_key"]))) as im:
        rgb = im.convert("RGB")
        assert im.size == (1400, 200)
        for cell, colour in enumerate([RED, GREEN, BLUE]):
            assert color_close(rgb.getpixel((cell * 200 + 100, 100)), colour)
    assert creators["Zoë Dance"]["collage_key"].startswith("collages/by-creator/Zoë_Dance-")

    # state, through both indexes
    by_batch = deployed.state.creators_in_batch(batch_id)
    assert {r.metadata["display_name"]: r.status for r in by_batch} == {
        "Zoë Dance": CreatorStatus.COMPLETED,
        "Ann": CreatorStatus.COMPLETED,
        "Gone": CreatorStatus.FAILED,
    }
    failed = deployed.state.creators_with_status(CreatorStatus.FAILED)
    assert [(r.batch_id, r.metadata["display_name"]) for r in failed] == [(batch_id, "Gone")]
    batch = deployed.state.get_batch(batch_id)
    assert batch is not None and (batch.completed, batch.failed) == (2, 1)
    assert batch.summary_key == f"results/processing-summaries/{batch_id}.json"
    assert batch.status.value == "completed_with_failures"

    # the CSV moved out of the upload folder, so a re-upload starts a new batch
    assert list(deployed.inputs.list("csv-files/launch/spring")) == []
    assert deployed.inputs.exists("archived/processed/launch/spring launch ü.csv")
    assert deployed.dlq.receive(wait_seconds=0) == []

    # `imgpipe status` reads the table; it needs no local data folder on AWS.
    shown = json.loads(imgpipe_cli(cli_env(deployed), "status", batch_id, "--json", cwd=tmp_path))
    assert shown["batch"]["status"] == "completed_with_failures"
    assert sorted(r["metadata"]["display_name"] for r in shown["creators"]) == [
        "Ann",
        "Gone",
        "Zoë Dance",
    ]


def test_redelivered_creator_message_renders_and_counts_once(deployed: Deployment) -> None:
    with FaultServer() as server:
        url = server.add("/a.jpg", Serve(solid_jpeg(RED)))
        deployed.upload_csv("csv-files/one.csv", [("Solo", url), ("Duo", url)])
        _, fanout = lambda_runtime.runtime()
        (notification,) = deployed.queue.receive(wait_seconds=1)
        aws_lambda.handle_record_body(notification.body)  # plan: 2 creator messages
        deployed.queue.delete(notification)
        messages = deployed.queue.receive(max_messages=10, wait_seconds=1)
        assert len(messages) == 2
        first = aws_lambda.handle_record_body(messages[0].body)
        again = aws_lambda.handle_record_body(messages[0].body)  # at-least-once delivery
        hits_after_first = server.hits("/a.jpg")
        aws_lambda.handle_record_body(messages[1].body)
        aws_lambda.handle_record_body(messages[1].body)
    assert first["replayed"] is False and again["replayed"] is True
    assert hits_after_first == 1  # the replay fetched nothing
    (summary,) = deployed.summaries()  # written exactly once, by the last creator
    assert summary["totals"]["completed"] == 2
    batch = deployed.state.get_batch(summary["batch_id"])
    assert batch is not None and batch.completed == 2 and fanout is not None
    assert len([k for k in deployed.outputs.list("collages/") if k.endswith(".jpg")]) == 2


def test_a_summary_whose_writer_died_is_written_by_a_retry_after_the_lease(
    deployed: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    from imgpipe.errors import SummaryPendingError
    from imgpipe.service import closing
    from imgpipe.service.summary import SummaryWriter

    with FaultServer() as server:
        url = server.add("/a.jpg", Serve(solid_jpeg(RED)))
        deployed.upload_csv("csv-files/crash.csv", [("Only", url)])
        _, fanout = lambda_runtime.runtime()
        assert fanout is not None
        monkeypatch.setattr(fanout.ledger, "summary_wait_seconds", 0.5)
        (notification,) = deployed.queue.receive(wait_seconds=1)
        aws_lambda.handle_record_body(notification.body)
        (message,) = deployed.queue.receive(max_messages=10, wait_seconds=1)

        real_publish = SummaryWriter.publish

        class Died(BaseException):
            """The invocation ends here (a timeout, a kill): no handler runs after it."""

        def crash(*args: object, **kwargs: object) -> None:
            raise Died("the invocation died after claiming the summary")

        monkeypatch.setattr(SummaryWriter, "publish", crash)
        with pytest.raises(Died):
            aws_lambda.handle_record_body(message.body)
        monkeypatch.setattr(SummaryWriter, "publish", real_publish)

        # Redelivered while the dead claim's lease still runs: retried later, not dropped.
        with pytest.raises(SummaryPendingError):
            aws_lambda.handle_record_body(message.body)
        assert deployed.summaries() == []

        # Redelivered after the lease: this invocation writes the summary.
        later = datetime.now(UTC) + timedelta(seconds=closing.SUMMARY_LEASE_SECONDS + 1)
        monkeypatch.setattr(fanout.ledger, "clock", lambda: later)
        aws_lambda.handle_record_body(message.body)
        aws_lambda.handle_record_body(message.body)  # and a further redelivery does nothing

    (summary,) = deployed.summaries()
    assert summary["totals"]["completed"] == 1
    batch = deployed.state.get_batch(summary["batch_id"])
    assert batch is not None
    assert batch.summary_key == f"results/processing-summaries/{batch.batch_id}.json"


def test_two_workers_do_every_creator_exactly_once(deployed: Deployment) -> None:
    with FaultServer() as server:
        url = server.add("/c.jpg", Serve(solid_jpeg(BLUE)))
        rows = [(f"creator {i:02d}", url) for i in range(12)]
        deployed.upload_csv("csv-files/many.csv", rows)
        loops = deployed.work(workers=2, concurrency=2)
    assert sum(w.stats.succeeded for w in loops) == 13  # the upload + 12 creators
    assert all(w.stats.failed == 0 for w in loops)
    (summary,) = deployed.summaries()
    assert summary["totals"]["completed"] == 12
    collages = [k for k in deployed.outputs.list("collages/") if k.endswith(".jpg")]
    assert len(collages) == 12  # none rendered twice
    assert len(list(deployed.outputs.list("results/metadata/"))) == 12


def test_poison_messages_go_to_the_dlq_and_can_be_redriven(deployed: Deployment) -> None:
    poison = [
        "this is not json",
        json.dumps({"processing_type": "mystery"}),
        json.dumps({"processing_type": "csv_s3", "s3_key": "csv-files/missing.csv"}),
    ]
    deployed.queue.send(poison)
    with FaultServer() as server:
        url = server.add("/ok.jpg", Serve(solid_jpeg(GREEN)))
        deployed.upload_csv("csv-files/good.csv", [("Fine", url)])
        loops = deployed.work()
    # three poison messages, each received MAX_RECEIVE_COUNT times
    assert loops[0].stats.failed == 3 * MAX_RECEIVE_COUNT
    (summary,) = deployed.summaries()
    assert summary["totals"]["completed"] == 1  # the good batch was not held up

    env = cli_env(deployed)
    listed = imgpipe_cli(env, "dlq", "list", "--json")
    assert sorted(m["body"] for m in json.loads(listed)) == sorted(poison)
    assert json.loads(imgpipe_cli(env, "dlq", "redrive")) == {"redriven": 3}
    back = deployed.queue.receive(max_messages=10, wait_seconds=1)
    assert sorted(m.body for m in back) == sorted(poison)


def cli_env(deployed: Deployment) -> dict[str, str]:
    """What a user exports to point the CLI at the deployment."""
    return {
        **AWS_ENV,
        **deployed.names,
        "IMGPIPE_BACKEND": "aws",
        "IMGPIPE_AWS_ENDPOINT_URL": str(deployed.settings.aws_endpoint_url),
    }


def imgpipe_cli(env: dict[str, str], *args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "imgpipe", *args],
        capture_output=True,
        text=True,
        timeout=120,
        # this checkout's code, not the shared virtualenv's editable install
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC), **env},
        cwd=cwd,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_workers_render_with_the_spec_that_was_planned(
    deployed: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker whose own settings differ still renders what the planner resolved."""
    with FaultServer() as server:
        url = server.add("/r.jpg", Serve(solid_jpeg(RED)))
        other = server.add("/g.jpg", Serve(solid_jpeg(GREEN)))
        deployed.upload_csv("csv-files/spec.csv", [("Spec", url), ("Spec", other)])
        (notification,) = deployed.queue.receive(wait_seconds=1)
        deployed.queue.delete(notification)
        planning = {
            "processing_type": "csv_s3",
            "s3_key": "csv-files/spec.csv",
            "processing_config": {"rows": 1, "cols": 2, "quality": 60},
        }
        aws_lambda.handle_record_body(json.dumps(planning))
        (message,) = deployed.queue.receive(wait_seconds=1)
        # The worker runs elsewhere with other defaults: 3 x 3 cells of 50 px.
        monkeypatch.setenv("DEFAULT_ROWS", "3")
        monkeypatch.setenv("DEFAULT_COLS", "3")
        monkeypatch.setenv("IMGPIPE_CELL_SIZE", "50")
        lambda_runtime.runtime.cache_clear()
        aws_lambda.handle_record_body(message.body)

    (summary,) = deployed.summaries()
    assert summary["settings"]["rows"] == 1 and summary["settings"]["cell"] == 200
    collage = Image.open(io.BytesIO(deployed.outputs.get(summary["creators"][0]["collage_key"])))
    assert collage.size == (400, 200)  # 1 x 2 cells of the planned 200 px, not 3 x 3 of 50
    assert color_close(collage.getpixel((100, 100)), RED)
    assert color_close(collage.getpixel((300, 100)), GREEN)
