"""A creator whose covers do not fit a DynamoDB item still finishes, on moto.

Its final record keeps a reference to its metadata document instead of its
covers (see :mod:`imgpipe.service.creator_covers`); the summary, its failed-URL
files and the API's creator views read them from there, in full.
"""

from __future__ import annotations

import httpx

from imgpipe.adapters.dynamodb_table import MAX_ITEM_BYTES, creator_item, item_size
from imgpipe.domain.keys import creator_key, metadata_key
from imgpipe.domain.records import CreatorStatus
from imgpipe.entrypoints.api.app import create_app
from imgpipe.service.creator_covers import COVERS_KEY_FIELD
from imgpipe.settings import Settings
from tests.support.api_server import ApiServer
from tests.support.aws_deploy import Deployment
from tests.support.http_server import FaultServer
from tests.support.long_urls import (
    COVERS,
    CREATOR,
    TOO_LONG_LINE,
    WORKING,
    failed_urls_in_summary,
    long_url_rows,
)


def test_long_urls_finish_the_creator_and_reach_the_summary_in_full(
    deployed: Deployment,
) -> None:
    with FaultServer() as server, ApiServer(create_app(Settings())) as api:
        rows, failing = long_url_rows(server)
        deployed.upload_csv("csv-files/long.csv", rows)
        loops = deployed.work()
        (summary,) = deployed.summaries()
        batch_id, key = summary["batch_id"], creator_key(CREATOR)
        with httpx.Client(base_url=api.base_url, timeout=30) as http:
            history = http.get(f"/v1/creators/{key}").json()
            batch = http.get(f"/v1/batches/{batch_id}").json()

    assert sum(w.stats.failed + w.stats.deferred for w in loops) == 0
    assert deployed.dlq.receive(wait_seconds=0) == []
    assert summary["totals"]["completed"] == 1
    assert summary["totals"]["images_used"] == WORKING
    assert summary["failures_by_reason"]["http_404"] == len(failing)
    inline, parts = failed_urls_in_summary(summary, deployed.outputs)
    assert inline == failing and parts == failing
    (problem,) = summary["row_problems"]
    assert (problem["line"], problem["reason"]) == (TOO_LONG_LINE, "url_too_long")

    # The record points at the document rather than holding the covers, and fits.
    record = deployed.state.get_creator(key, batch_id)
    assert record is not None and record.status is CreatorStatus.COMPLETED
    assert "covers" not in record.metadata
    assert record.metadata[COVERS_KEY_FIELD] == metadata_key(batch_id, key)
    assert record.metadata["cover_counts"]["total"] == COVERS
    assert item_size(creator_item(record)) < MAX_ITEM_BYTES // 10

    # The API reads the covers from the document: every failed URL, in full.
    (shown,) = history
    assert {f["url"] for f in shown["failed_urls"]} == failing
    assert shown["failures"] == {"http_404": len(failing)}
    (listed,) = batch["creators"]
    assert {f["url"] for f in listed["failed_urls"]} == failing
    assert batch["failures_by_reason"] == {"http_404": len(failing)}
