"""The SQL source's wiring: ``imgpipe run --from-sql`` and ``imgpipe export-csv``.

A query's rows go through the same staging, row checks and batch run as a CSV's
(:mod:`imgpipe.bootstrap_local`); SQLAlchemy (the ``sql`` extra) is imported only when a
query runs.

Example::

    url, query = "mysql+pymysql://reader@db/shop", "SELECT creator_name, cover_url FROM covers"
    summary = run_sql(url, query, options, open_backend(settings))
    where, rows = export_sql_csv(url, query, "s3://input-bucket/csv-files/", settings)
"""

from __future__ import annotations

import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from imgpipe.adapters.sqlite_staging import StagedManifest, stage_records
from imgpipe.bootstrap import Backend
from imgpipe.bootstrap_local import PlannedInput, run_planned, scratch_dir
from imgpipe.domain.result_rows import result_records, write_csv
from imgpipe.errors import ConfigError, InputError
from imgpipe.service.memory import MemoryMonitor
from imgpipe.service.planning import batch_identity
from imgpipe.service.progress import ProgressSink
from imgpipe.service.summary import BatchSummary
from imgpipe.settings import BatchSpec, Settings

if TYPE_CHECKING:  # SQLAlchemy is the sql extra's, imported only when a query runs
    from imgpipe.adapters.sql_rows import SqlQuery

__all__ = ["export_sql_csv", "run_sql", "stage_sql"]


def run_sql(
    url: str,
    query: str,
    options: BatchSpec,
    backend: Backend,
    *,
    progress: ProgressSink | None = None,
    monitor: MemoryMonitor | None = None,
    batch_id: str | None = None,
    new_batch: bool = False,
    handle_signals: bool = False,
) -> BatchSummary:
    """Run a query's rows as ``bootstrap_local.run_csv`` runs a CSV's (``imgpipe run --from-sql``).

    The rows stream from a server-side cursor into the same staging and row checks
    as a CSV's; the connection is closed before the first download. The batch's
    identity is the digest of the creator and URL cells streamed, with the source
    ``sql:<URL, password masked> <query>``: rerunning the same query over the same
    rows continues its unfinished batch, and a changed row is a new batch.
    """
    from imgpipe.adapters.sql_rows import SqlQuery

    source = SqlQuery(url, query)
    # The identity is known once the rows are read, so the scratch file is named apart.
    scratch = scratch_dir(backend) / f"sql-{uuid.uuid4().hex}-{os.getpid()}.sqlite3"
    try:
        staged, digest = stage_sql(source, options, scratch)
        with staged:
            identity = batch_identity(digest, options, source=source.source)
            planned = PlannedInput(staged, source.source, identity, None)
            return run_planned(
                planned, options, backend, progress, monitor, batch_id,
                new_batch=new_batch, handle_signals=handle_signals,
            )  # fmt: skip
    finally:
        scratch.unlink(missing_ok=True)


def stage_sql(source: SqlQuery, options: BatchSpec, scratch: Path) -> tuple[StagedManifest, str]:
    """Stage a query's rows; also the digest of the rows streamed (the batch's input)."""
    from imgpipe.adapters.sql_rows import query_rows

    with query_rows(source) as result:
        records = result_records(
            result.columns,
            result.rows,
            creator_column=options.creator_column,
            url_column=options.url_column,
        )
        staged = stage_records(records, path=scratch)
    return staged, records.hexdigest()


def export_sql_csv(
    url: str,
    query: str,
    out: str,
    settings: Settings,
    *,
    creator_column: str | None = None,
    url_column: str | None = None,
) -> tuple[str, int]:
    """Write a query's rows as a CSV at ``out``: a file, or ``s3://bucket/key`` (a key
    ending in ``/`` gets ``export_<UTC time>.csv``). Returns where it went and the rows.

    The rows stream into a temporary file beside the target (or in a temporary
    folder, for S3) that replaces the target only once complete, so a failed
    export leaves no half a CSV where the flow would pick it up.
    """
    from imgpipe.adapters.sql_rows import SqlQuery, query_rows

    source = SqlQuery(url, query)

    def write(path: Path) -> int:
        with query_rows(source) as result, path.open("w", encoding="utf-8", newline="") as out:
            return write_csv(
                result.columns,
                result.rows,
                out,
                creator_column=creator_column,
                url_column=url_column,
            )

    if out.startswith("s3://"):
        bucket, _, key = out.removeprefix("s3://").partition("/")
        if not bucket or not key:
            raise ConfigError(f"--out {out}: expected s3://bucket/key.csv or s3://bucket/prefix/")
        if key.endswith("/"):
            key += f"export_{datetime.now(UTC):%Y%m%d_%H%M%S}.csv"
        from imgpipe.adapters.s3_store import S3ObjectStore

        store = S3ObjectStore(bucket, settings=settings)
        with tempfile.TemporaryDirectory(prefix="imgpipe-export-") as folder:
            local = Path(folder) / "export.csv"
            count = write(local)
            stored = store.put_file(key, local, content_type="text/csv")
        return stored.url, count
    target = Path(out)
    if target.is_dir():
        raise ConfigError(f"--out {target} is a folder; export-csv writes one file")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        count = write(partial)
        partial.replace(target)
    except OSError as exc:
        raise InputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    return str(target), count
