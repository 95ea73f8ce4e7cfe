"""CSV manifest -> per-creator jobs. Pure: takes a text stream, returns data.

STUB: to be implemented (see the contract in the docstrings).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = [
    "CREATOR_ALIASES",
    "URL_ALIASES",
    "CoverRef",
    "CreatorJob",
    "Manifest",
    "RowProblem",
    "parse_manifest",
]

CREATOR_ALIASES: tuple[str, ...] = (
    "creator", "creator_name", "username", "author", "authorMeta.name", "unique_id",
)
URL_ALIASES: tuple[str, ...] = (
    "url", "cover_url", "cover", "image_url", "covers.default", "videoMeta.coverUrl",
)


@dataclass(frozen=True)
class CoverRef:
    line: int  # 1-based physical line where the CSV record starts (header is line 1)
    url: str


@dataclass(frozen=True)
class RowProblem:
    line: int
    field: str  # "creator", "url" or "row"
    reason: str  # "missing_creator", "missing_url", "unsupported_scheme", "invalid_url", ...
    value: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason, "value": self.value}


@dataclass(frozen=True)
class CreatorJob:
    creator: str  # display name as written in the CSV (trimmed)
    key: str  # sanitized, collision-free key (imgpipe.domain.keys.creator_key)
    covers: tuple[CoverRef, ...]  # distinct URLs in CSV order


@dataclass
class Manifest:
    jobs: list[CreatorJob]
    problems: list[RowProblem]
    creator_column: str
    url_column: str
    rows_read: int = 0
    duplicate_rows: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def parse_manifest(
    stream: TextIO | Iterable[str],
    *,
    creator_column: str | None = None,
    url_column: str | None = None,
    schemes: frozenset[str] = frozenset({"http", "https", "file", ""}),
    max_covers_per_creator: int | None = None,
) -> Manifest:
    raise NotImplementedError
