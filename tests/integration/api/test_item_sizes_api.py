"""Covers too large for a state record, on the local backend (SQLite), through the API.

SQLite has no item limit, but records are kept the same way on every backend (see
:mod:`imgpipe.service.creator_covers`): a creator whose cover list passes the
budget keeps it in its metadata document, and the summary and pages read it there.
"""

from __future__ import annotations

import csv
import io
import json

from imgpipe.domain.keys import creator_key, metadata_key
from imgpipe.domain.records import CreatorStatus
from imgpipe.service.creator_covers import COVERS_KEY_FIELD
from tests.integration.api.conftest import ApiFactory
from tests.integration.api.test_batches_api import upload, wait_for_batch
from tests.support.http_server import FaultServer
from tests.support.long_urls import (
    COVERS,
    CREATOR,
    TOO_LONG_LINE,
    failed_urls_in_summary,
    long_url_rows,
)


def test_long_urls_finish_on_sqlite_and_every_failed_url_is_shown(
    api: ApiFactory, covers: FaultServer
) -> None:
    server = api()
    rows, failing = long_url_rows(covers)
    text = io.StringIO()
    csv.writer(text).writerows([("creator", "url"), *rows])
    answer = upload(server, text.getvalue())
    assert answer.status_code == 202, answer.text
    batch = wait_for_batch(server, answer.json()["batch_id"])
    batch_id, key = batch["batch_id"], creator_key(CREATOR)

    assert batch["status"] == "completed" and batch["completed"] == 1
    assert batch["failures_by_reason"] == {"http_404": len(failing)}
    (listed,) = batch["creators"]
    assert {f["url"] for f in listed["failed_urls"]} == failing
    assert [(p["line"], p["reason"]) for p in batch["row_problems"]] == [
        (TOO_LONG_LINE, "url_too_long")
    ]

    backend = server.app.state.backend
    summary = json.loads(backend.store.get(batch["summary_key"]))
    inline, parts = failed_urls_in_summary(summary, backend.store)
    assert inline == failing and parts == failing

    record = backend.state.get_creator(key, batch_id)
    assert record is not None and record.status is CreatorStatus.COMPLETED
    assert "covers" not in record.metadata
    assert record.metadata[COVERS_KEY_FIELD] == metadata_key(batch_id, key)
    assert record.metadata["cover_counts"]["total"] == COVERS

    (shown,) = server.http.get(f"/v1/creators/{CREATOR}").json()
    assert {f["url"] for f in shown["failed_urls"]} == failing
    page = server.http.get(f"/creators/{key}")  # the dashboard's creator page
    assert page.status_code == 200, page.text
    assert f"http_404 × {len(failing)}" in page.text
