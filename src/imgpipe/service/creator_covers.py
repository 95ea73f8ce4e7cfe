"""A creator's covers in its final record, or beside it when they would not fit.

A final record's metadata holds every cover outcome of its creator (URL, reason,
detail), up to ``images_per_collage x BACKFILL_FACTOR`` of them. URLs come from an
untrusted CSV, so that list has no size bound of its own, while a state store may
have one: DynamoDB refuses an item over 400 KB, and a refused final record would
leave its creator unfinished and its batch without a summary for ever. So when the
metadata would exceed :data:`METADATA_BUDGET_BYTES`, the record keeps its small
fields, the cover counts and the failure counts by reason, and points at the
creator's metadata document (written to the object store before the record, with
every cover in it) instead of holding the list. Readers that need the covers (the
summary's failed URLs, the API's creator pages) load them from there.

The rule lives here, above the backends, so every state store keeps records the
same way and a reader never needs to know which one wrote them.

Example::

    >>> from imgpipe.domain.records import CoverOutcome, CreatorStatus
    >>> from imgpipe.service.results import CreatorResult
    >>> result = CreatorResult("Ann", "Ann", CreatorStatus.FAILED, error="0 usable cover(s)")
    >>> result.covers = [CoverOutcome(2, "https://x/" + "a" * 300_000, False, "http_404")]
    >>> metadata = record_metadata(result, "results/metadata/b1/Ann.json")
    >>> "covers" in metadata, metadata[COVERS_KEY_FIELD], metadata["failures_by_reason"]
    (False, 'results/metadata/b1/Ann.json', {'http_404': 1})
    >>> "covers" in record_metadata(CreatorResult("Bo", "Bo", CreatorStatus.COMPLETED), "k")
    True
"""

from __future__ import annotations

import json
from collections import Counter
from typing import TYPE_CHECKING, Any

from imgpipe.errors import StateError, StorageError
from imgpipe.service.results import NOT_FAILURES

if TYPE_CHECKING:
    from imgpipe.domain.records import CreatorRecord
    from imgpipe.ports import ObjectStore
    from imgpipe.service.results import CreatorResult

__all__ = [
    "COVERS_KEY_FIELD",
    "METADATA_BUDGET_BYTES",
    "failed_covers",
    "load_covers",
    "record_covers",
    "record_metadata",
]

# DynamoDB's item limit is 400 KB for names and values together; the record's other
# attributes take well under 2 KB, and keeping a wide margin under the limit leaves
# room for fields added later without re-measuring. SQLite has no such limit, but a
# record is kept the same way on every backend.
METADATA_BUDGET_BYTES = 256 * 1024
# Where a record whose covers did not fit names the document that holds them.
COVERS_KEY_FIELD = "covers_key"
# A spilled record's error is cut to this (the full text stays in the document): an
# error quoting an exception about a huge URL must not push the record over again.
ERROR_CHARS = 2_000


def record_metadata(
    result: CreatorResult,
    document_key: str,
    *,
    fields: dict[str, Any] | None = None,
    size_bound: int | None = None,
) -> dict[str, Any]:
    """The metadata of ``result``'s final record: everything, covers included, when it
    fits :data:`METADATA_BUDGET_BYTES`; else the small fields and counts, and
    ``document_key``, the creator's metadata document, for the covers.

    ``fields`` is ``result.to_dict()`` when the caller made it already; ``size_bound``
    the encoded size of a document that holds all of the metadata (the creator's
    metadata document, compact JSON): within the budget, no second encoding is needed
    to know the metadata fits (a creator's 35 covers were encoded three times).
    """
    metadata = {"display_name": result.creator, **(result.to_dict() if fields is None else fields)}
    fits = size_bound is not None and size_bound <= METADATA_BUDGET_BYTES
    if fits or _json_size(metadata) <= METADATA_BUDGET_BYTES:
        return metadata
    failures = result.failures
    del metadata["covers"]
    if metadata.get("error") and len(metadata["error"]) > ERROR_CHARS:
        metadata["error"] = metadata["error"][:ERROR_CHARS] + "…"
    metadata[COVERS_KEY_FIELD] = document_key
    metadata["cover_counts"] = {
        "total": len(result.covers),
        "failed": len(failures),
        "duplicates": result.duplicates,
    }
    metadata["failures_by_reason"] = dict(Counter(c.reason or "unknown" for c in failures))
    return metadata


def record_covers(record: CreatorRecord, store: ObjectStore) -> list[dict[str, Any]]:
    """The cover outcomes of ``record``: from its metadata, or from the document it
    points at (read from ``store``, the outputs). A document that cannot be read is
    a StateError naming the creator and the key: the covers are never dropped."""
    key = record.metadata.get(COVERS_KEY_FIELD)
    if not key:
        covers: list[dict[str, Any]] = record.metadata.get("covers", [])
        return covers
    return load_covers(record.creator_name, str(key), store)


def load_covers(creator: str, key: str, store: ObjectStore) -> list[dict[str, Any]]:
    """The ``covers`` list of the metadata document ``key`` of ``creator``."""
    try:
        document = json.loads(store.get(key))
        covers = document["covers"]
    except (StorageError, ValueError, KeyError, TypeError) as exc:
        raise StateError(
            f"creator {creator!r}: its covers are kept in {key!r}, which cannot be read: {exc}"
        ) from exc
    if not isinstance(covers, list):
        raise StateError(f"creator {creator!r}: {key!r} holds no list of covers")
    return covers


def failed_covers(covers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The covers that failed (not those left out as duplicates or not tried)."""
    return [c for c in covers if not c.get("ok") and c.get("reason") not in NOT_FAILURES]


def _json_size(metadata: dict[str, Any]) -> int:
    # Spelled as the state stores spell it (compact, UTF-8), so the budget is in bytes
    # of what is written; a value that is not JSON fails later, at the store, by name.
    try:
        text = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"), default=str)
    except ValueError:
        return 0
    return len(text.encode())
