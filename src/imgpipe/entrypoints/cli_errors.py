"""How a command fails: one ``error:`` line on stderr, and an exit code saying who acts.

2: the input or a setting is wrong (the caller fixes it); 4: the work could not
finish (a store or the SQL source failed, the batch is busy): rerun to continue::

    raise fail(str(exc), exit_code(exc)) from None
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from imgpipe.errors import ConfigError, ImgpipeError, InputError

if TYPE_CHECKING:  # rich costs ~35 ms of start-up: imported when something is printed
    from rich.console import Console

__all__ = ["EXIT_INPUT", "EXIT_UNFINISHED", "exit_code", "fail", "stderr_console"]

EXIT_INPUT = 2
EXIT_UNFINISHED = 4  # not the input's fault: a store failed or the batch is busy


def stderr_console() -> Console:
    """A rich console on stderr; rich is imported on the first call, not at start-up,
    so a ``--json`` or ``--quiet`` run that prints nothing with it never loads it."""
    from rich.console import Console

    return Console(stderr=True)


def fail(message: str, code: int = EXIT_INPUT) -> typer.Exit:
    """Print ``message`` as the command's error; the Exit to raise."""
    from rich.markup import escape

    # soft_wrap: one message, one line, whatever the width (stderr is often a file).
    # Messages quote data (a CSV header, a path), so they are escaped, never markup.
    stderr_console().print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True
    )
    return typer.Exit(code)


def exit_code(error: ImgpipeError) -> int:
    """Bad input or settings are the caller's to fix (2); anything else may pass (4)."""
    return EXIT_INPUT if isinstance(error, InputError | ConfigError) else EXIT_UNFINISHED
