"""How a command fails: one ``error:`` line on stderr, and an exit code saying who acts.

2: the input or a setting is wrong (the caller fixes it); 4: the work could not
finish (a store or the SQL source failed, the batch is busy): rerun to continue::

    raise fail(console, str(exc), exit_code(exc)) from None
"""

from __future__ import annotations

import typer
from rich.console import Console
from rich.markup import escape

from imgpipe.errors import ConfigError, ImgpipeError, InputError

__all__ = ["EXIT_INPUT", "EXIT_UNFINISHED", "exit_code", "fail"]

EXIT_INPUT = 2
EXIT_UNFINISHED = 4  # not the input's fault: a store failed or the batch is busy


def fail(console: Console, message: str, code: int = EXIT_INPUT) -> typer.Exit:
    """Print ``message`` as the command's error; the Exit to raise."""
    # soft_wrap: one message, one line, whatever the width (stderr is often a file).
    # Messages quote data (a CSV header, a path), so they are escaped, never markup.
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def exit_code(error: ImgpipeError) -> int:
    """Bad input or settings are the caller's to fix (2); anything else may pass (4)."""
    return EXIT_INPUT if isinstance(error, InputError | ConfigError) else EXIT_UNFINISHED
