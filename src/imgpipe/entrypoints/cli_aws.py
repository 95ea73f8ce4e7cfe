"""AWS commands: ``imgpipe worker``, ``imgpipe dlq list|redrive``, ``imgpipe aws-init``,
``imgpipe aws-open-batches``."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from imgpipe.entrypoints.cli_errors import stderr_console
from imgpipe.entrypoints.cli_logging import LogFormatName, LogFormatOption, setup_logging
from imgpipe.errors import ConfigError, ImgpipeError

# Registered on every start of `imgpipe` (for --help): what the commands use (boto3,
# the settings, rich) is imported inside them, so `imgpipe run` never loads it.
if TYPE_CHECKING:
    from imgpipe.adapters.sqs_queue import SqsWorkQueue
    from imgpipe.settings import Settings

__all__ = ["register"]

dlq_app = typer.Typer(
    help="Inspect and replay the dead-letter queue.",
    no_args_is_help=True,
    rich_markup_mode=None,  # flags shown as flags (see cli.py)
)


def _fail(exc: ImgpipeError) -> typer.Exit:
    from rich.markup import escape

    stderr_console().print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    return typer.Exit(2)


def _queues(settings: Settings) -> tuple[SqsWorkQueue, SqsWorkQueue]:
    from imgpipe.entrypoints.extras import require

    require("boto3", "aws")
    from imgpipe.adapters.sqs_queue import SqsWorkQueue

    if not settings.sqs_dlq_url:
        raise ConfigError("IMGPIPE_SQS_DLQ_URL is not set: name the dead-letter queue to read")
    return (
        SqsWorkQueue(settings.sqs_queue_url, settings=settings),
        SqsWorkQueue(settings.sqs_dlq_url, settings=settings),
    )


def worker(
    concurrency: Annotated[int, typer.Option(help="Messages handled at once.")] = 1,
    exit_when_idle: Annotated[
        float | None, typer.Option(help="Stop after the queue was empty this many seconds.")
    ] = None,
    retry_delay: Annotated[int, typer.Option(help="Seconds before a failed message returns.")] = 5,
    log_format: LogFormatOption = LogFormatName.text,
) -> None:
    """Long-poll IMGPIPE_SQS_QUEUE_URL (and IMGPIPE_PLAN_QUEUE_URL when set) and run each message
    through the Lambda handler's code: every message kind, from one queue or both."""
    import threading

    from imgpipe.entrypoints.extras import require

    try:
        require("boto3", "aws")
        require("aws_lambda_powertools", "aws")
    except ImgpipeError as exc:
        raise _fail(exc) from None
    from imgpipe.adapters.sqs_queue import SqsWorkQueue
    from imgpipe.entrypoints.aws_lambda import handle_record_body
    from imgpipe.entrypoints.worker import QueueWorker
    from imgpipe.settings import Settings

    setup_logging(log_format, text_format="%(message)s")
    settings = Settings()
    urls = [settings.sqs_queue_url]
    if settings.plan_queue_url and settings.plan_queue_url != settings.sqs_queue_url:
        urls.append(settings.plan_queue_url)
    try:
        runners = [
            QueueWorker(
                SqsWorkQueue(url, settings=settings),
                handle_record_body,
                concurrency=concurrency,
                retry_delay=retry_delay,
            )
            for url in urls
        ]
        threads = [
            threading.Thread(target=r.run, kwargs={"exit_when_idle": exit_when_idle})
            for r in runners[1:]
        ]
        for thread in threads:
            thread.start()
        runners[0].run(exit_when_idle=exit_when_idle)
        for runner in runners[1:]:
            runner.stop()
        for thread in threads:
            thread.join()
    except ImgpipeError as exc:
        raise _fail(exc) from exc
    totals = {
        name: sum(getattr(r.stats, name) for r in runners)
        for name in ("succeeded", "failed", "deferred")
    }
    print(json.dumps(totals))


@dlq_app.command("list")
def dlq_list(
    limit: Annotated[int, typer.Option(help="At most this many messages.")] = 10,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Show dead-lettered messages without consuming them."""
    from imgpipe.settings import Settings

    try:
        _, dlq = _queues(Settings())
        messages = dlq.peek(limit)
    except ImgpipeError as exc:
        raise _fail(exc) from None
    if as_json:
        print(json.dumps([{"id": m.message_id, "body": m.body} for m in messages]))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table("message id", "body")
    for message in messages:
        table.add_row(Text(message.message_id), Text(message.body[:200]))  # data, not markup
    Console().print(table)


@dlq_app.command("redrive")
def dlq_redrive(
    limit: Annotated[int | None, typer.Option(help="At most this many messages.")] = None,
) -> None:
    """Move dead-lettered messages back to the work queue."""
    from imgpipe.settings import Settings

    try:
        queue, dlq = _queues(Settings())
        moved = dlq.redrive_to(queue, limit)
    except ImgpipeError as exc:
        raise _fail(exc) from None
    print(json.dumps({"redriven": moved}))


def aws_init(
    prefix: Annotated[str, typer.Option(help="Name prefix of the resources.")] = "imgpipe",
) -> None:
    """Create buckets, queue + DLQ, table and notification on an AWS-compatible server."""
    from imgpipe.entrypoints.extras import require
    from imgpipe.settings import Settings

    try:
        require("boto3", "aws")
        from imgpipe.adapters.aws_resources import ensure_resources

        names = ensure_resources(Settings(), prefix=prefix)
    except ImgpipeError as exc:
        raise _fail(exc) from None
    for name, value in names.items():
        print(f"export {name}={value}")


def aws_open_batches() -> None:
    """Once, after upgrading a deployment to the open-batch-index: mark open the batches
    written before it (IMGPIPE_DYNAMODB_TABLE_NAME), so the sweep visits them too."""
    from imgpipe.entrypoints.extras import require
    from imgpipe.settings import Settings

    try:
        require("boto3", "aws")
        from imgpipe.adapters.aws_clients import make_client
        from imgpipe.adapters.dynamodb_pages import open_unmarked_batches

        settings = Settings()
        if not settings.dynamodb_table_name:
            raise ConfigError("IMGPIPE_DYNAMODB_TABLE_NAME is not set: name the state table")
        table = settings.dynamodb_table_name
        marked = open_unmarked_batches(make_client("dynamodb", settings), table)
    except ImgpipeError as exc:
        raise _fail(exc) from None
    print(json.dumps({"marked_open": marked}))


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.command("aws-init")(aws_init)
    app.command("aws-open-batches")(aws_open_batches)
    app.add_typer(dlq_app, name="dlq")
