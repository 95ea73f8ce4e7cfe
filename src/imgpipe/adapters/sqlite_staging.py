"""A CSV manifest staged in a SQLite scratch file: plan a huge export in bounded memory.

:func:`~imgpipe.domain.manifest.parse_manifest` holds every cover of every creator;
a 1,000,000-row export peaked near 4 GB that way. :func:`stage_manifest` reads the
same records (:func:`~imgpipe.domain.manifest.read_records`) once and appends them
to a table, then lets SQLite do the grouping with sorts that spill to disk. It
yields exactly ``parse_manifest(...).jobs`` (same keys, covers and order), one
creator at a time::

    with stage_manifest(stream, path=work / "staging.sqlite3") as staged:
        print(staged.creators, staged.covers, staged.duplicate_rows)
        for job in staged.jobs(start=resume_at):
            ...

Why append, then sort: the rows of an export come in any order, so grouping
them means holding every creator's URLs somewhere until the end. Here they are
appended to an unindexed table, then one ``ORDER BY name, line`` (a sort SQLite
spills to temporary files) brings each creator's rows together in file order,
and they are grouped one creator at a time. On the 1,000,000-row benchmark
(benchmarks/bench_million.py) that sort took about 3.5 s, where a SQL
``GROUP BY creator, url`` over a join with the creators took 8.5 s.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from itertools import groupby
from operator import itemgetter
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from imgpipe.domain.keys import unique_key
from imgpipe.domain.manifest import (
    DEFAULT_SCHEMES,
    CoverRef,
    CoverSet,
    CreatorJob,
    RowProblem,
    check_cap,
    read_records,
)
from imgpipe.errors import StorageError

if TYPE_CHECKING:
    from imgpipe.domain.manifest import ManifestRow

__all__ = ["Records", "StagedManifest", "stage_manifest", "stage_records"]

_BATCH = 20_000  # rows per executemany: large enough that the per-call overhead vanishes
_CHUNK = 500  # creators per query in jobs(); with the default cap, at most 17,500 covers
_FORMAT = 1  # bumped when the tables change, so a reader never misreads an older file

# creators: cid is the line where the creator first appears, which orders creators
# as parse_manifest does; its covers are one JSON list [[line, url], ...], written
# once and read once, after the columns a key pass reads (so it skips them).
_SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE raw (line INTEGER NOT NULL, name TEXT NOT NULL, url TEXT);
CREATE TABLE problems (line INTEGER NOT NULL, field TEXT NOT NULL, reason TEXT NOT NULL,
                       value TEXT NOT NULL);
CREATE TABLE creators (cid INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL,
                       covers TEXT);
CREATE TABLE taken (folded TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE jobs (job INTEGER PRIMARY KEY, cid INTEGER NOT NULL, key TEXT NOT NULL UNIQUE);
"""
_STATS = (
    "creators", "covers", "rows_read", "duplicate_rows", "blank_rows", "capped_rows",
    "problem_count", "creator_column", "url_column", "delimiter",
)  # fmt: skip


class StagedManifest:
    """The jobs of one staged CSV, read from its SQLite file a chunk at a time.

    ``creators`` counts jobs (creators with at least one usable cover), ``covers``
    the distinct covers they keep; the other counters mean what they mean on a
    :class:`~imgpipe.domain.manifest.Manifest`. Use it from one thread at a time.
    """

    creators: int
    covers: int
    rows_read: int
    duplicate_rows: int
    blank_rows: int
    capped_rows: int
    problem_count: int
    creator_column: str
    url_column: str
    delimiter: str

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path
        values = dict(self._query("SELECT name, value FROM meta"))
        if values.get("format") != _FORMAT or not all(name in values for name in _STATS):
            connection.close()
            raise StorageError(f"{path} is not a complete staged manifest")
        for name in _STATS:
            setattr(self, name, values[name])

    @classmethod
    def open(cls, path: Path) -> StagedManifest:
        """Reopen a file that :func:`stage_manifest` finished (a restarted planner)."""
        try:
            connection = sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open staged manifest {path}: {exc}") from exc
        return cls(connection, Path(path))

    def jobs(self, start: int = 0) -> Iterator[CreatorJob]:
        """Jobs in order of the creators' first appearance, from job ordinal ``start``.

        ``list(staged.jobs(n)) == list(staged.jobs())[n:]``; only ``_CHUNK``
        creators' names and the covers of one creator at a time are held.
        """
        next_job = max(start, 0)
        while True:
            count = 0
            for job in self._chunk(next_job, _CHUNK):  # lazily: one creator's covers at a time
                count += 1
                yield job
            if count < _CHUNK:
                return
            next_job += count

    def job(self, ordinal: int) -> CreatorJob:
        """The job at ``ordinal`` (0-based, the order of :meth:`jobs`); IndexError past the end."""
        for found in self._chunk(ordinal, 1) if ordinal >= 0 else ():
            return found
        raise IndexError(f"no job {ordinal}: {self.creators} jobs staged")

    def job_by_key(self, key: str) -> CreatorJob | None:
        """The job whose creator key is ``key``, or None."""
        row = self._query("SELECT job FROM jobs WHERE key = ?", (key,))
        return self.job(row[0][0]) if row else None

    def problems(self) -> Iterator[RowProblem]:
        """Row problems in file order, read a chunk at a time (``problem_count`` of them)."""
        after = 0
        while True:
            rows = self._query(
                "SELECT rowid, line, field, reason, value FROM problems"
                " WHERE rowid > ? ORDER BY rowid LIMIT ?",
                (after, _BATCH),
            )
            if not rows:
                return
            yield from (RowProblem(*row[1:]) for row in rows)
            after = rows[-1][0]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> StagedManifest:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _chunk(self, start: int, limit: int) -> Iterator[CreatorJob]:
        rows = self._cursor(
            "SELECT c.name, j.key, c.covers FROM jobs AS j JOIN creators AS c ON c.cid = j.cid"
            " WHERE j.job >= ? ORDER BY j.job LIMIT ?",
            (start, limit),
        )
        for name, key, covers in rows:
            yield CreatorJob(name, key, tuple(CoverRef(*cover) for cover in json.loads(covers)))

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read staged manifest {self.path}: {exc}") from exc

    def _cursor(self, sql: str, args: tuple[object, ...]) -> Iterator[tuple[Any, ...]]:
        try:
            # Not ``yield from``: it would close the cursor when this generator is
            # closed, and a run stopped by a signal drops its jobs unfinished, so
            # they are closed (collected) after the manifest: "closed database".
            for row in self._db.execute(sql, args):  # noqa: UP028 (see above)
                yield row
        except sqlite3.Error as exc:
            raise StorageError(f"cannot read staged manifest {self.path}: {exc}") from exc


