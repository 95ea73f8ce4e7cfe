"""Tables for the terminal: the end-of-run summary and ``imgpipe status``.

Every value that comes from data (creator names, URLs, row values, paths) is
printed as a :class:`~rich.text.Text`, never parsed as Rich markup: a creator
named ``bob [/]`` used to raise MarkupError after its batch had rendered, and
``[link=file:///etc/passwd]y[/link]`` became a link. Only our own labels carry
styles.

>>> from io import StringIO
>>> console = Console(file=StringIO(), width=60)
>>> table = Table()
>>> table.add_column("creator")
>>> table.add_row(*_cells("bob [/]"))
>>> console.print(table)
>>> "bob [/]" in console.file.getvalue()
True
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from imgpipe.domain.result_rows import row_label

if TYPE_CHECKING:
    from imgpipe.domain.records import BatchRecord, CreatorRecord
    from imgpipe.service.preview import CsvPreview
    from imgpipe.service.summary import BatchSummary

__all__ = ["print_batch", "print_batches", "print_preview", "print_summary"]

MAX_FAILED_ROWS = 20


def print_summary(console: Console, summary: BatchSummary, root: Path) -> None:
    totals = summary.totals
    table = Table(title=Text(f"Batch {summary.batch_id}"), show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    for label, key in (
        ("creators", "creators"),
        ("rendered", "completed"),
        ("unchanged (skipped)", "skipped_unchanged"),
        ("failed", "failed"),
        ("covers used", "images_used"),
        ("covers failed", "images_failed"),
        ("duplicate covers", "duplicates"),
        ("bad rows skipped", "row_problems"),
    ):
        table.add_row(*_cells(label, totals[key]))
    table.add_row(
        *_cells("duration", f"{summary.duration_s:.1f} s ({summary.images_per_second} images/s)")
    )
    console.print(table)

    if summary.failures_by_reason:
        reasons = Table(title="Failures by reason")
        reasons.add_column("reason")
        reasons.add_column("count", justify="right")
        for reason, count in summary.failures_by_reason.items():
            reasons.add_row(*_cells(reason, count))
        console.print(reasons)

    if summary.failed_urls:
        failed = Table(title="Failed covers")
        for column in ("creator", row_label(summary.source), "reason", "url"):
            failed.add_column(column, overflow="fold")
        for item in summary.failed_urls[:MAX_FAILED_ROWS]:
            cells = (item["creator"], item["line"], item["reason"] or "", item["url"])
            failed.add_row(*_cells(*cells))
        console.print(failed)
        hidden = len(summary.failed_urls) - MAX_FAILED_ROWS
        if hidden > 0:
            console.print(f"... and {hidden} more in the summary file")

    for problem in summary.row_problems[:MAX_FAILED_ROWS]:
        where = f"{row_label(summary.source)} {problem['line']}"
        line = f"{where}: skipped ({problem['reason']}) {problem['value']}"
        console.print(Text(line))

    console.print(Text(f"Summary: {root / summary.summary_key}"))
    console.print(Text.assemble("Gallery: ", (str(root / summary.gallery_key), "bold")))


def print_batches(console: Console, batches: list[BatchRecord], *, as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps([asdict(b) for b in batches]))
        return
    if not batches:
        console.print("no batches yet")
        return
    # An id is for copying into the next command: never cut or wrapped. On a narrow
    # terminal (80 columns) the other columns wrap at their spaces instead.
    table = Table(title="Batches", box=box.SIMPLE_HEAD, padding=0)
    longest = max(len(b.batch_id) for b in batches)
    table.add_column("batch", no_wrap=True, min_width=longest)
    # Wide enough for a date, for "completed" and for the headers: the rest wraps.
    table.add_column("started", min_width=10, overflow="fold")
    table.add_column("status", min_width=9, overflow="fold")
    for column in ("creators", "done", "unchanged", "failed"):
        table.add_column(column, justify="right", min_width=len(column), overflow="fold")
    for b in batches:
        table.add_row(
            *_cells(
                b.batch_id,
                b.created_at[:19].replace("T", " "),
                b.status.value.replace("_", " "),
                b.total_creators,
                b.completed,
                b.skipped,
                b.failed,
            )
        )
    console.print(table)


def print_batch(
    console: Console, batch: BatchRecord, records: list[CreatorRecord], *, as_json: bool
) -> None:
    if as_json:
        data = {"batch": asdict(batch), "creators": [asdict(r) for r in records]}
        console.print_json(json.dumps(data, ensure_ascii=False))
        return
    console.print(
        Text.assemble(
            (batch.batch_id, "bold"),
            f" {batch.status.value}: {batch.completed} rendered, "
            f"{batch.skipped} unchanged, {batch.failed} failed of {batch.total_creators}",
        )
    )
    table = Table()
    for column in ("creator", "status", "covers", "errors", "collage"):
        table.add_column(column, overflow="fold")
    for r in records:
        name = str(r.metadata.get("display_name", r.creator_name))
        table.add_row(
            *_cells(name, r.status.value, r.images_processed, r.error_count, r.collage_key or "")
        )
    console.print(table)


def print_preview(console: Console, preview: CsvPreview) -> None:
    """``run --dry-run``: the creators a batch would render and the rows it would skip."""
    details = preview.details
    console.print(
        Text.assemble(
            (str(details.get("source", "")), "bold"),
            f": {details.get('encoding')} ({details.get('encoding_chosen')}), columns ",
            (f"{details.get('creator_column')!r} and {details.get('url_column')!r}", "bold"),
            f", {preview.rows_read} rows, {preview.duplicate_rows} duplicate rows",
        )
    )
    table = Table(title=Text(f"{len(preview.creators)} creators, {preview.covers} covers"))
    for column in ("creator", "key", "covers"):
        table.add_column(column)
    for creator in preview.creators:
        table.add_row(*_cells(creator.creator, creator.key, creator.covers))
    console.print(table)
    if preview.problem_count:
        problems = Table(title=Text(f"{preview.problem_count} row problems (skipped)"))
        for column in ("line", "field", "reason", "value"):
            problems.add_column(column)
        for problem in preview.problems:
            problems.add_row(*_cells(problem.line, problem.field, problem.reason, problem.value))
        console.print(problems)
    console.print("dry run: nothing fetched, no batch recorded")


def _cells(*values: object) -> list[Text]:
    """Table cells as literal text: a plain ``str`` cell would be parsed as markup."""
    return [Text(str(value)) for value in values]
