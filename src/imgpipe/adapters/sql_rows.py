"""Rows of a SQL query, streamed through SQLAlchemy: the original design's MySQL data layer.

Any SQLAlchemy URL works: ``mysql+pymysql://`` (PyMySQL, in the ``sql`` extra),
``sqlite:///covers.db``, or another database with its driver installed. Rows come
through a server-side cursor (``stream_results``) in slices of ``yield_per``;
with PyMySQL that is its unbuffered ``SSCursor``, so a result of millions of rows
is never held in memory (tests/integration/test_sql_source.py measures it).

Credentials never leave this module: messages show the URL with its password
masked (``mysql+pymysql://reader:***@db/covers``), a URL that cannot be parsed is
not shown at all, and the password is scrubbed from any driver message that
would quote it. SQLAlchemy's errors become the project's here:

* a URL that cannot be used (syntax, unknown dialect, missing driver): ConfigError;
* a query the database refuses (syntax, unknown table or column): InputError;
* no connection (a wrong password included), or one that broke off: SourceError.

Example::

    source = SqlQuery("sqlite:///covers.db", "SELECT creator_name, cover_url FROM covers")
    with query_rows(source) as result:
        print(result.columns)
        for row in result.rows:
            ...
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

import sqlalchemy
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, CursorResult, make_url
from sqlalchemy.pool import NullPool

from imgpipe.errors import ConfigError, ImgpipeError, InputError, SourceError

__all__ = ["QueryResult", "SqlQuery", "query_rows", "shown_url"]

# Rows per fetch from the server: large enough that the round trips vanish, small
# enough that one slice of long URLs stays a few MB.
YIELD_PER = 1000
_UNPARSEABLE = "<SQL URL not shown: it cannot be parsed>"


def _parse(url: str) -> URL | None:
    try:
        return make_url(url)
    except (sa_exc.ArgumentError, ValueError, TypeError):
        return None


def shown_url(url: str) -> str:
    """The URL with its password masked, safe for logs and messages.

    >>> shown_url("mysql+pymysql://reader:s3cret@db:3306/covers")
    'mysql+pymysql://reader:***@db:3306/covers'
    >>> shown_url("not a url, maybe a password")
    '<SQL URL not shown: it cannot be parsed>'
    """
    parsed = _parse(url)
    return _UNPARSEABLE if parsed is None else parsed.render_as_string(hide_password=True)


@dataclass(frozen=True)
class SqlQuery:
    """A query and the database it runs on; ``url`` holds the password, never shown."""

    url: str = field(repr=False)
    query: str

    @property
    def shown_url(self) -> str:
        return shown_url(self.url)

    @property
    def source(self) -> str:
        """How a batch record names this source: ``sql:<masked URL> <query>``."""
        return f"sql:{self.shown_url} {' '.join(self.query.split())}"


@dataclass
class QueryResult:
    columns: list[str]
    rows: Iterator[Sequence[Any]]


@contextmanager
def query_rows(source: SqlQuery, *, yield_per: int = YIELD_PER) -> Iterator[QueryResult]:
    """Run ``source``'s query; its rows stream until the block ends, then all is closed.

    Errors raised while the rows are read (the server went away) are translated
    too, as long as they are read inside the block.
    """
    if not source.query.strip():
        raise InputError("no SQL query given")
    parsed = _parse(source.url)
    if parsed is None:
        raise ConfigError(f"invalid SQL URL ({_UNPARSEABLE})")
    scrub = _Scrubber(source.url, parsed)
    phase = "connect"  # then "execute" (the query's fault), then "read" (the server's)
    driver_cursor: Any = None
    try:
        # NullPool: one connection for one read, closed with the block; no pool lingers.
        engine = sqlalchemy.create_engine(parsed, poolclass=NullPool)
        try:
            with engine.connect() as connection:
                phase = "execute"
                result: CursorResult[Any] = connection.execution_options(
                    stream_results=True, yield_per=yield_per
                ).execute(sqlalchemy.text(source.query))
                if not result.returns_rows:
                    raise InputError("the SQL query returns no rows (is it a SELECT?)")
                phase = "read"
                driver_cursor = result.cursor
                try:
                    yield QueryResult(list(result.keys()), _tuples(result))
                except BaseException:
                    # Cut short (a missing column, Ctrl-C): the connection is dropped
                    # rather than the rest of a result of millions of rows read to
                    # its end, which MySQL's protocol requires before anything else.
                    _abandon(driver_cursor)
                    connection.invalidate()
                    raise
                result.close()
        finally:
            engine.dispose()
    except ImgpipeError:
        raise
    except (ImportError, sa_exc.ArgumentError, sa_exc.NoSuchModuleError) as exc:
        raise ConfigError(f"cannot use SQL URL {scrub.url}: {scrub(exc)}") from None
    except sa_exc.SQLAlchemyError as exc:
        _abandon(driver_cursor)
        lost = isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
        if phase == "execute" and not lost:  # syntax, unknown table or column, no permission
            raise InputError(f"SQL query failed on {scrub.url}: {scrub(exc)}") from None
        if phase == "connect":  # a wrong password included: the driver says which
            raise SourceError(f"cannot connect to {scrub.url}: {scrub(exc)}") from None
        raise SourceError(f"reading from {scrub.url} failed: {scrub(exc)}") from None


def _abandon(cursor: Any) -> None:
    """Let a failed PyMySQL unbuffered read go without reading the rest.

    PyMySQL 1.1's ``SSCursor`` and its result read the rest of the rows when they
    are collected, even once the connection is closed (SQLAlchemy closes it on
    a lost connection): an AttributeError "ignored in __del__" each. Nothing is
    left to read on a failed connection, so they are told so.
    """
    if cursor is None or not type(cursor).__module__.startswith("pymysql."):
        return
    result = getattr(cursor, "_result", None)
    if result is not None:
        result.unbuffered_active = False  # MySQLResult.__del__ reads nothing then
    cursor.connection = None  # and SSCursor.close (its __del__) returns at once


def _tuples(result: CursorResult[Any]) -> Iterator[Sequence[Any]]:
    for row in result:
        yield tuple(row)


class _Scrubber:
    """A library message made safe to show: no password in any spelling, no SQL dump.

    ``from None`` above too: the original exception (which may quote the URL) is
    not chained, so a traceback cannot print it either.
    """

    def __init__(self, raw: str, parsed: URL) -> None:
        self.url = parsed.render_as_string(hide_password=True)
        self._raw = raw
        password = parsed.password
        text = "" if password is None else str(password)
        self._secrets = sorted(
            {s for s in (text, quote(text, safe=""), quote_plus(text)) if s}, key=len, reverse=True
        )

    def __call__(self, exc: BaseException) -> str:
        orig = getattr(exc, "orig", None)  # the driver's own error, without SQLAlchemy's dump
        message = str(orig if orig is not None else exc).split("\n(Background on")[0]
        message = message.replace(self._raw, self.url)
        for secret in self._secrets:
            message = message.replace(secret, "***")
        return message.strip() or type(exc).__name__
