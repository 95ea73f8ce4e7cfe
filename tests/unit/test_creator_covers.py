"""Where a final record keeps its covers: in it while they fit, else in its document."""

from __future__ import annotations

import json

import pytest

from imgpipe.adapters.memory import InMemoryObjectStore, InMemoryStateStore
from imgpipe.domain.manifest import CreatorJob
from imgpipe.domain.records import BatchContext, CoverOutcome, CreatorRecord, CreatorStatus
from imgpipe.errors import StateError
from imgpipe.service.creator_covers import (
    COVERS_KEY_FIELD,
    ERROR_CHARS,
    METADATA_BUDGET_BYTES,
    record_covers,
    record_metadata,
)
from imgpipe.service.ledger import BatchLedger
from imgpipe.service.results import CreatorResult

DOCUMENT = "out/results/metadata/b1/Ann.json"


def result_with(url_chars: int, covers: int = 40, error: str | None = None) -> CreatorResult:
    result = CreatorResult("Ann", "Ann", CreatorStatus.COMPLETED, images_used=1, error=error)
    result.covers = [CoverOutcome(2, "https://x/ok.jpg", True, cell=0)]
    result.covers += [
        CoverOutcome(3 + i, f"https://x/{i}/" + "u" * url_chars, False, "http_404", "HTTP 404")
        for i in range(covers)
    ]
    result.covers.append(CoverOutcome(99, "https://x/dup.jpg", False, "duplicate"))
    return result


def size(metadata: dict[str, object]) -> int:
    return len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())


def test_covers_stay_in_the_record_up_to_the_budget_and_move_out_past_it() -> None:
    fits = result_with(url_chars=METADATA_BUDGET_BYTES // 40 - 300)
    kept = record_metadata(fits, DOCUMENT)
    assert size(kept) <= METADATA_BUDGET_BYTES
    assert len(kept["covers"]) == 42 and COVERS_KEY_FIELD not in kept

    over = result_with(url_chars=METADATA_BUDGET_BYTES // 40)
    moved = record_metadata(over, DOCUMENT)
    assert size(over.to_dict()) > METADATA_BUDGET_BYTES
    assert "covers" not in moved and moved[COVERS_KEY_FIELD] == DOCUMENT
    assert moved["cover_counts"] == {"total": 42, "failed": 40, "duplicates": 1}
    assert moved["failures_by_reason"] == {"http_404": 40}
    assert moved["display_name"] == "Ann" and moved["images_used"] == 1
    assert size(moved) < 2_000


def test_a_moved_records_error_is_cut_and_the_document_keeps_it_whole() -> None:
    error = "render failed: " + "e" * 10_000
    moved = record_metadata(result_with(url_chars=10_000, error=error), DOCUMENT)
    assert moved["error"] == error[:ERROR_CHARS] + "…"
    assert record_metadata(result_with(url_chars=10, error=error), DOCUMENT)["error"] == error


def test_covers_are_read_back_from_the_document_or_fail_naming_it() -> None:
    store = InMemoryObjectStore()
    result = result_with(url_chars=10_000)
    record = CreatorRecord("Ann", "2026", "b1", CreatorStatus.COMPLETED)
    record.metadata = record_metadata(result, DOCUMENT)
    with pytest.raises(StateError, match=r"creator 'Ann'.*'out/results/metadata/b1/Ann.json'"):
        record_covers(record, store)
    store.put(DOCUMENT, json.dumps(result.to_dict()).encode())
    assert record_covers(record, store) == [c.to_dict() for c in result.covers]
    inline = CreatorRecord("Bo", "2026", "b1", CreatorStatus.COMPLETED)
    inline.metadata = record_metadata(result_with(url_chars=10), DOCUMENT)
    assert record_covers(inline, store) == inline.metadata["covers"]


def test_a_replayed_creator_gets_its_covers_back_from_the_document() -> None:
    state, outputs = InMemoryStateStore(), InMemoryObjectStore()
    ledger = BatchLedger(state, outputs, InMemoryObjectStore())
    context = BatchContext("b1", "2026-01-02T03:04:05+00:00", 0)
    result = result_with(url_chars=10_000)
    job = CreatorJob("Ann", "Ann", ())
    assert ledger.claim(job, context, "me") is None  # ours to work on
    outputs.put(DOCUMENT, json.dumps(result.to_dict()).encode())
    ledger.finish(result, context, "me", document_key=DOCUMENT)
    stored = state.get_creator("Ann", "b1")
    assert stored is not None and COVERS_KEY_FIELD in stored.metadata
    replayed = ledger.claim(job, context, "a redelivery")  # final already: its result
    assert replayed is not None and replayed.replayed
    assert replayed.covers == result.covers
    assert [c.url for c in replayed.failures] == [c.url for c in result.failures]
