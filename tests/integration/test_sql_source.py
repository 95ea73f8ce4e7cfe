"""The SQL source against real databases: a MariaDB server of the session, and SQLite.

The rows of a query go through the CSV's column aliases and row checks, problems
name the result row, the rows stream (memory measured), and no message ever
holds the password.
"""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pytest
import sqlalchemy

from imgpipe.adapters.sql_rows import SqlQuery, query_rows
from imgpipe.adapters.sqlite_staging import StagedManifest, stage_manifest
from imgpipe.bootstrap_sql import stage_sql
from imgpipe.domain.result_rows import result_records
from imgpipe.errors import ColumnError, ConfigError, InputError, SourceError
from imgpipe.settings import BatchSpec
from tests.support.mariadb import PASSWORD, MariaDB, load_covers

MARIADB = pytest.param("mariadb", marks=[pytest.mark.mariadb, pytest.mark.slow])
SELECT = "SELECT creator_name, cover_url FROM covers ORDER BY id"

ROWS: list[tuple[str | None, str | None]] = [
    ("Ann", "https://img.example/a1.jpg"),
    (None, "https://img.example/orphan.jpg"),  # result row 2: no creator
    ("Bo", "ftp://img.example/b1.jpg"),  # result row 3: unsupported scheme
    ("Ann", "https://img.example/a1.jpg"),  # a duplicate
    ("  ", "https://img.example/blank.jpg"),  # result row 5: a blank creator
    ("ann", "https://img.example/a2.jpg"),  # takes a key that yields to Ann's
    ("Bo", None),  # result row 7: NULL URL
    ("Bo", " https://img.example/b2.jpg "),
]


@pytest.fixture(params=["sqlite", MARIADB])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty database: a SQLite file, or a fresh MariaDB database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'covers.db'}"
    url: str = request.getfixturevalue("mariadb_url")
    return url


def staged_from_sql(url: str, tmp_path: Path, query: str = SELECT, **spec: str) -> StagedManifest:
    staged, _ = stage_sql(SqlQuery(url, query), BatchSpec.of(**spec), tmp_path / "sql.sqlite3")
    return staged


def as_csv(rows: list[tuple[str | None, str | None]]) -> list[str]:
    out = io.StringIO()
    import csv

    writer = csv.writer(out)
    writer.writerow(["creator_name", "cover_url"])
    writer.writerows([("" if c is None else c, "" if u is None else u) for c, u in rows])
    return out.getvalue().splitlines(keepends=True)


def test_rows_are_checked_and_grouped_as_the_same_csv(database: str, tmp_path: Path) -> None:
    load_covers(database, ROWS)
    with staged_from_sql(database, tmp_path) as staged:
        sql_jobs = [(j.creator, j.key, [c.url for c in j.covers]) for j in staged.jobs()]
        sql_problems = [(p.line, p.field, p.reason) for p in staged.problems()]
        sql_counts = (staged.rows_read, staged.duplicate_rows, staged.creators)
    with stage_manifest(as_csv(ROWS), path=tmp_path / "csv.sqlite3") as staged:
        csv_jobs = [(j.creator, j.key, [c.url for c in j.covers]) for j in staged.jobs()]
        # a CSV counts lines from its header (line 1); a result counts rows from 1
        csv_problems = [(p.line - 1, p.field, p.reason) for p in staged.problems()]
        csv_counts = (staged.rows_read, staged.duplicate_rows, staged.creators)

    assert sql_jobs == csv_jobs
    assert sql_problems == csv_problems
    assert sql_counts == csv_counts == (8, 1, 3)
    assert sql_problems == [
        (2, "creator", "missing_creator"),
        (3, "url", "unsupported_scheme"),
        (5, "creator", "missing_creator"),
        (7, "url", "missing_url"),
    ]
    assert sql_jobs[0] == ("Ann", "Ann", ["https://img.example/a1.jpg"])
    assert sql_jobs[1] == ("Bo", "Bo", ["https://img.example/b2.jpg"])  # trimmed, as a CSV cell


