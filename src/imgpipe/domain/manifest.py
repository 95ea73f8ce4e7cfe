"""CSV manifest -> per-creator jobs. Pure: takes a text stream, returns data.

The CSV is untrusted and comes from many tools (MySQL exports, scrapers, BI
tools), so the parser is forgiving about form and strict about content:

* the delimiter is found among ``,``, ``;`` and tab from the header line;
* the creator and URL columns are found by alias (``CREATOR_ALIASES``,
  ``URL_ALIASES``, first alias present wins) or named explicitly;
* a bad row becomes a :class:`RowProblem` naming its physical line and the rest
  of the file is still read; only an unusable file raises ``ManifestError``.

Example::

    >>> m = parse_manifest(["creator,url\\n", "Ann,https://x/1.jpg\\n", "Ann,ftp://x/2\\n"])
    >>> [(job.creator, [c.url for c in job.covers]) for job in m.jobs]
    [('Ann', ['https://x/1.jpg'])]
    >>> m.problems[0]
    RowProblem(line=3, field='url', reason='unsupported_scheme', value='ftp://x/2')
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO
from urllib.parse import urlsplit

from imgpipe.domain.keys import creator_key
from imgpipe.errors import ManifestError

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
)  # fmt: skip
URL_ALIASES: tuple[str, ...] = (
    "url", "cover_url", "cover", "image_url", "covers.default", "videoMeta.coverUrl",
)  # fmt: skip

DELIMITERS = (",", ";", "\t")
# RFC 3986 scheme; one letter is a Windows drive ("C:\covers\a.jpg"), not a scheme.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


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
    delimiter: str = ","
    blank_rows: int = 0  # empty lines between records; not counted in rows_read
    capped_rows: int = 0  # distinct URLs dropped by max_covers_per_creator


@dataclass
class _Group:
    key: str
    covers: list[CoverRef] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


def parse_manifest(
    stream: TextIO | Iterable[str],
    *,
    creator_column: str | None = None,
    url_column: str | None = None,
    schemes: frozenset[str] = frozenset({"http", "https", "file", ""}),
    max_covers_per_creator: int | None = None,
) -> Manifest:
    """Group a CSV's rows into one :class:`CreatorJob` per creator.

    ``stream`` is a text file opened with ``encoding="utf-8-sig", newline=""`` or
    any iterable of lines. It is read once, record by record; only the grouped
    covers are held. ``schemes`` lists the accepted URL schemes (``""`` is a bare
    path). Raises ``ManifestError`` for an empty file or a missing column.

    >>> m = parse_manifest(["author;image_url\\n", "Bo;a.jpg\\n", "Bo;a.jpg\\n"])
    >>> (m.delimiter, m.jobs[0].key, m.rows_read, m.duplicate_rows)
    (';', 'Bo', 2, 1)
    """
    if max_covers_per_creator is not None and max_covers_per_creator < 1:
        raise ValueError(f"max_covers_per_creator must be >= 1, got {max_covers_per_creator}")
    lines, header_line = _peek_header(iter(stream))
    if header_line is None:
        raise ManifestError("empty CSV: no header row")
    delimiter = _pick_delimiter(header_line, creator_column, url_column)
    reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=True)
    header = _read_header(reader)
    end = reader.line_num
    creator_at = _find_column(header, "creator", CREATOR_ALIASES, creator_column)
    url_at = _find_column(header, "url", URL_ALIASES, url_column)
    if creator_at == url_at:
        raise ManifestError(f"creator and URL columns are the same column {header[url_at]!r}")

    manifest = Manifest([], [], header[creator_at].strip(), header[url_at].strip())
    manifest.delimiter = delimiter
    groups: dict[str, _Group] = {}
    owners: dict[str, str] = {}  # casefolded key -> display name, to keep names apart
    need = max(creator_at, url_at) + 1
    while True:
        start = end + 1  # csv.reader.line_num is where a record ends; it starts after the last
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:  # NUL byte, oversized field: lose the record, not the batch
            if reader.line_num < start:
                break
            end = reader.line_num
            manifest.rows_read += 1
            manifest.problems.append(RowProblem(start, "row", "unreadable_row", str(exc)))
            continue
        end = reader.line_num
        if not any(cell.strip() for cell in row):
            manifest.blank_rows += 1
            continue
        manifest.rows_read += 1
        row += [""] * (need - len(row))
        creator, url = row[creator_at].strip(), row[url_at].strip()
        if not creator:
            manifest.problems.append(RowProblem(start, "creator", "missing_creator"))
            continue
        group = groups.get(creator)
        if group is None:
            group = groups[creator] = _Group(_unique_key(creator, owners))
        problem = _check_url(url, schemes)
        if problem is not None:
            manifest.problems.append(RowProblem(start, "url", problem, url))
        elif url in group.seen:
            manifest.duplicate_rows += 1
        elif max_covers_per_creator is not None and len(group.covers) >= max_covers_per_creator:
            manifest.capped_rows += 1
        else:
            group.seen.add(url)
            group.covers.append(CoverRef(start, url))

    # A creator all of whose rows were bad has nothing to render; its rows are problems.
    manifest.jobs = [
        CreatorJob(name, group.key, tuple(group.covers))
        for name, group in groups.items()
        if group.covers
    ]
    return manifest


def _peek_header(lines: Iterator[str]) -> tuple[Iterator[str], str | None]:
    """The first non-blank line (BOM removed) and an iterator that still yields everything."""
    taken: list[str] = []
    header: str | None = None
    for line in lines:
        if not taken:
            line = line.removeprefix("\ufeff")  # in case the caller did not use utf-8-sig
        taken.append(line)
        if line.strip():
            header = line
            break
    return itertools.chain(taken, lines), header


def _pick_delimiter(line: str, creator_column: str | None, url_column: str | None) -> str:
    """The delimiter under which the header line names the most roles, then has most cells.

    Scoring by known column names beats counting characters: a header such as
    ``creator;url,extra`` is unambiguous this way. Ties keep the comma.
    """

    def score(delimiter: str) -> tuple[int, int]:
        cells = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])
        roles = sum(
            _match(cells, aliases, explicit) is not None
            for aliases, explicit in ((CREATOR_ALIASES, creator_column), (URL_ALIASES, url_column))
        )
        return roles, len(cells)

    return max(DELIMITERS, key=score)  # max() keeps the first of equal scores


def _read_header(reader: Iterator[list[str]]) -> list[str]:
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                row[0] = row[0].removeprefix("\ufeff")
                return row
    except csv.Error as exc:
        raise ManifestError(f"unreadable CSV header: {exc}") from exc
    raise ManifestError("empty CSV: no header row")


def _match(header: list[str], aliases: tuple[str, ...], explicit: str | None) -> int | None:
    names = [cell.strip().casefold() for cell in header]
    for wanted in (explicit,) if explicit is not None else aliases:
        wanted = wanted.strip().casefold()
        if wanted in names:
            return names.index(wanted)
    return None


def _find_column(
    header: list[str], role: str, aliases: tuple[str, ...], explicit: str | None
) -> int:
    found = _match(header, aliases, explicit)
    if found is not None:
        return found
    cells = [cell.strip() for cell in header]
    if explicit is not None:
        raise ManifestError(
            f"no {role} column {explicit!r} (--{role}-column): header has {cells!r}"
        )
    raise ManifestError(
        f"no {role} column: header has {cells!r}; "
        f"expected one of {', '.join(aliases)} or --{role}-column"
    )


def _check_url(url: str, schemes: frozenset[str]) -> str | None:
    """The reason a URL cannot be used, or None."""
    if not url:
        return "missing_url"
    match = _SCHEME.match(url)
    scheme = match.group(1).lower() if match else ""
    if scheme not in schemes:
        return "unsupported_scheme"
    if scheme in ("http", "https"):
        try:
            parts = urlsplit(url)
            _ = parts.port  # raises ValueError for a non-numeric or out-of-range port
        except ValueError:
            return "invalid_url"
        if not parts.hostname:
            return "invalid_url"
    return None


def _unique_key(name: str, owners: dict[str, str]) -> str:
    """creator_key(name), made longer when it is taken, ignoring letter case.

    Case counts as taken because the local folder may live on a case-insensitive
    filesystem (macOS, Windows), where ``Ann.json`` and ``ann.json`` are one file.
    ``owners`` maps casefolded keys to display names.
    """
    key = creator_key(name)
    if key.casefold() in owners:
        key = creator_key(name, full_hash=True)
    base, n = key, 1
    while key.casefold() in owners:  # a full SHA-256 clash; kept only so the loop is total
        n += 1
        key = f"{base}-{n}"
    owners[key.casefold()] = name
    return key
