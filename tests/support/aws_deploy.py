"""A deployment on moto: resources from ``ensure_resources``, settings in the environment.

The ``deployed`` fixture points the Lambda handler's settings at it (the handler
caches its runtime per process, so the cache is cleared around each test).
"""

from __future__ import annotations

import csv
import io
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from imgpipe.adapters.aws_resources import ensure_resources
from imgpipe.adapters.dynamodb_state import DynamoStateStore
from imgpipe.adapters.s3_store import S3ObjectStore
from imgpipe.adapters.sqs_queue import SqsWorkQueue
from imgpipe.entrypoints import aws_lambda, lambda_runtime
from imgpipe.entrypoints.worker import QueueWorker
from imgpipe.settings import Settings


def csv_bytes(rows: list[tuple[str, str]]) -> bytes:
    """A CSV of (creator, cover URL) rows under the original system's headers."""
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["creator_name", "cover_url"])
    writer.writerows(rows)
    return text.getvalue().encode()


class Deployment:
    def __init__(self, settings: Settings, names: dict[str, str]) -> None:
        self.settings = settings
        self.names = names
        self.inputs = S3ObjectStore(names["IMGPIPE_INPUT_BUCKET"], settings=settings)
        self.outputs = S3ObjectStore(names["IMGPIPE_OUTPUT_BUCKET"], settings=settings)
        self.plans = S3ObjectStore(names["IMGPIPE_TEMP_BUCKET"], settings=settings)
        self.state = DynamoStateStore(names["IMGPIPE_DYNAMODB_TABLE_NAME"], settings=settings)
        self.queue = SqsWorkQueue(names["IMGPIPE_SQS_QUEUE_URL"], settings=settings)
        self.plan_queue = SqsWorkQueue(names["IMGPIPE_PLAN_QUEUE_URL"], settings=settings)
        self.dlq = SqsWorkQueue(names["IMGPIPE_SQS_DLQ_URL"], settings=settings)

    def upload_csv(self, key: str, rows: list[tuple[str, str]]) -> None:
        self.inputs.put(key, csv_bytes(rows), content_type="text/csv")

    def work(self, *, workers: int = 1, concurrency: int = 2) -> list[QueueWorker]:
        """Run ``workers`` worker loops at once on the work queue, and one on the
        planning queue, until both stay empty (``imgpipe worker`` does the same)."""
        loops = [
            QueueWorker(
                queue,
                aws_lambda.handle_record_body,
                concurrency=concurrency,
                wait_seconds=1,
                retry_delay=0,
            )
            for queue in [self.queue] * workers + [self.plan_queue]
        ]
        threads = [threading.Thread(target=w.run, kwargs={"exit_when_idle": 2}) for w in loops]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        return loops

    def summaries(self) -> list[dict[str, Any]]:
        """The summary documents (not the completion notices' records beside them)."""
        keys = [
            k
            for k in self.outputs.list("results/processing-summaries/")
            if not k.endswith(".notice.json")
        ]
        return [json.loads(self.outputs.get(k)) for k in keys]


@pytest.fixture
def deployed(
    aws: Settings, atomic_dynamodb: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Deployment]:
    """The deployment, with moto's DynamoDB writes made atomic (``atomic_dynamodb``):
    every test on it runs handlers at once (``work`` starts a planning loop beside the
    workers, each with two threads; others race deliveries or kill workers)."""
    names = ensure_resources(aws, prefix="flow")
    for name, value in names.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IMGPIPE_BACKEND", "aws")
    monkeypatch.setenv("IMGPIPE_ALLOW_PRIVATE_NETWORKS", "127.0.0.0/8")
    monkeypatch.setenv("IMGPIPE_DEFAULT_TIMEOUT", "2")
    monkeypatch.setenv("IMGPIPE_DEFAULT_MAX_RETRIES", "0")
    lambda_runtime.runtime.cache_clear()
    lambda_runtime.metrics.cache_clear()
    deployment = Deployment(Settings(), names)
    for message in deployment.queue.receive(wait_seconds=0):  # the s3:TestEvent
        deployment.queue.delete(message)
    yield deployment
    lambda_runtime.runtime.cache_clear()