def test_the_csv_aliases_and_explicit_columns_apply(database: str, tmp_path: Path) -> None:
    load_covers(database, [("Ann", "a.jpg")], columns=("who", "picture"))
    aliased = "SELECT who AS author, picture AS image_url FROM covers"
    with staged_from_sql(database, tmp_path, aliased) as staged:
        assert [(j.creator, [c.url for c in j.covers]) for j in staged.jobs()] == [
            ("Ann", ["a.jpg"])
        ]
        assert (staged.creator_column, staged.url_column) == ("author", "image_url")
    plain = "SELECT id, who, picture FROM covers"
    with staged_from_sql(
        database, tmp_path, plain, creator_column="who", url_column="picture"
    ) as staged:
        assert staged.creators == 1


def test_a_missing_column_is_named_with_the_result_columns(database: str, tmp_path: Path) -> None:
    load_covers(database, [("Ann", "a.jpg")])
    with pytest.raises(ColumnError) as caught:
        staged_from_sql(database, tmp_path, "SELECT id, creator_name FROM covers")
    assert caught.value.role == "url"
    assert "no url column: the query's result has columns ['id', 'creator_name']" in str(
        caught.value
    )
    assert "cover_url" in str(caught.value)  # the aliases it looked for


def test_the_digest_follows_the_rows_not_the_connection(database: str, tmp_path: Path) -> None:
    load_covers(database, ROWS)
    first = stage_sql(SqlQuery(database, SELECT), BatchSpec(), tmp_path / "a.sqlite3")
    again = stage_sql(SqlQuery(database, SELECT), BatchSpec(), tmp_path / "b.sqlite3")
    first[0].close()
    again[0].close()
    assert first[1] == again[1]
    engine = sqlalchemy.create_engine(database)
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("UPDATE covers SET cover_url = 'x.jpg' WHERE id = 8"))
    engine.dispose()
    changed = stage_sql(SqlQuery(database, SELECT), BatchSpec(), tmp_path / "c.sqlite3")
    changed[0].close()
    assert changed[1] != first[1]


def test_a_refused_query_is_bad_input_naming_the_database(database: str) -> None:
    with pytest.raises(InputError) as caught, query_rows(SqlQuery(database, "SELECT * FROM nope")):
        pass
    assert "SQL query failed on" in str(caught.value) and "nope" in str(caught.value)
    assert "[SQL:" not in str(caught.value)  # SQLAlchemy's dump is left out


def test_a_statement_without_rows_is_refused(database: str) -> None:
    load_covers(database, [])
    with (
        pytest.raises(InputError, match="returns no rows"),
        query_rows(SqlQuery(database, "DELETE FROM covers")),
    ):
        pass


def test_an_unusable_url_is_a_config_error_that_does_not_echo_it() -> None:
    with pytest.raises(ConfigError) as caught, query_rows(SqlQuery("no-url-Secret123", "SELECT 1")):
        pass
    assert "Secret123" not in str(caught.value)
    with (
        pytest.raises(ConfigError) as unknown,
        query_rows(SqlQuery("nosuchdb://user:Secret123@host/db", "SELECT 1")),
    ):
        pass
    assert "Secret123" not in str(unknown.value) and "user:***@host" in str(unknown.value)


@pytest.mark.mariadb
@pytest.mark.slow
def test_a_wrong_password_is_never_shown(mariadb: MariaDB, mariadb_url: str) -> None:
    wrong = "Wr0ng/Pass@word!"
    url = mariadb.url(mariadb_url.rsplit("/", 1)[1], password=wrong)
    with pytest.raises(SourceError) as caught, query_rows(SqlQuery(url, SELECT)):
        pass
    message = str(caught.value)
    assert f"cannot connect to mysql+pymysql://imgpipe:***@127.0.0.1:{mariadb.port}/" in message
    assert "Access denied" in message
    for secret in (wrong, "Wr0ng%2FPass%40word%21", PASSWORD):
        assert secret not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.mark.mariadb
