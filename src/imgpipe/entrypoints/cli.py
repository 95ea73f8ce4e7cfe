"""``imgpipe`` command line: ``run`` a CSV (or a SQL query), show ``status`` of batches, and more.

Exit codes: 0 every creator rendered or unchanged, 3 some creators failed,
2 unusable input (missing file, no usable column, bad option), 4 the batch could
not finish (a store or the SQL source failed, or another process runs it; rerun to continue),
130 / 143 stopped by SIGINT / SIGTERM (rerun the same command to continue).
"""

from __future__ import annotations

import gc
import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from imgpipe.domain.spec import RANGES
from imgpipe.entrypoints import cli_aws, cli_service, cli_sql
from imgpipe.entrypoints.cli_errors import EXIT_UNFINISHED, exit_code, fail, stderr_console
from imgpipe.entrypoints.cli_logging import LogFormatName, LogFormatOption, setup_logging
from imgpipe.errors import ConfigError, ImgpipeError, InputError, column_role
from imgpipe.version import version

# What a command needs is imported inside it: `--help` and `--version` load no
# settings, engine or rich, and `run` no AWS, service or SQL wiring (the start-up of
# every run counts; tests/unit/test_startup_weight.py holds the line).
if TYPE_CHECKING:
    from rich.console import Console

    from imgpipe.service.progress import ProgressSink
    from imgpipe.service.summary import BatchSummary
    from imgpipe.settings import BatchSpec, Settings

__all__ = ["app", "main"]


app = typer.Typer(
    no_args_is_help=True,
    help="Turn spreadsheets of creator cover images into per-creator grid collages.",
    # Click's plain help: typer's rich panels print every flag as `--force <bool>`,
    # as if it took a value (typer 0.29), and show docstring markup as written.
    rich_markup_mode=None,
)


def _print_version(wanted: bool) -> None:
    if wanted:
        typer.echo(f"imgpipe {version()}")
        raise typer.Exit()


@app.callback()
def _root(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the installed version and exit.",
        ),
    ] = False,
) -> None:
    """Turn spreadsheets of creator cover images into per-creator grid collages."""


class CropName(StrEnum):
    """--crop's choices: the spec's CROP_MODES (domain/spec.py; a test holds them equal)."""

    CENTER = "center"  # not `center`: that is a str method
    SMART = "smart"


OutOption = Annotated[
    Path | None,
    typer.Option(
        "--out", "-o", help="Output folder (default: $IMGPIPE_DATA_DIR or ./imgpipe-data)."
    ),
]


def _ranged(option: str, help: str, flag: str | None = None) -> Any:
    """The option for the spec option ``option``, limited to its range (domain/spec.py).

    Its parameter is named ``option`` too, so a test can find every ranged flag.
    A value outside it is exit 2: "Invalid value for '--rows': 51 is outside the
    allowed range, 1 to 50". (Typer's own ``min``/``max`` would name one bound only.)
    """
    allowed = RANGES[option]

    def check(value: float | None) -> float | None:
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"{value} is outside the allowed range, {allowed}")
        return value

    decls = [flag] if flag else []
    return typer.Option(*decls, help=f"{help} Allowed: {allowed}.", callback=check)


