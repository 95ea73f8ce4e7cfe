"""The completion notice's digest: what a receiver acts on, a few kilobytes at most.

Built from the summary its writer just wrote, or from that summary read back (a
notice whose writer died before sending it): the same bytes either way.

The digest stays small whatever the batch (failure reasons are capped), far below
SNS's 256 KB:

    >>> digest = {"batch_id": "b1", "failure_reasons": {"http_404": 3}}
    >>> len(encode_digest(digest)) < MAX_DIGEST_BYTES
    True
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from imgpipe.service.summary import BatchSummary


__all__ = [
    "DIGEST_TYPE",
    "MAX_DIGEST_BYTES",
    "MAX_REASONS",
    "build_digest",
    "digest_of_stored",
    "encode_digest",
]

DIGEST_TYPE = "imgpipe.batch.finished"
MAX_REASONS = 20  # the most frequent failure reasons; the rest are counted together
MAX_REASON_CHARS = 80
MAX_SOURCE_CHARS = 1024  # an S3 key's length
MAX_DIGEST_BYTES = 16 * 1024  # far under SNS's 256 KB whatever goes in
_COUNTS = ("creators", "completed", "skipped_unchanged", "failed", "images_used", "images_failed")


def build_digest(summary: BatchSummary, summary_url: str | None = None) -> dict[str, Any]:
    """The notice's JSON: what a receiver needs to react, with the summary for the rest."""
    digest = _digest(
        {
            "batch_id": summary.batch_id,
            "status": summary.status.value,
            "source": summary.source,
            "started_at": summary.started_at,
            "finished_at": summary.finished_at,
            "duration_s": summary.duration_s,
            "totals": summary.totals,
            "failures_by_reason": summary.failures_by_reason,
            "summary_key": summary.summary_key,
        }
    )
    if summary_url:
        digest["summary_url"] = summary_url
    return digest


def digest_of_stored(data: Any) -> dict[str, Any]:
    """The digest of a summary read back as JSON: the one its writer would have sent.

    ValueError when ``data`` is not a summary (a takeover then leaves the claim be).
    """
    if not isinstance(data, dict):
        raise ValueError("a summary is a JSON object")
    try:
        return _digest(data)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ValueError(f"not a batch summary: {exc!r}") from exc


def _digest(summary: Mapping[str, Any]) -> dict[str, Any]:
    """One builder for both: a summary just written and one read back."""
    failures: Mapping[str, int] = summary["failures_by_reason"]
    reasons = sorted(failures.items(), key=lambda item: (-item[1], item[0]))
    kept = reasons[:MAX_REASONS]
    totals: Mapping[str, Any] = summary["totals"]
    return {
        "type": DIGEST_TYPE,
        "batch_id": summary["batch_id"],
        "idempotency_key": summary["batch_id"],
        "status": summary["status"],
        "source": summary["source"][:MAX_SOURCE_CHARS],
        "started_at": summary["started_at"],
        "finished_at": summary["finished_at"],
        "duration_s": summary["duration_s"],
        "counts": {name: int(totals.get(name, 0)) for name in _COUNTS},
        "failure_reasons": {reason[:MAX_REASON_CHARS]: count for reason, count in kept},
        "failure_reasons_omitted": sum(count for _, count in reasons[MAX_REASONS:]),
        "summary_key": summary["summary_key"],
    }


def encode_digest(digest: dict[str, Any]) -> bytes:
    """Compact UTF-8 JSON: the exact bytes that are signed and sent."""
    body = json.dumps(digest, ensure_ascii=False, separators=(",", ":")).encode()
    if len(body) > MAX_DIGEST_BYTES:  # cannot happen with the caps above; never send it
        raise ValueError(f"notice digest of {len(body)} bytes exceeds {MAX_DIGEST_BYTES}")
    return body
