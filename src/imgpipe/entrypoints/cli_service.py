"""``imgpipe serve`` (the HTTP service) and ``imgpipe compress`` (local files and folders).

Registered on every start of ``imgpipe`` (for ``--help``): what the commands use
(Pillow's compression, the settings, rich) is imported inside them, so that
``imgpipe run`` never loads it.
"""

from __future__ import annotations

import errno
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from imgpipe.entrypoints.cli_errors import (
    EXIT_INPUT,  # an unusable option: a busy --port too
    stderr_console,
)
from imgpipe.entrypoints.cli_logging import LogFormatName, LogFormatOption, setup_logging
from imgpipe.errors import ConfigError, ImageError, ImgpipeError

__all__ = ["compress", "register", "serve"]

EXIT_SOME_FAILED = 3


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Data folder (local backend).")
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    log_format: LogFormatOption = LogFormatName.text,
) -> None:
    """Serve the API (/v1, /docs), the dashboard (/), /healthz, /readyz and /metrics."""
    from rich.markup import escape

    from imgpipe.entrypoints.extras import require
    from imgpipe.settings import Settings

    if log_format is LogFormatName.json:
        setup_logging(log_format)

    try:
        require("uvicorn", "api")
        require("fastapi", "api")
        import uvicorn

        from imgpipe.entrypoints.api.app import create_app

        app = create_app(Settings(), out_dir=out)
        listener = _listen(host, port)
    except ImgpipeError as exc:
        stderr_console().print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
        raise typer.Exit(EXIT_INPUT) from exc
    port = listener.getsockname()[1]  # the one the system chose for --port 0
    banner = f"imgpipe dashboard on http://{host}:{port}/ (API docs at /docs)"
    if log_format is LogFormatName.json:  # stderr stays one JSON object per line
        logging.getLogger("imgpipe.serve").info(banner, extra={"port": port})
    else:
        stderr_console().print(banner)
    with listener:
        # JSON: uvicorn's loggers reach our root handler instead of its own text ones
        log_config = None if log_format is LogFormatName.json else uvicorn.config.LOGGING_CONFIG
        config = uvicorn.Config(app, log_level=log_level, log_config=log_config)
        uvicorn.Server(config).run(sockets=[listener])


_BACKLOG = 2048  # uvicorn's default


def _listen(host: str, port: int) -> socket.socket:
    """A socket bound to ``host``:``port``, or a ConfigError naming them.

    Bound here rather than by uvicorn, which logs a traceback-free error but exits
    3, the code for "some creators failed". A busy port, an address this machine
    does not have or a port it may not use are the caller's options to change: 2.
    """
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}") from exc
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        listener.bind(address)
        # Listening now, not when uvicorn starts: the banner names this port before
        # uvicorn's start-up, and a client that reads it and connects at once must be
        # queued in the backlog, not refused (a bound socket that does not listen yet
        # refuses connections).
        listener.listen(_BACKLOG)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use: stop what listens there"
                " or choose another with --port"
            ) from exc
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return listener


def compress(
    paths: Annotated[list[Path], typer.Argument(help="Image files and folders (recursive).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the results (mirrors the inputs).")
    ] = Path("compressed"),
    max_size: Annotated[
        int | None, typer.Option(help="Longest side in px [IMGPIPE_COMPRESS_MAX_SIZE=800].")
    ] = None,
    quality: Annotated[
        int | None, typer.Option(help="JPEG quality [IMGPIPE_COMPRESS_QUALITY=85].")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Results as JSON on stdout.")] = False,
) -> None:
    """Compress images to JPEGs within 800x800 (q85); never writes a larger file.

    photos/a.png becomes <out>/photos/a.jpg; a file that would not get
    smaller is copied unchanged under its own name. Exit 3 if any file failed.
    """
    from imgpipe.service.compress import EXTENSIONS, CompressOptions, compress_image
    from imgpipe.settings import Settings

    options = CompressOptions.from_settings(Settings(), max_size=max_size, quality=quality)
    out = out.resolve()
    results: list[dict[str, object]] = []
    for source, relative in _images(paths, skip=out):
        entry: dict[str, object] = {"file": str(source)}
        try:
            result = compress_image(source.read_bytes(), options)
        except ImageError as exc:
            entry["error"] = f"{exc.reason}: {exc.detail}"
        except OSError as exc:
            entry["error"] = f"unreadable: {exc.strerror or exc}"
        else:
            target = out / (relative if result.kept_original else relative.with_suffix(".jpg"))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(result.data)
            entry.update(result.to_dict(), output=str(target))
        results.append(entry)
    failed = sum(1 for r in results if "error" in r)
    if as_json:
        print(json.dumps(results, indent=2))
    else:
        _print_results(results)
    if not results:
        wanted = " ".join(EXTENSIONS)
        stderr_console().print(f"[bold red]error:[/] no images ({wanted}) found")
        raise typer.Exit(2)
    if failed:
        raise typer.Exit(EXIT_SOME_FAILED)


def _images(paths: list[Path], *, skip: Path) -> Iterator[tuple[Path, Path]]:
    """(file, path relative to the output folder) for each image, folders walked in order."""
    from imgpipe.service.compress import EXTENSIONS

    for path in paths:
        if path.is_dir():
            root = path.resolve()
            for file in sorted(root.rglob("*")):
                if file.is_file() and file.suffix.lower() in EXTENSIONS:
                    if not file.is_relative_to(skip):  # never recompress our own output
                        yield file, Path(root.name) / file.relative_to(root)
        else:
            yield path, Path(path.name)


def _print_results(results: list[dict[str, object]]) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table("file", "original", "compressed", "ratio", "result")
    for r in results:
        if "error" in r:
            # File names and errors are data: Text, never markup.
            table.add_row(Text(str(r["file"])), "", "", "", Text(str(r["error"]), style="red"))
            continue
        note = "kept original (already smaller)" if r["kept_original"] else str(r["output"])
        sizes = (str(r[k]) for k in ("original_size", "compressed_size", "ratio"))
        table.add_row(Text(str(r["file"])), *sizes, Text(note))
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(compress)
