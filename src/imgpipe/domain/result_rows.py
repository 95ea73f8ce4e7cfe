"""Rows of a SQL query result -> manifest records, by the CSV's rules. Pure.

A result is column names and rows of values. Its creator and URL columns are
found by the CSV's aliases (:func:`~imgpipe.domain.row_rules.locate_columns`),
each row is checked as a CSV record is (:func:`~imgpipe.domain.row_rules.row_item`),
and a record's ``line`` is its **result row number** (the first row returned is
row 1), so a problem reads "result row 17: missing_creator". Values that are not
text are read as a CSV cell would hold them: NULL is empty, numbers are written
out, bytes are UTF-8 (or a ``not_utf8`` problem for that row alone).

:class:`ResultRecords` is what the SQLite staging reads, like
:class:`~imgpipe.domain.manifest.ManifestRecords`; nothing is kept, so memory
does not grow with the result. As it goes it hashes the two cells it reads of
every row: the digest of the rows streamed, which identifies the batch (a rerun
of the same query over the same rows continues it).

    >>> records = result_records(
    ...     ["id", "creator_name", "cover_url"],
    ...     [(1, "Ann", "https://x/a.jpg"), (2, None, "b.jpg"), (3, "Bo", b"ftp://c")],
    ... )
    >>> (records.creator_column, records.url_column)
    ('creator_name', 'cover_url')
    >>> for item in records:
    ...     print(item)
    ManifestRow(line=1, creator='Ann', url='https://x/a.jpg', problem=None)
    RowProblem(line=2, field='creator', reason='missing_creator', value='')
    ManifestRow(line=3, creator='Bo', url='ftp://c', problem=RowProblem(line=3, field='url', \
reason='unsupported_scheme', value='ftp://c'))
    >>> (records.rows_read, len(records.hexdigest()))
    (3, 64)
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from imgpipe.domain.row_rules import DEFAULT_SCHEMES, RowProblem, locate_columns, row_item
from imgpipe.errors import ColumnError, InputError

if TYPE_CHECKING:
    from imgpipe.domain.row_rules import ManifestRow

__all__ = [
    "ResultRecords",
    "line_kind",
    "locate_result_columns",
    "result_records",
    "row_label",
    "write_csv",
]


def line_kind(source: str) -> str:
    """What every ``line`` of a batch's JSON counts, as the summary's ``line_kind`` says:
    ``csv_line`` (the header is line 1) or ``result_row`` (the first row returned is 1).

    >>> (line_kind("covers.csv"), line_kind("sql:sqlite:///x.db SELECT 1"))
    ('csv_line', 'result_row')
    """
    return "result_row" if source.startswith("sql:") else "csv_line"


def row_label(source: str) -> str:
    """What a record's ``line`` counts in a batch from ``source``: CSV lines or result rows.

    >>> (row_label("covers.csv"), row_label("sql:sqlite:///x.db SELECT 1"))
    ('line', 'result row')
    """
    return "result row" if source.startswith("sql:") else "line"


class ResultRecords:
    """A query result's columns, then its rows as manifest records, read once."""

    delimiter = ""  # not a CSV; kept for the staging's statistics
    blank_rows = 0  # a result has no blank lines

    def __init__(
        self,
        columns: Sequence[str],
        rows: Iterable[Sequence[Any]],
        *,
        creator_column: str | None = None,
        url_column: str | None = None,
        schemes: frozenset[str] = DEFAULT_SCHEMES,
    ) -> None:
        header = [str(name) for name in columns]
        creator_at, url_at = locate_result_columns(header, creator_column, url_column)
        self.creator_column = header[creator_at]
        self.url_column = header[url_at]
        self.rows_read = 0
        self._digest = hashlib.sha256()
        self._records = self._read(iter(rows), creator_at, url_at, schemes)

    def __iter__(self) -> Iterator[ManifestRow | RowProblem]:
        return self._records

    def hexdigest(self) -> str:
        """SHA-256 of the creator and URL cells of the rows read so far, in order."""
        return self._digest.hexdigest()

    def _read(
        self, rows: Iterator[Sequence[Any]], creator_at: int, url_at: int, schemes: frozenset[str]
    ) -> Iterator[ManifestRow | RowProblem]:
        for number, row in enumerate(rows, start=1):
            self.rows_read = number
            creator, url = row[creator_at], row[url_at]
            # JSON of the raw values: unambiguous, and NULL differs from "".
            cells = json.dumps([_jsonable(creator), _jsonable(url)], ensure_ascii=False)
            self._digest.update(cells.encode() + b"\n")
            try:
                creator_text = _cell(creator)
            except UnicodeDecodeError:
                yield RowProblem(number, "creator", "not_utf8")
                continue
            try:
                url_text = _cell(url)
            except UnicodeDecodeError:
                yield RowProblem(number, "url", "not_utf8")
                continue
            yield row_item(number, creator_text, url_text, schemes)


def result_records(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    creator_column: str | None = None,
    url_column: str | None = None,
    schemes: frozenset[str] = DEFAULT_SCHEMES,
) -> ResultRecords:
    """The records of a query result (example above); ColumnError names a missing column."""
    return ResultRecords(
        columns, rows, creator_column=creator_column, url_column=url_column, schemes=schemes
    )


def locate_result_columns(
    header: list[str], creator_column: str | None = None, url_column: str | None = None
) -> tuple[int, int]:
    """:func:`~imgpipe.domain.row_rules.locate_columns`, its errors worded for a query.

    >>> locate_result_columns(["id", "name"])
    Traceback (most recent call last):
    ...
    imgpipe.errors.ColumnError: no creator column: the query's result has columns ['id', \
'name']; expected one of creator, creator_name, username, author, authorMeta.name, unique_id
    """
    try:
        return locate_columns(header, creator_column, url_column)
    except ColumnError as exc:
        # "header" is the CSV's word; a query has result columns.
        message = str(exc).replace("header has", "the query's result has columns", 1)
        raise ColumnError(message, exc.role) from None


def write_csv(
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    stream: TextIO,
    *,
    creator_column: str | None = None,
    url_column: str | None = None,
) -> int:
    """Write a query result as a CSV that ``imgpipe run`` reads; return the rows written.

    Every column is written as returned (the run picks its two by alias), each
    value as :class:`ResultRecords` reads it. The creator and URL columns are
    checked first, so an export the run would refuse fails before it is written.

    >>> import io
    >>> out = io.StringIO()
    >>> write_csv(["creator", "url", "n"], [("Ann", "a,b.jpg", None)], out)
    1
    >>> out.getvalue().splitlines()
    ['creator,url,n', 'Ann,"a,b.jpg",']
    """
    header = [str(name) for name in columns]
    locate_result_columns(header, creator_column, url_column)
    writer = csv.writer(stream)
    writer.writerow(header)
    count = 0
    for count, row in enumerate(rows, start=1):
        try:
            writer.writerow([_cell(value) for value in row])
        except UnicodeDecodeError:
            raise InputError(f"result row {count}: a value is not UTF-8 text") from None
    return count


def _cell(value: Any) -> str:
    """A value as the text a CSV export would hold for it."""
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8")
    return str(value)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)
