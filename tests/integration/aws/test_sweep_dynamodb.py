"""The sweep on DynamoDB (moto's, over HTTP, the table as deployed), pages of two.

The engine of ``tests/unit/test_queue_engine.py`` with its state on DynamoDB: the
sweep pages ``status-date-index`` and the sparse ``open-batch-index`` by
``LastEvaluatedKey``, so every dead claim is re-queued and the oldest batch is
finalised however many of them there are; the client counts the pages it asked for.
A table of an earlier version gets the index, and its batches the open mark. Batches
whose finalisation keeps failing back off on their items without starving a newer one.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from typer.testing import CliRunner

from imgpipe.adapters.aws_resources import ensure_resources
from imgpipe.adapters.dynamodb_state import DynamoStateStore
from imgpipe.adapters.dynamodb_table import (
    INDEXES,
    OPEN_BATCH_INDEX,
    STATUS_INDEX,
    batch_item,
    batch_key,
    create_state_table,
)
from imgpipe.domain.records import BatchRecord
from imgpipe.entrypoints.cli import app
from imgpipe.service import closing
from imgpipe.service.sweep import SweepBudget
from imgpipe.settings import Settings
from tests.support.aws import client
from tests.unit.test_queue_engine import COVERS, NOTHING_SWEPT, dead_claim, engine
from tests.unit.test_sweep import LEASE, finish_but_let_the_summary_writer_die
from tests.unit.test_sweep_backoff import RUN, Finalize, run, stranded


class CountingClient:
    """boto3's DynamoDB client, counting the query pages asked of each index."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.queries: Counter[str] = Counter()

    def query(self, **params: Any) -> Any:
        self.queries[params.get("IndexName", "table")] += 1
        return self.inner.query(**params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def dynamodb(aws: Settings, atomic_dynamodb: None) -> CountingClient:
    create_state_table(client(aws, "dynamodb"), "state")
    return CountingClient(client(aws, "dynamodb"))


def test_the_sweep_pages_through_dynamodb(
    dynamodb: CountingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = DynamoStateStore("state", client=dynamodb)
    e = engine(COVERS, lease=LEASE, wrap=lambda _: state)
    oldest = finish_but_let_the_summary_writer_die(e, monkeypatch)
    for n in range(3):  # newer batches at work
        e.state.put_batch(
            BatchRecord(f"{oldest}-{n}", "2026-11-24T00:00:00+00:00", "x.csv", total_creators=9)
        )
    e.clock.advance(1)
    e.plan([(f"Cr{n}", "https://img.example/a1.jpg") for n in range(5)], key="csv-files/5.csv")
    dead = e.messages()
    for message in dead:
        dead_claim(e, message)
    e.clock.advance(closing.SUMMARY_LEASE_SECONDS + 1)  # every claim here is long dead
    dynamodb.queries.clear()

    counts = e.fanout.sweep(budget=SweepBudget(page_size=2))

    assert counts == {**NOTHING_SWEPT, "stuck": 5, "requeued": 5, "finalized": 1}
    assert sorted(m["creator"] for m in e.messages()) == [f"Cr{n}" for n in range(5)]
    assert [s["batch_id"] for s in e.summaries()] == [oldest]
    # 5 claims in pages of 2; 5 open batches (the dead claims' one too) in pages of 2
    assert dynamodb.queries[STATUS_INDEX] == 3
    assert dynamodb.queries[OPEN_BATCH_INDEX] == 3
    # the finished batch is settled by the next run, and leaves the sparse index
    assert e.fanout.sweep(budget=SweepBudget(page_size=2))["settled"] == 1
    assert oldest not in state.open_batches(page_size=10).items
    assert len(state.open_batches(page_size=10).items) == 4


def test_failing_batches_back_off_on_dynamodb_and_a_newer_one_is_finalised(
    dynamodb: CountingClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = DynamoStateStore("state", client=dynamodb)
    e = engine(COVERS, lease=LEASE, wrap=lambda _: state)
    *old, newer = stranded(e, monkeypatch, 7)
    finalize = Finalize(e, old)

    assert run(e, finalize, finalizations=5, page_size=2) == {**NOTHING_SWEPT, "more": 1}
    item = dynamodb.get_item(TableName="state", Key=batch_key(old[0]), ConsistentRead=True)
    assert item["Item"]["sweep_failures"] == {"N": "1"}
    assert float(item["Item"]["sweep_retry_at"]["N"]) == e.ledger.now() + RUN - 30

    e.clock.advance(RUN)
    counts = run(e, finalize, finalizations=5, page_size=2)
    assert counts == {**NOTHING_SWEPT, "finalized": 1, "more": 1}
    assert [s["batch_id"] for s in e.summaries()] == [newer]
    stored = [state.get_batch(b) for b in old]
    assert [b.sweep_failures for b in stored if b] == [2, 2, 2, 1, 1, 1]

    # the fault is fixed: the next due try finalises the oldest and clears its record,
    # whose attributes leave the item (only failing batches carry them)
    finalize.failing.clear()
    e.clock.advance(RUN)
    counts = run(e, finalize, finalizations=5, page_size=2)
    assert counts == {**NOTHING_SWEPT, "finalized": 3, "settled": 1, "backing_off": 3}
    e.clock.advance(2 * RUN)
    assert run(e, finalize, finalizations=5, page_size=2)["finalized"] == 3
    item = dynamodb.get_item(TableName="state", Key=batch_key(old[0]), ConsistentRead=True)
    assert "sweep_failures" not in item["Item"] and "sweep_retry_at" not in item["Item"]
    assert sorted(s["batch_id"] for s in e.summaries()) == sorted(old + [newer])


def old_batch(dynamodb: Any, table: str, batch_id: str) -> None:
    """A batch item as versions before the open mark wrote it."""
    item = batch_item(BatchRecord(batch_id, "2026-11-01T00:00:00+00:00", "x.csv"))
    del item["open_batch"]
    dynamodb.put_item(TableName=table, Item=item)


def test_an_older_table_gets_the_open_index_and_its_batches_are_marked_open(
    aws: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    dynamodb = client(aws, "dynamodb")
    dynamodb.create_table(  # the layout before open-batch-index
        TableName="old-state",
        AttributeDefinitions=[
            {"AttributeName": name, "AttributeType": "S"}
            for name in ("creator_name", "processing_date", "batch_id", "status")
        ],
        KeySchema=[
            {"AttributeName": "creator_name", "KeyType": "HASH"},
            {"AttributeName": "processing_date", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[i for i in INDEXES if i["IndexName"] != OPEN_BATCH_INDEX],
        BillingMode="PAY_PER_REQUEST",
    )
    old_batch(dynamodb, "old-state", "20261101-000000-a")
    old_batch(dynamodb, "old-state", "20261101-000000-b")
    state = DynamoStateStore("old-state", settings=aws)
    state.put_batch(BatchRecord("20261101-000000-c", "2026-11-01T00:00:00+00:00", "x.csv"))

    ensure_resources(aws, prefix="old")  # imgpipe aws-init on the existing table

    described = dynamodb.describe_table(TableName="old-state")["Table"]
    assert OPEN_BATCH_INDEX in {i["IndexName"] for i in described["GlobalSecondaryIndexes"]}
    assert state.open_batches().items == [f"20261101-000000-{x}" for x in "abc"]

    # a deployment (SAM, Terraform) adds the index itself; the command marks the rest
    old_batch(dynamodb, "old-state", "20261101-000000-d")
    monkeypatch.setenv("IMGPIPE_DYNAMODB_TABLE_NAME", "old-state")
    result = CliRunner().invoke(app, ["aws-open-batches"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"marked_open": 1}
    assert state.open_batches().items[-1] == "20261101-000000-d"
    assert json.loads(CliRunner().invoke(app, ["aws-open-batches"]).output) == {"marked_open": 0}
