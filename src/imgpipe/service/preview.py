"""What ``imgpipe run --dry-run`` shows: a staged CSV's creators, covers and row problems.

Nothing is fetched and no batch is recorded; the CSV is only read and validated::

    >>> from imgpipe.domain.manifest import CreatorJob, CoverRef, RowProblem
    >>> job = CreatorJob("Zoë", "Zoë", (CoverRef(2, "a.jpg"), CoverRef(3, "b.jpg")))
    >>> p = CsvPreview.of(StagedCounts(3, 0), [job], [RowProblem(4, "url", "missing_url")])
    >>> p.to_dict()["creators"], p.to_dict()["problem_count"]
    ([{'creator': 'Zoë', 'key': 'Zoë', 'covers': 2}], 1)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from imgpipe.service.planning import MAX_ROW_PROBLEMS

if TYPE_CHECKING:
    from imgpipe.domain.manifest import CreatorJob, RowProblem

__all__ = ["CreatorPreview", "CsvPreview", "StagedCounts"]


class StagedCounts(NamedTuple):
    rows_read: int
    duplicate_rows: int


class CreatorPreview(NamedTuple):
    creator: str  # as written in the CSV
    key: str  # where its collage would go: collages/by-creator/<key>/
    covers: int  # distinct usable cover URLs (before the per-collage cap)


@dataclass
class CsvPreview:
    """A CSV read and grouped, as a batch would start from it."""

    rows_read: int
    duplicate_rows: int
    creators: list[CreatorPreview]
    problems: list[RowProblem]  # the first MAX_ROW_PROBLEMS
    problem_count: int
    details: dict[str, Any] = field(default_factory=dict)  # source, encoding, columns

    @classmethod
    def of(
        cls, counts: StagedCounts, jobs: Iterable[CreatorJob], problems: Iterable[RowProblem]
    ) -> CsvPreview:
        kept: list[RowProblem] = []
        count = 0
        for problem in problems:
            count += 1
            if len(kept) < MAX_ROW_PROBLEMS:
                kept.append(problem)
        creators = [CreatorPreview(job.creator, job.key, len(job.covers)) for job in jobs]
        return cls(counts.rows_read, counts.duplicate_rows, creators, kept, count)

    @property
    def covers(self) -> int:
        return sum(creator.covers for creator in self.creators)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.details,
            "rows_read": self.rows_read,
            "duplicate_rows": self.duplicate_rows,
            "creator_count": len(self.creators),
            "cover_count": self.covers,
            "creators": [c._asdict() for c in self.creators],
            "problem_count": self.problem_count,
            "problems": [p.to_dict() for p in self.problems],
        }
