"""CSV manifest -> per-creator jobs. Pure: takes a text stream, returns data.

The CSV is untrusted and comes from many tools (MySQL exports, scrapers, BI
tools), so the parser is forgiving about form and strict about content:

* the delimiter is found among ``,``, ``;`` and tab from the header line;
* the creator and URL columns are found by alias (``CREATOR_ALIASES``,
  ``URL_ALIASES``, first alias present wins) or named explicitly;
* a bad row becomes a :class:`RowProblem` naming its physical line and the rest
  of the file is still read; only an unusable file raises ``ManifestError``.

Finding the columns and checking a row's cells are the rules a SQL result obeys
too, so they live in :mod:`imgpipe.domain.row_rules` (re-exported here); this
module reads a CSV (header, delimiter, records) and groups its rows by creator.

Example::

    >>> m = parse_manifest(["creator,url\\n", "Ann,https://x/1.jpg\\n", "Ann,ftp://x/2\\n"])
    >>> [(job.creator, [c.url for c in job.covers]) for job in m.jobs]
    [('Ann', ['https://x/1.jpg'])]
    >>> m.problems[0]
    RowProblem(line=3, field='url', reason='unsupported_scheme', value='ftp://x/2')

``parse_manifest`` holds every creator's covers; a file too large for that is
read record by record with :func:`read_records` (what the SQLite staging in
:mod:`imgpipe.adapters.sqlite_staging` does), with the same rules and the same
creator keys (:func:`~imgpipe.domain.keys.unique_key`).
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from imgpipe.domain.keys import unique_key
from imgpipe.domain.row_rules import (
    CREATOR_ALIASES,
    DEFAULT_SCHEMES,
    URL_ALIASES,
    ManifestRow,
    RowProblem,
    locate_columns,
    match_column,
    row_item,
)
from imgpipe.errors import ManifestError

__all__ = [
    "CREATOR_ALIASES",
    "DEFAULT_SCHEMES",
    "URL_ALIASES",
    "CoverRef",
    "CoverSet",
    "CreatorJob",
    "Manifest",
    "ManifestRecords",
    "ManifestRow",
    "RowProblem",
    "check_cap",
    "locate_columns",
    "parse_manifest",
    "read_records",
    "row_item",
]

DELIMITERS = (",", ";", "\t")


@dataclass(frozen=True)
class CoverRef:
    line: int  # 1-based physical line where the CSV record starts (header is line 1)
    url: str


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


class ManifestRecords:
    """A CSV whose header has been read: its columns, then its records, read once.

    Iterating yields one item per non-blank record in file order: a
    :class:`ManifestRow` for a record naming a creator, a :class:`RowProblem`
    for one that names none (``missing_creator``) or cannot be read
    (``unreadable_row``). Blank records are only counted in ``blank_rows``.
    Nothing is grouped or kept, so memory does not grow with the file.

    >>> records = read_records(["creator;url", "Ann;a.jpg", ";b.jpg", "", "Bo;ftp://x"])
    >>> (records.creator_column, records.url_column, records.delimiter)
    ('creator', 'url', ';')
    >>> items = list(records)
    >>> items[0]
    ManifestRow(line=2, creator='Ann', url='a.jpg', problem=None)
    >>> items[1]
    RowProblem(line=3, field='creator', reason='missing_creator', value='')
    >>> (items[2].creator, items[2].problem.reason, records.blank_rows)
    ('Bo', 'unsupported_scheme', 1)
    """

    def __init__(
        self,
        stream: TextIO | Iterable[str],
        *,
        creator_column: str | None = None,
        url_column: str | None = None,
        schemes: frozenset[str] = DEFAULT_SCHEMES,
    ) -> None:
        lines, header_line, header_at = _peek_header(iter(stream))
        if header_line is None:
            raise ManifestError("empty CSV: no header row")
        self.delimiter = _pick_delimiter(header_line, header_at, creator_column, url_column)
        reader = csv.reader(lines, delimiter=self.delimiter, skipinitialspace=True)
        header = _read_header(reader)
        creator_at, url_at = locate_columns(header, creator_column, url_column)
        self.creator_column = header[creator_at].strip()
        self.url_column = header[url_at].strip()
        self.blank_rows = 0  # empty lines between records; they are not rows
        # One generator, made here: a second loop continues the stream, never restarts it.
        self._records = self._read(reader, creator_at, url_at, schemes)

    def __iter__(self) -> Iterator[ManifestRow | RowProblem]:
        return self._records

    def _read(
        self,
        reader: Any,  # the csv module's reader type is not public
        creator_at: int,
        url_at: int,
        schemes: frozenset[str],
    ) -> Iterator[ManifestRow | RowProblem]:
        need = max(creator_at, url_at) + 1
        end = reader.line_num
        while True:
            start = end + 1  # csv.reader.line_num is where a record ends; it starts after the last
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:  # a text stream cannot resume after one
                raise _not_text(exc, end) from exc
            except csv.Error as exc:  # an oversized field: lose the record, not the batch
                if reader.line_num < start:
                    return
                end = reader.line_num
                yield RowProblem(start, "row", "unreadable_row", str(exc))
                continue
            end = reader.line_num
            if not any(map(str.strip, row)):
                self.blank_rows += 1
                continue
            if len(row) < need:
                row += [""] * (need - len(row))
            yield row_item(start, row[creator_at], row[url_at], schemes)


def read_records(
    stream: TextIO | Iterable[str],
    *,
    creator_column: str | None = None,
    url_column: str | None = None,
    schemes: frozenset[str] = DEFAULT_SCHEMES,
) -> ManifestRecords:
    """The header of ``stream`` read now, its records as they are iterated (example above).

    Same arguments and ``ManifestError`` as :func:`parse_manifest`, which is built on it.
    """
    return ManifestRecords(
        stream, creator_column=creator_column, url_column=url_column, schemes=schemes
    )


@dataclass
class CoverSet:
    """One creator's distinct covers in CSV order, at most ``cap`` of them.

    The rule that :func:`parse_manifest` and the SQLite staging share: a URL
    already kept is a duplicate row; a new URL once ``cap`` are kept is a capped
    row (every time it comes, since it was never kept).

    >>> covers = CoverSet(cap=1)
    >>> for line, url in [(2, "a"), (3, "a"), (4, "b"), (5, "b")]:
    ...     covers.add(line, url)
    >>> (covers.covers, covers.duplicate_rows, covers.capped_rows)
    ([CoverRef(line=2, url='a')], 1, 2)
    """

    cap: int | None = None
    covers: list[CoverRef] = field(default_factory=list)
    duplicate_rows: int = 0
    capped_rows: int = 0
    _seen: set[str] = field(default_factory=set, repr=False)

    def add(self, line: int, url: str) -> None:
        if url in self._seen:
            self.duplicate_rows += 1
        elif self.cap is not None and len(self.covers) >= self.cap:
            self.capped_rows += 1
        else:
            self._seen.add(url)
            self.covers.append(CoverRef(line, url))


def parse_manifest(
    stream: TextIO | Iterable[str],
    *,
    creator_column: str | None = None,
    url_column: str | None = None,
    schemes: frozenset[str] = DEFAULT_SCHEMES,
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
    check_cap(max_covers_per_creator)
    records = read_records(
        stream, creator_column=creator_column, url_column=url_column, schemes=schemes
    )
    manifest = Manifest([], [], records.creator_column, records.url_column)
    manifest.delimiter = records.delimiter
    groups: dict[str, tuple[str, CoverSet]] = {}  # display name -> (key, covers)
    taken: set[str] = set()
    for item in records:
        manifest.rows_read += 1
        if isinstance(item, RowProblem):
            manifest.problems.append(item)
            continue
        group = groups.get(item.creator)
        if group is None:
            key = unique_key(item.creator, taken)
            group = groups[item.creator] = (key, CoverSet(max_covers_per_creator))
        if item.problem is not None:
            manifest.problems.append(item.problem)
        else:
            group[1].add(item.line, item.url)
    manifest.blank_rows = records.blank_rows

    # A creator all of whose rows were bad has nothing to render; its rows are problems.
    manifest.jobs = [
        CreatorJob(name, key, tuple(covers.covers))
        for name, (key, covers) in groups.items()
        if covers.covers
    ]
    manifest.duplicate_rows = sum(covers.duplicate_rows for _, covers in groups.values())
    manifest.capped_rows = sum(covers.capped_rows for _, covers in groups.values())
    return manifest


def check_cap(max_covers_per_creator: int | None) -> None:
    """Refuse a cap below one (shared with the staging, which caps the same way)."""
    if max_covers_per_creator is not None and max_covers_per_creator < 1:
        raise ValueError(f"max_covers_per_creator must be >= 1, got {max_covers_per_creator}")


def _peek_header(lines: Iterator[str]) -> tuple[Iterator[str], str | None, int]:
    """The first non-blank line (BOM removed), its line number, and an iterator that
    still yields everything."""
    taken: list[str] = []
    header: str | None = None
    try:
        for line in lines:
            if not taken:
                line = line.removeprefix("\ufeff")  # in case the caller did not use utf-8-sig
            taken.append(line)
            if line.strip():
                header = line
                break
    except UnicodeDecodeError as exc:
        raise _not_text(exc, len(taken)) from exc
    return itertools.chain(taken, lines), header, len(taken)


def _pick_delimiter(
    line: str, line_number: int, creator_column: str | None, url_column: str | None
) -> str:
    """The delimiter under which the header line names the most roles, then has most cells.

    Scoring by known column names beats counting characters: a header such as
    ``creator;url,extra`` is unambiguous this way. Ties keep the comma. A header
    the csv module refuses (a cell over its 131,072-character field limit) is a
    ManifestError naming ``line_number``:

    >>> _pick_delimiter("creator;url,extra", 1, None, None)
    ';'
    >>> _pick_delimiter("creator," + "x" * 200_000, 3, None, None)
    Traceback (most recent call last):
    ...
    imgpipe.errors.ManifestError: line 3: unreadable CSV header: field larger than ...
    """

    def score(delimiter: str) -> tuple[int, int]:
        cells = next(csv.reader([line], delimiter=delimiter, skipinitialspace=True), [])
        roles = sum(
            match_column(cells, aliases, explicit) is not None
            for aliases, explicit in ((CREATOR_ALIASES, creator_column), (URL_ALIASES, url_column))
        )
        return roles, len(cells)

    try:
        return max(DELIMITERS, key=score)  # max() keeps the first of equal scores
    except csv.Error as exc:
        raise ManifestError(f"line {line_number}: unreadable CSV header: {exc}") from exc


def _read_header(reader: Any) -> list[str]:  # the csv module's reader type is not public
    try:
        for row in reader:
            if any(cell.strip() for cell in row):
                cells: list[str] = row
                cells[0] = cells[0].removeprefix("\ufeff")
                return cells
    except csv.Error as exc:
        raise ManifestError(f"line {reader.line_num}: unreadable CSV header: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise _not_text(exc, reader.line_num) from exc
    raise ManifestError("empty CSV: no header row")


def _not_text(exc: UnicodeDecodeError, lines_read: int) -> ManifestError:
    # A text stream decodes ahead of the line being read (8 KiB at a time), so the
    # bad byte is somewhere after the last line read, not necessarily on the next.
    return ManifestError(f"not UTF-8 text ({exc.reason}) at or after line {lines_read + 1}")
