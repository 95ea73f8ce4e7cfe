"""The SQL source on the command line: ``run --from-sql URL --query SQL`` and ``export-csv``.

The database URL comes from ``--from-sql`` or, to keep its password out of argv
and ``ps``, from ``IMGPIPE_SQL_URL``; ``--query`` alone uses the latter::

    IMGPIPE_SQL_URL='mysql+pymysql://reader:***@db/covers' \\
        imgpipe run --query "SELECT creator_name, cover_url FROM videos"
    imgpipe export-csv --query "SELECT ..." --out s3://input-bucket/csv-files/

SQLAlchemy (the ``sql`` extra) is imported only when a query runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from imgpipe.entrypoints.cli_errors import exit_code, fail, stderr_console
from imgpipe.errors import ConfigError, ImgpipeError, column_role

if TYPE_CHECKING:  # `run` imports this module for its flags: settings come with the command
    from imgpipe.settings import Settings

__all__ = ["FromSqlOption", "QueryOption", "SqlSource", "export_csv", "register", "sql_source"]

FromSqlOption = Annotated[
    str | None,
    typer.Option(
        "--from-sql",
        metavar="URL",
        help="Read the rows from this SQLAlchemy URL (mysql+pymysql://..., sqlite:///...) "
        "with --query; IMGPIPE_SQL_URL keeps the password out of argv.",
        show_default=False,
    ),
]
QueryOption = Annotated[
    str | None,
    typer.Option(
        "--query",
        metavar="SQL",
        help="The SELECT whose rows name creators and cover URLs (same column names as a CSV).",
        show_default=False,
    ),
]


@dataclass(frozen=True)
class SqlSource:
    url: str
    query: str

    def __repr__(self) -> str:  # the URL may hold a password
        return f"SqlSource(query={self.query!r})"


def sql_source(
    settings: Settings, from_sql: str | None, query: str | None, *, csv_given: bool
) -> SqlSource | None:
    """The SQL source the flags ask for, or None for a CSV; ConfigError if they disagree."""
    if from_sql is None and query is None:
        if not csv_given:
            raise ConfigError(
                "give a CSV file, or a query: --query SQL with --from-sql URL or IMGPIPE_SQL_URL"
            )
        return None
    if csv_given:
        raise ConfigError("give either a CSV file or --from-sql/--query, not both")
    if not query or not query.strip():
        raise ConfigError("--from-sql needs --query SQL (the SELECT to read)")
    url = from_sql or settings.sql_url
    if not url:
        raise ConfigError("--query needs a database: --from-sql URL or IMGPIPE_SQL_URL")
    from imgpipe.entrypoints.extras import require

    require("sqlalchemy", "sql")
    return SqlSource(url, query)


def export_csv(
    out: Annotated[
        str,
        typer.Option(
            "--out", "-o", help="The CSV file to write, or s3://bucket/key.csv (or .../prefix/)."
        ),
    ],
    query: QueryOption = None,
    from_sql: FromSqlOption = None,
    creator_column: Annotated[str | None, typer.Option(help="Name the creator column.")] = None,
    url_column: Annotated[str | None, typer.Option(help="Name the cover URL column.")] = None,
) -> None:
    """Write a query's rows as a CSV that `imgpipe run` and the AWS flow read."""
    from rich.markup import escape

    from imgpipe.bootstrap_sql import export_sql_csv
    from imgpipe.settings import Settings

    try:
        settings = Settings()
        source = sql_source(settings, from_sql, query, csv_given=False)
        if source is None:  # unreachable: without a CSV, sql_source returns one or raises
            raise ConfigError("export-csv needs --query")
        where, rows = export_sql_csv(
            source.url,
            source.query,
            out,
            settings,
            creator_column=creator_column,
            url_column=url_column,
        )
    except ImgpipeError as exc:
        role = column_role(exc)
        hint = f" (choose it with --{role}-column, or alias it in the query)" if role else ""
        raise fail(f"{exc}{hint}", exit_code(exc)) from None
    except ValueError as exc:  # pydantic validation of the environment
        raise fail(f"invalid settings: {exc}") from None
    shown = where if where.startswith("s3://") else str(Path(where).resolve())
    message = f"exported {rows} rows to {escape(shown)}"
    stderr_console().print(message, highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("export-csv")(export_csv)
