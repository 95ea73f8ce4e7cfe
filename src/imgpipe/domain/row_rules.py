"""Which columns hold the creator and the URL, and whether a row's two cells are usable.

The rules every source of rows obeys, kept apart from reading any one source: a
CSV file (:mod:`imgpipe.domain.manifest`) and a SQL result
(:mod:`imgpipe.domain.result_rows`) find their columns and check their rows here,
so a row means the same whatever it came from. Pure.

* the creator and URL columns are found by alias (``CREATOR_ALIASES``,
  ``URL_ALIASES``, first alias present wins) or named explicitly;
* a record becomes a :class:`ManifestRow`, which carries a :class:`RowProblem`
  when its URL is unusable, or a bare :class:`RowProblem` when it names no creator.

Example::

    >>> locate_columns(["id", "Cover_URL", "author"])
    (2, 1)
    >>> row_item(4, "Ann", "https://x/a.jpg")
    ManifestRow(line=4, creator='Ann', url='https://x/a.jpg', problem=None)
    >>> row_item(5, "Ann", "http://x:port/a.jpg").problem
    RowProblem(line=5, field='url', reason='invalid_url', value='http://x:port/a.jpg')
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from imgpipe.errors import ColumnError, ManifestError

__all__ = [
    "CREATOR_ALIASES",
    "DEFAULT_SCHEMES",
    "MAX_CREATOR_CHARS",
    "MAX_URL_CHARS",
    "URL_ALIASES",
    "ManifestRow",
    "RowProblem",
    "locate_columns",
    "match_column",
    "row_item",
]

CREATOR_ALIASES: tuple[str, ...] = (
    "creator", "creator_name", "username", "author", "authorMeta.name", "unique_id",
)  # fmt: skip
URL_ALIASES: tuple[str, ...] = (
    "url", "cover_url", "cover", "image_url", "covers.default", "videoMeta.coverUrl",
)  # fmt: skip

DEFAULT_SCHEMES = frozenset({"http", "https", "file", ""})
# Longer URLs are a row problem (``url_too_long``). Browsers, CDNs and S3 presigning
# stay far below it (signed URLs run 250 to 2,000 characters), and common servers
# refuse request lines past 8 KB anyway; without a cap one cell could hold the CSV
# reader's whole 128 KB field, copied into every record and message that names it.
MAX_URL_CHARS = 8_192
# Longer creator names are a row problem (``creator_too_long``): a name is copied
# into every record, message and page of its creator, and one cell of the CSV
# reader's 128 K characters (up to 512 KB of UTF-8) would alone pass DynamoDB's
# 400 KB item limit and fail the planning of its whole chunk of creators.
MAX_CREATOR_CHARS = 1_024
# How much of a refused over-long value a row problem quotes.
SHOWN_CHARS = 200
# RFC 3986 scheme; one letter is a Windows drive ("C:\covers\a.jpg"), not a scheme.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")
# An http(s) URL whose host is plain ASCII letters, digits, dots and dashes needs
# no urlsplit to be known valid: this match settles it in 0.4 us instead of 7 us
# (a 1,000,000-row export spent 7 s in urlsplit); anything else goes the long way.
_PLAIN_HTTP = re.compile(r"((?i:https?))://[A-Za-z0-9.-]+(?=[/?#]|\Z)", re.ASCII)


@dataclass(frozen=True)
class RowProblem:
    line: int
    field: str  # "creator", "url" or "row"
    reason: str  # "missing_creator", "missing_url", "unsupported_scheme", "invalid_url", ...
    value: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "reason": self.reason, "value": self.value}


class ManifestRow(NamedTuple):
    """One record (a CSV line, a result row) that names a creator.

    ``problem`` is None when ``url`` is usable. A record whose URL is unusable is
    still a row rather than a bare :class:`RowProblem`: its creator takes a key
    and a place in the order of first appearance all the same (a creator whose
    rows are all bad gets no job, but a later ``ann`` still yields to ``Ann``).
    """

    line: int  # 1-based physical line where the record starts
    creator: str  # trimmed display name, never empty
    url: str  # trimmed
    problem: RowProblem | None = None


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
    >>> row_item(9, "Ann", "https://x/" + "a" * MAX_URL_CHARS).problem.reason
    'url_too_long'
    >>> row_item(10, "A" * 5_000, "a.jpg").reason
    'creator_too_long'
    """
    creator, url = creator.strip(), url.strip()
    if not creator:
        return RowProblem(line, "creator", "missing_creator")
    if len(creator) > MAX_CREATOR_CHARS:
        return RowProblem(line, "creator", "creator_too_long", _cut(creator))
    if len(url) > MAX_URL_CHARS:
        return ManifestRow(line, creator, url, RowProblem(line, "url", "url_too_long", _cut(url)))
    reason = _check_url(url, schemes)
    problem = None if reason is None else RowProblem(line, "url", reason, url)
    return ManifestRow(line, creator, url, problem)


def _cut(value: str) -> str:
    """An over-long value as a row problem quotes it: its start and its length."""
    return f"{value[:SHOWN_CHARS]}… ({len(value):,} characters)"


def _shown(cells: list[str], limit: int = 200) -> str:
    """The header cells for an error message, cut so a huge header cannot flood it."""
    text = repr(cells)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(cells)} cells)"


def match_column(header: list[str], aliases: tuple[str, ...], explicit: str | None) -> int | None:
    """The index of the first of ``aliases`` (or of ``explicit``) in ``header``, any case."""
    names = [cell.strip().casefold() for cell in header]
    for wanted in (explicit,) if explicit is not None else aliases:
        wanted = wanted.strip().casefold()
        if wanted in names:
            return names.index(wanted)
    return None


def _find_column(
    header: list[str], role: str, aliases: tuple[str, ...], explicit: str | None
) -> int:
    found = match_column(header, aliases, explicit)
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