@app.command()
def run(
    csv_file: Annotated[
        Path | None,
        typer.Argument(help="CSV of creators and cover URLs (or give --from-sql/--query)."),
    ] = None,
    out: OutOption = None,
    from_sql: cli_sql.FromSqlOption = None,
    query: cli_sql.QueryOption = None,
    rows: Annotated[int | None, _ranged("rows", "Grid rows [IMGPIPE_DEFAULT_ROWS=5].")] = None,
    cols: Annotated[int | None, _ranged("cols", "Grid columns [IMGPIPE_DEFAULT_COLS=7].")] = None,
    cell_size: Annotated[
        int | None, _ranged("cell_size", "Cell size in px [200].", "--cell")
    ] = None,
    quality: Annotated[
        int | None, _ranged("quality", "JPEG quality [IMGPIPE_DEFAULT_QUALITY=95].")
    ] = None,
    crop: Annotated[
        CropName | None,
        typer.Option(
            case_sensitive=False,
            help="Each cell is the cover's centre square, or the square over its faces "
            "(else over what stands out; needs the 'smart' extra for faces) "
            "[IMGPIPE_CROP=smart].",
        ),
    ] = None,
    max_images: Annotated[
        int | None,
        _ranged("max_images", "Covers per collage [IMGPIPE_DEFAULT_MAX_IMAGES_PER_CREATOR=35]."),
    ] = None,
    min_images: Annotated[
        int | None, _ranged("min_images", "Fewer usable covers fail the creator [1].")
    ] = None,
    near_duplicates: Annotated[
        int | None,
        _ranged(
            "near_duplicates",
            "Covers whose look differs in at most this many bits of 64 count once; "
            "0 turns it off [IMGPIPE_NEAR_DUPLICATES=6].",
        ),
    ] = None,
    concurrency: Annotated[
        int | None,
        _ranged("concurrency", "Downloads in flight [IMGPIPE_MAX_CONCURRENT_DOWNLOADS=8]."),
    ] = None,
    per_host_concurrency: Annotated[
        int | None,
        _ranged("per_host_concurrency", "Downloads in flight per host [8].", "--per-host"),
    ] = None,
    max_workers: Annotated[
        int | None,
        _ranged("max_workers", "Creators in flight [IMGPIPE_DEFAULT_MAX_WORKERS=8].", "--workers"),
    ] = None,
    timeout: Annotated[
        float | None,
        _ranged("timeout", "Seconds per download attempt [IMGPIPE_DEFAULT_TIMEOUT=30]."),
    ] = None,
    retries: Annotated[
        int | None, _ranged("retries", "Retries per download [IMGPIPE_DEFAULT_MAX_RETRIES=3].")
    ] = None,
    creator_column: Annotated[str | None, typer.Option(help="Name the creator column.")] = None,
    url_column: Annotated[str | None, typer.Option(help="Name the cover URL column.")] = None,
    encoding: Annotated[
        str | None,
        typer.Option(help="The CSV's text encoding (cp1252, latin-1, utf-16...) [detected]."),
    ] = None,
    allow_private_networks: Annotated[
        str | None,
        typer.Option(help="CIDR[,CIDR...] that may be fetched although private/loopback."),
    ] = None,
    notify_url: Annotated[
        str | None,
        typer.Option(
            help="POST the completion notice here [IMGPIPE_NOTIFY_URL]; "
            "signed when IMGPIPE_NOTIFY_SECRET is set."
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Re-render unchanged creators.")] = False,
    new_batch: Annotated[
        bool,
        typer.Option(
            "--new-batch", help="Start a new batch even if this input's last one is unfinished."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no table.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    log_format: LogFormatOption = LogFormatName.text,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Read and check the CSV, list its creators, covers and row problems; "
            "fetch nothing, record nothing.",
        ),
    ] = False,
) -> None:
    """Render one collage per creator of CSV_FILE, or of the rows of a SQL query."""
    from imgpipe.bootstrap import open_backend, resend_stranded_notices
    from imgpipe.bootstrap_local import run_csv
    from imgpipe.service.batch import BatchInterruptedError
    from imgpipe.service.progress import NullProgress
    from imgpipe.settings import Settings

    _freeze_imports()
    setup_logging(log_format, quiet=quiet)
    try:
        settings = _with_flags(
            Settings(), notify_url=notify_url, allow_private_networks=allow_private_networks
        )
        options = settings.batch_spec(
            rows=rows,
            cols=cols,
            cell_size=cell_size,
            quality=quality,
            crop=crop.value if crop is not None else None,
            max_images=max_images,
            min_images=min_images,
            near_duplicates=near_duplicates,
            concurrency=concurrency,
            per_host_concurrency=per_host_concurrency,
            max_workers=max_workers,
            timeout=timeout,
            retries=retries,
            creator_column=creator_column,
            url_column=url_column,
            encoding=encoding,
            allowed_networks=allow_private_networks,
            force=force or None,
        )
        sql = cli_sql.sql_source(settings, from_sql, query, csv_given=csv_file is not None)
        if csv_file is not None and not csv_file.is_file():
            raise InputError(f"CSV file not found: {csv_file}")
        if dry_run:
            if csv_file is None:
                raise ConfigError("--dry-run checks a CSV file; for a query, try export-csv")
            _dry_run(csv_file, options, as_json=as_json)
        backend = open_backend(settings, out_dir=out)
    except ImgpipeError as exc:
        raise fail(str(exc)) from None
    except ValueError as exc:  # pydantic validation of the environment
        raise fail(f"invalid settings: {exc}") from None

    try:
        # A notice whose sender was killed before it went out goes before this batch's own.
        _report_resent(resend_stranded_notices(backend))

        def start(progress: ProgressSink) -> BatchSummary:
            if sql is not None:
                from imgpipe.bootstrap_sql import run_sql

                return run_sql(
                    sql.url, sql.query, options, backend, progress=progress,
                    new_batch=new_batch, handle_signals=True,
                )  # fmt: skip
            assert csv_file is not None  # sql_source refused neither
            return run_csv(
                csv_file, options, backend, progress=progress, new_batch=new_batch,
                handle_signals=True,
            )  # fmt: skip

        # JSON logs are one object per line: no bar drawn between them, progress is logged.
        # Checked in this order so that a --quiet or --json run never imports rich.
        if quiet or as_json or log_format is LogFormatName.json:
            summary = start(NullProgress() if quiet else _log_progress())
        elif not (console := stderr_console()).is_terminal:
            summary = start(_log_progress())
        else:
            from imgpipe.entrypoints.progress_bar import RichProgress

            with RichProgress(console) as bar:
                summary = start(bar)
    except BatchInterruptedError as exc:
        from rich.markup import escape

        stderr_console().print(
            f"[bold yellow]interrupted:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
        )
        raise typer.Exit(128 + exc.signal if exc.signal else EXIT_UNFINISHED) from None
    except ImgpipeError as exc:
        role = column_role(exc)
        hint = f" (choose it with --{role}-column)" if role else ""
        raise fail(f"{exc}{hint}", exit_code(exc)) from None
    finally:
        backend.close()

    if as_json:
        sys.stdout.write(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2) + "\n")
    elif not quiet:
        from imgpipe.entrypoints.report import print_summary

        print_summary(_stdout_console(), summary, Path(backend.location))
    _report_notice(summary.extra.get("notice"))
    raise typer.Exit(summary.exit_code)


def _freeze_imports() -> None:
    """Freeze what a command has imported by now out of the collector's sight.

    Those objects (~50k) live as long as the process: frozen, the collections walk
    only what a run allocates (a full collection went from 18 ms to microseconds; a
    700-cover run spends 25 ms less in the collector). A command imports its own
    modules, after :func:`main` froze the CLI's, so it freezes again.
    """
    gc.freeze()


def _log_progress() -> ProgressSink:
    from imgpipe.entrypoints.progress import LogProgress

    return LogProgress()


def _stdout_console() -> Console:
    from rich.console import Console

    return Console()


def _with_flags(settings: Settings, **flags: str | None) -> Settings:
    """The settings with the flags given; downloads and the notice share the networks."""
    given = {name: value for name, value in flags.items() if value is not None}
    return settings.model_copy(update=given) if given else settings


def _report_notice(notice: dict[str, Any] | None) -> None:
    """One line per notice that did not go out; the batch's exit code stays its own."""
    for delivery in (notice or {}).get("deliveries", []):
        if delivery["status"] != "sent":
            from rich.markup import escape

            stderr_console().print(
                f"[bold yellow]notice not sent:[/] {escape(str(delivery['error']))} "
                f"({delivery['attempts']} attempt(s))",
                highlight=False,
                soft_wrap=True,
            )


def _report_resent(batch_ids: list[str]) -> None:
    for batch_id in batch_ids:
        stderr_console().print(
            f"notice of batch {batch_id} sent: its sender stopped before it went out",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def status(
    batch_id: Annotated[
        str | None, typer.Argument(help="A batch id; omit to list batches.")
    ] = None,
    out: OutOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
) -> None:
    """Show recent batches, or one batch's creators and failures."""
    from imgpipe.bootstrap import open_backend, reconcile_stale_batches, resend_stranded_notices
    from imgpipe.entrypoints.report import print_batch, print_batches
    from imgpipe.settings import Settings

    try:
        settings = Settings()
        root = (out or settings.data_dir).resolve()
        # Only the local backend keeps its state in a folder; on AWS it is the table.
        if settings.backend == "local" and not root.is_dir():
            raise InputError(f"no output folder at {root} (run `imgpipe run` first or pass --out)")
        where = str(root) if settings.backend == "local" else settings.dynamodb_table_name
        backend = open_backend(settings, out_dir=root)
    except ImgpipeError as exc:  # settings the backend refuses (a notice URL, a prefix)
        raise fail(str(exc), exit_code(exc)) from None
    except ValueError as exc:  # pydantic validation of the environment
        raise fail(f"invalid settings: {exc}") from None
    try:
        reconcile_stale_batches(backend)  # a running batch whose process died: interrupted
        _report_resent(resend_stranded_notices(backend))
        if batch_id is None:
            print_batches(_stdout_console(), backend.state.list_batches(), as_json=as_json)
            return
        batch = backend.state.get_batch(batch_id)
        if batch is None:
            raise fail(f"no batch {batch_id!r} in {where}")
        records = list(backend.state.creators_in_batch(batch_id))
        print_batch(_stdout_console(), batch, records, as_json=as_json)
    except ImgpipeError as exc:  # the state store unreachable: not the caller's to fix (4)
        raise fail(str(exc), exit_code(exc)) from None
    finally:
        backend.close()


def _dry_run(csv_file: Path, options: BatchSpec, *, as_json: bool) -> None:
    """Print what a run would work on, then exit 0 (InputError: the CSV is unusable)."""
    from imgpipe.bootstrap_local import preview_csv

    preview = preview_csv(csv_file, options)
    if as_json:
        sys.stdout.write(json.dumps(preview.to_dict(), ensure_ascii=False, indent=2) + "\n")
    else:
        from imgpipe.entrypoints.report import print_preview

        print_preview(_stdout_console(), preview)
    raise typer.Exit(0)


# Further command groups register themselves here, one line each (worker, dlq, serve...).
cli_aws.register(app)
cli_service.register(app)
cli_sql.register(app)


def main() -> None:
    _freeze_imports()  # the CLI's modules; a command freezes what it imports itself
    app()