@pytest.mark.slow
def test_rows_stream_through_a_server_side_cursor(mariadb_url: str) -> None:
    """3,000 rows of 4 KB URLs (12 MB): streamed, at most a slice is held in memory.

    The same query through a plain (buffered) cursor is measured too, so the bound
    is shown to tell the two apart: a buffered read holds the whole result.
    """
    rows = [(f"creator{i % 50}", f"https://img.example/{i}/" + "x" * 4000) for i in range(3000)]
    load_covers(mariadb_url, rows)

    tracemalloc.start()
    try:
        with query_rows(SqlQuery(mariadb_url, SELECT), yield_per=100) as result:
            count = sum(1 for _ in result.rows)
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        engine = sqlalchemy.create_engine(mariadb_url)
        with engine.connect() as connection:
            buffered = connection.execute(sqlalchemy.text(SELECT))
            assert sum(1 for _ in buffered) == 3000
        engine.dispose()
        _, buffered_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 3000
    assert buffered_peak > 12_000_000  # the whole result, and more
    assert streamed_peak < 3_000_000, f"streamed peak {streamed_peak:,} B"


def test_sqlite_rows_stream_too(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'covers.db'}"
    rows = [(f"creator{i % 50}", f"https://img.example/{i}/" + "x" * 4000) for i in range(3000)]
    load_covers(url, rows)
    tracemalloc.start()
    try:
        with query_rows(SqlQuery(url, SELECT), yield_per=100) as result:
            count = sum(1 for _ in result.rows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 3000 and peak < 3_000_000, f"peak {peak:,} B"


@pytest.mark.mariadb
@pytest.mark.slow
def test_a_connection_lost_mid_stream_is_a_source_error(mariadb: MariaDB, mariadb_url: str) -> None:
    """The server kills the reading connection after the first slice: no half a result."""
    rows = [(f"creator{i % 50}", f"https://img.example/{i}/" + "x" * 4000) for i in range(3000)]
    load_covers(mariadb_url, rows)
    database = mariadb_url.rsplit("/", 1)[1]
    read = 0
    with pytest.raises(SourceError) as caught:
        with query_rows(SqlQuery(mariadb_url, SELECT), yield_per=100) as result:
            for _ in result.rows:
                read += 1
                if read == 100:
                    for (connection_id,) in mariadb.query(
                        "SELECT ID FROM information_schema.PROCESSLIST"
                        f" WHERE USER = 'imgpipe' AND DB = '{database}'"
                    ):
                        mariadb.admin(f"KILL CONNECTION {connection_id}")
    assert 100 <= read < 3000
    message = str(caught.value)
    assert message.startswith("reading from mysql+pymysql://imgpipe:***@127.0.0.1:")
    assert PASSWORD not in message


@pytest.mark.mariadb
@pytest.mark.slow
def test_a_result_refused_at_its_columns_is_not_read_to_its_end(
    mariadb: MariaDB, mariadb_url: str
) -> None:
    """50 MB of rows with no usable column: the connection is dropped, not drained.

    MySQL's protocol wants an unbuffered result read to its end; doing so for a
    result refused at its header would move every row for nothing.
    """
    rows_of_50_mb = (  # 100 x 100 rows of 5,000 bytes, made by the server (no table)
        "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < 100)"
        " SELECT CONCAT('c', a.n) AS who, REPEAT('x', 5000) AS what FROM seq a, seq b"
    )

    def bytes_sent() -> int:
        [(_, value)] = mariadb.query("SHOW GLOBAL STATUS LIKE 'Bytes_sent'")
        return int(value)

    before = bytes_sent()
    with pytest.raises(ColumnError, match="no creator column"):
        with query_rows(SqlQuery(mariadb_url, rows_of_50_mb)) as result:
            result_records(result.columns, result.rows)
    sent = bytes_sent() - before
    assert sent < 20_000_000, f"{sent:,} bytes sent"
    # and the same result read whole does move them all: the measure tells the two apart
    before = bytes_sent()
    with query_rows(SqlQuery(mariadb_url, rows_of_50_mb)) as result:
        assert sum(1 for _ in result.rows) == 10_000
    assert bytes_sent() - before > 50_000_000
