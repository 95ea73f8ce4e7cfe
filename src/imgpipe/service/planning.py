"""Pure helpers of planning a batch: ids, the settings snapshot, identity, CSV statistics.

A batch's identity is what makes two runs "the same run": the CSV's content and
the settings that shape the output (those in the collage fingerprint), never
concurrency or timeouts. A rerun with the same identity continues an unfinished
batch instead of starting over.

    >>> from imgpipe.settings import BatchSpec
    >>> a = batch_identity("ab" * 32, BatchSpec())
    >>> a == batch_identity("ab" * 32, BatchSpec.of(max_workers=2, timeout=5))
    True
    >>> a == batch_identity("ab" * 32, BatchSpec.of(rows=3))
    False
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from imgpipe.service.results import PlanStats

if TYPE_CHECKING:
    from imgpipe.domain.manifest import RowProblem
    from imgpipe.settings import BatchSpec

__all__ = [
    "MAX_ROW_PROBLEMS",
    "batch_identity",
    "new_batch_id",
    "plan_marker_key",
    "plan_stats",
    "settings_snapshot",
]

# What shapes a batch's output; a change of any of these is a different batch.
OUTPUT_SETTINGS = (
    "rows", "cols", "cell_size", "quality", "max_images", "min_images", "min_image_size",
    "deduplicate", "near_duplicates", "force", "creator_column", "url_column",
)  # fmt: skip
SNAPSHOT_SETTINGS = (
    "rows", "cols", "cell_size", "quality", "crop", "max_images", "min_images", "concurrency",
    "max_workers", "timeout", "retries", "force",
)  # fmt: skip


_PUBLIC = {"cell_size": "cell"}  # --cell, and the batch records written before


def new_batch_id(now: datetime) -> str:
    """Sortable and unique: ``20261123-101500-1a2b3c4d``."""
    return f"{now:%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:8]}"


def settings_snapshot(options: BatchSpec) -> dict[str, Any]:
    """The settings a batch record shows, under their public names (``cell``)."""
    flat = options.flat()
    return {_PUBLIC.get(name, name): flat[name] for name in SNAPSHOT_SETTINGS}


def batch_identity(content_sha256: str, options: BatchSpec, *, source: str = "") -> str:
    """The input and the output-shaping settings, as one hex digest."""
    flat = options.flat()
    shaping = {name: flat[name] for name in OUTPUT_SETTINGS}
    if options.encoding is not None:  # named: other names, another batch (absent: as before)
        shaping["encoding"] = options.encoding
    if options.render.crop != "center":  # the same way: centre-crop identities stay as they were
        shaping["crop"] = options.render.crop
    text = json.dumps([content_sha256, source, shaping], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def plan_marker_key(identity: str) -> str:
    """Where the work store remembers which batch an identity was planned as."""
    return f"processing/plans/{identity}.json"


# Row problems kept in a batch's plan and summary; the count is always exact.
MAX_ROW_PROBLEMS = 10_000


def plan_stats(rows_read: int, duplicate_rows: int, problems: Iterable[RowProblem]) -> PlanStats:
    """What the summary keeps of the CSV: counts, and the first MAX_ROW_PROBLEMS problems."""
    kept: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    for problem in problems:
        reasons[problem.reason] += 1
        if len(kept) < MAX_ROW_PROBLEMS:
            kept.append(problem.to_dict())
    return PlanStats(
        rows_read,
        duplicate_rows,
        kept,
        row_problem_count=sum(reasons.values()),
        row_problem_reasons=dict(reasons),
    )