def stage_manifest(
    stream: TextIO | Iterable[str],
    *,
    path: Path,
    creator_column: str | None = None,
    url_column: str | None = None,
    schemes: frozenset[str] = DEFAULT_SCHEMES,
    max_covers_per_creator: int | None = None,
) -> StagedManifest:
    """Read ``stream`` once into a new SQLite file at ``path`` and group it there.

    Arguments, errors and results are those of
    :func:`~imgpipe.domain.manifest.parse_manifest`; ``path`` is a scratch file,
    replaced if it exists. SQLite failures (a full disk) become StorageError.

    >>> import tempfile
    >>> rows = ["creator,url", "Bo,b.jpg", "Ann,a.jpg", "Bo,b.jpg", "Bo,ftp://x"]
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with stage_manifest(rows, path=Path(tmp) / "s.db") as staged:
    ...         print([(j.key, [c.url for c in j.covers]) for j in staged.jobs()])
    ...         print(staged.duplicate_rows, [p.reason for p in staged.problems()])
    [('Bo', ['b.jpg']), ('Ann', ['a.jpg'])]
    1 ['unsupported_scheme']
    """
    check_cap(max_covers_per_creator)
    records = read_records(
        stream, creator_column=creator_column, url_column=url_column, schemes=schemes
    )
    return stage_records(records, path=path, max_covers_per_creator=max_covers_per_creator)


class Records(Protocol):
    """Checked records of any source: a CSV's (ManifestRecords) or a query's (ResultRecords)."""

    creator_column: str
    url_column: str
    delimiter: str
    blank_rows: int

    def __iter__(self) -> Iterator[ManifestRow | RowProblem]: ...


def stage_records(
    records: Records, *, path: Path, max_covers_per_creator: int | None = None
) -> StagedManifest:
    """Stage records already checked (:func:`stage_manifest` of a CSV is built on it).

    >>> import tempfile
    >>> from imgpipe.domain.result_rows import result_records
    >>> rows = result_records(["creator_name", "cover_url"], [("Bo", "b.jpg"), (None, "x")])
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     with stage_records(rows, path=Path(tmp) / "s.db") as staged:
    ...         print(staged.creators, [(p.line, p.reason) for p in staged.problems()])
    1 [(2, 'missing_creator')]
    """
    check_cap(max_covers_per_creator)
    path = Path(path)
    path.unlink(missing_ok=True)
    try:
        # isolation_level=None: transactions are begun and committed here, explicitly.
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise StorageError(f"cannot create staged manifest {path}: {exc}") from exc
    try:
        # A scratch file rebuilt from the CSV after any crash: no journal, no fsync.
        # 64 MiB of page cache bounds what the sort holds before it spills; the
        # 1,000,000-row benchmark peaks at about 160 MB for the whole process.
        db.executescript(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; PRAGMA cache_size=-65536;" + _SCHEMA
        )
        db.execute("BEGIN")
        counts: dict[str, int | str] = {**_load(db, records)}
        counts.update(_group(db, max_covers_per_creator))
        counts.update(
            format=_FORMAT,
            blank_rows=records.blank_rows,
            creator_column=records.creator_column,
            url_column=records.url_column,
            delimiter=records.delimiter,
        )
        db.executemany("INSERT INTO meta VALUES (?, ?)", counts.items())
        db.execute("COMMIT")
    except BaseException as exc:
        db.close()
        path.unlink(missing_ok=True)  # half a staging is of no use, and it may be large
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"cannot stage manifest into {path}: {exc}") from exc
        raise
    return StagedManifest(db, path)


