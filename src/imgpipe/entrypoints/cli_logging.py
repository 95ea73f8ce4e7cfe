"""``--log-format text|json`` (or ``IMGPIPE_LOG_FORMAT``) of ``run``, ``worker`` and ``serve``."""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Annotated

import typer

from imgpipe.logs import TEXT_FORMAT, configure_logging

__all__ = ["LogFormatName", "LogFormatOption", "setup_logging"]


class LogFormatName(StrEnum):
    text = "text"
    json = "json"


LogFormatOption = Annotated[
    LogFormatName,
    typer.Option(
        "--log-format",
        envvar="IMGPIPE_LOG_FORMAT",
        case_sensitive=False,
        help="Logs on stderr as text for people, or one JSON object per line"
        " (with batch_id and creator) for a log pipeline.",
    ),
]


def setup_logging(
    log_format: LogFormatName, *, quiet: bool = False, text_format: str = TEXT_FORMAT
) -> None:
    json = log_format is LogFormatName.json
    configure_logging(
        "json" if json else "text",
        level=logging.WARNING if quiet else logging.INFO,
        text_format=text_format,
    )
    if not json:
        # For people, a notice that did not go out is the one line the CLI prints, not two.
        logging.getLogger("imgpipe.service.notice").setLevel(logging.ERROR)
