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

``parse_manifest`` holds every creator's covers; a file too large for that is
read record by record with :func:`read_records` (what the SQLite staging in
:mod:`imgpipe.adapters.sqlite_staging` does), with the same rules and the same
creator keys (:func:`~imgpipe.domain.keys.unique_key`).
"""

from __future__ import annotations

import csv
import itertools
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TextIO
from urllib.parse import urlsplit

from imgpipe.domain.keys import unique_key
from imgpipe.errors import ColumnError, ManifestError

__all__ = [
    "CREATOR_ALIASES",
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

CREATOR_ALIASES: tuple[str, ...] = (
    "creator", "creator_name", "username", "author", "authorMeta.name", "unique_id",
)  # fmt: skip
URL_ALIASES: tuple[str, ...] = (
    "url", "cover_url", "cover", "image_url", "covers.default", "videoMeta.coverUrl",
)  # fmt: skip

DELIMITERS = (",", ";", "\t")
DEFAULT_SCHEMES = frozenset({"http", "https", "file", ""})
# RFC 3986 scheme; one letter is a Windows drive ("C:\covers\a.jpg"), not a scheme.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")
# An http(s) URL whose host is plain ASCII letters, digits, dots and dashes needs
# no urlsplit to be known valid: this match settles it in 0.4 us instead of 7 us
# (a 1,000,000-row export spent 7 s in urlsplit); anything else goes the long way.
_PLAIN_HTTP = re.compile(r"((?i:https?))://[A-Za-z0-9.-]+(?=[/?#]|\Z)", re.ASCII)


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


class ManifestRow(NamedTuple):
    """One CSV record that names a creator.

    ``problem`` is None when ``url`` is usable. A record whose URL is unusable is
    still a row rather than a bare :class:`RowProblem`: its creator takes a key
    and a place in the order of first appearance all the same (a creator whose
    rows are all bad gets no job, but a later ``ann`` still yields to ``Ann``).
    """

    line: int  # 1-based physical line where the record starts
    creator: str  # trimmed display name, never empty
    url: str  # trimmed
    problem: RowProblem | None = None


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


def locate_columns(
    header: list[str], creator_column: str | None = None, url_column: str | None = None
) -> tuple[int, int]:
    """The indexes of the creator and URL columns in ``header``, found by alias or by name.

    A missing column is a ColumnError naming the role and the header; one column
    for both roles is a ManifestError. Shared by CSV files and SQL results.

    >>> locate_columns(["id", "cover_url", "creator_name"])
    (2, 1)
    """
    creator_at = _find_column(header, "creator", CREATOR_ALIASES, creator_column)
    url_at = _find_column(header, "url", URL_ALIASES, url_column)
    if creator_at == url_at:
        raise ManifestError(f"creator and URL columns are the same column {header[url_at]!r}")
    return creator_at, url_at


def row_item(
    line: int, creator: str, url: str, schemes: frozenset[str] = DEFAULT_SCHEMES
) -> ManifestRow | RowProblem:
    """One record's creator and URL cells, checked: the row validation of every source.

    >>> row_item(7, "  ", "a.jpg")
    RowProblem(line=7, field='creator', reason='missing_creator', value='')
    >>> row_item(8, " Ann ", "ftp://x").problem.reason
    'unsupported_scheme'
    """
    creator, url = creator.strip(), url.strip()
    if not creator:
        return RowProblem(line, "creator", "missing_creator")
    reason = _check_url(url, schemes)
    problem = None if reason is None else RowProblem(line, "url", reason, url)
    return ManifestRow(line, creator, url, problem)


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
            _match(cells, aliases, explicit) is not None
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


def _shown(cells: list[str], limit: int = 200) -> str:
    """The header cells for an error message, cut so a huge header cannot flood it."""
    text = repr(cells)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(cells)} cells)"


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
    cells = _shown([cell.strip() for cell in header])
    if explicit is not None:
        raise ColumnError(f"no {role} column {explicit!r}: header has {cells}", role)
    raise ColumnError(
        f"no {role} column: header has {cells}; expected one of {', '.join(aliases)}", role
    )


def _check_url(url: str, schemes: frozenset[str]) -> str | None:
    """The reason a URL cannot be used, or None."""
    if not url:
        return "missing_url"
    plain = _PLAIN_HTTP.match(url)
    if plain is not None and plain.group(1).lower() in schemes:
        return None
    return _check_url_by_parsing(url, schemes)


def _check_url_by_parsing(url: str, schemes: frozenset[str]) -> str | None:
    """What _check_url says for any URL, fast path or not (tests hold them equal)."""
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