def _load(db: sqlite3.Connection, records: Iterable[ManifestRow | RowProblem]) -> dict[str, int]:
    """Append every record to ``raw`` or ``problems``; count the records read."""
    rows: list[tuple[int, str, str | None]] = []
    problems: list[RowProblem] = []
    rows_read = problem_count = 0
    for item in records:
        rows_read += 1
        if isinstance(item, RowProblem):
            problems.append(item)
        else:
            # A bad URL still counts as its creator's appearance (url NULL): same keys.
            rows.append((item.line, item.creator, item.url if item.problem is None else None))
            if item.problem is not None:
                problems.append(item.problem)
        if len(rows) >= _BATCH:
            db.executemany("INSERT INTO raw VALUES (?, ?, ?)", rows)
            rows.clear()
        if len(problems) >= _BATCH:
            problem_count += _flush_problems(db, problems)
    db.executemany("INSERT INTO raw VALUES (?, ?, ?)", rows)
    problem_count += _flush_problems(db, problems)
    return {"rows_read": rows_read, "problem_count": problem_count}


def _flush_problems(db: sqlite3.Connection, problems: list[RowProblem]) -> int:
    db.executemany(
        "INSERT INTO problems VALUES (?, ?, ?, ?)",
        ((p.line, p.field, p.reason, p.value) for p in problems),
    )
    count = len(problems)
    problems.clear()
    return count


def _group(db: sqlite3.Connection, cap: int | None) -> dict[str, int]:
    """Covers per creator, then keys and job ordinals in order of first appearance.

    One sort brings each creator's rows together in file order; grouping them
    is then :class:`~imgpipe.domain.manifest.CoverSet`, as in parse_manifest.
    """
    duplicate_rows = capped_rows = 0
    batch: list[tuple[int, str, int, str | None]] = []
    held = 0  # covers in ``batch``, so one flush never holds more than about _BATCH
    rows = db.execute("SELECT name, line, url FROM raw ORDER BY name, line")
    for name, group in groupby(rows, itemgetter(0)):
        covers = CoverSet(cap)
        first = 0  # the line where the creator first appears: its cid, its place
        for _, line, url in group:
            first = first or line
            if url is not None:  # NULL: a bad URL, which only marks the creator's place
                covers.add(line, url)
        duplicate_rows += covers.duplicate_rows
        capped_rows += covers.capped_rows
        kept = [(cover.line, cover.url) for cover in covers.covers]
        batch.append((first, name, len(kept), json.dumps(kept) if kept else None))
        held += len(kept) + 1
        if held >= _BATCH:
            db.executemany("INSERT INTO creators VALUES (?, ?, ?, ?)", batch)
            batch, held = [], 0
    db.executemany("INSERT INTO creators VALUES (?, ?, ?, ?)", batch)
    db.execute("DROP TABLE raw")
    creators, covers_kept = _assign_keys(db)
    db.execute("DROP TABLE taken")
    return {
        "creators": creators,
        "covers": covers_kept,
        "duplicate_rows": duplicate_rows,
        "capped_rows": capped_rows,
    }


class _TakenTable:
    """:class:`~imgpipe.domain.keys.TakenKeys` in a table: no creator count is too large."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __contains__(self, folded: object, /) -> bool:
        found = self._db.execute("SELECT 1 FROM taken WHERE folded = ?", (folded,)).fetchone()
        return found is not None

    def add(self, folded: str, /) -> None:
        self._db.execute("INSERT INTO taken VALUES (?)", (folded,))


def _assign_keys(db: sqlite3.Connection) -> tuple[int, int]:
    """Key every creator in order of first appearance; number those with covers as jobs.

    Creators without covers take keys too, so that the later ones get the keys
    parse_manifest gives them. Returns the number of jobs and of their covers.
    """
    taken, after, jobs, covers = _TakenTable(db), 0, 0, 0
    while True:
        chunk = db.execute(
            "SELECT cid, name, n FROM creators WHERE cid > ? ORDER BY cid LIMIT ?",
            (after, _BATCH),
        ).fetchall()
        if not chunk:
            return jobs, covers
        numbered = []
        for cid, name, n in chunk:
            key = unique_key(name, taken)
            if n:
                numbered.append((jobs, cid, key))
                jobs, covers = jobs + 1, covers + n
        db.executemany("INSERT INTO jobs VALUES (?, ?, ?)", numbered)
        after = chunk[-1][0]
