"""Classify a source string and read local sources from disk.

A cover "URL" in a CSV is one of three things:

* an ``http://`` or ``https://`` URL, fetched over the network;
* a local file: a ``file://`` URL or a plain path (absolute, or relative to the
  folder of the CSV), read from disk when local files are allowed;
* anything else (``ftp:``, ``data:``, ``javascript:``, ``s3:``...), refused as
  ``unsupported_scheme``.

The manifest parser and the downloader share :func:`source_scheme`, so both
agree on what a string is. Example::

    >>> source_scheme("HTTPS://cdn.example.com/a.jpg"), source_scheme("covers/a.jpg")
    ('https', '')
    >>> source_scheme("C:\\\\covers\\\\a.jpg"), source_scheme("data:image/png;base64,AAAA")
    ('', 'data')
"""

from __future__ import annotations

import os
import re
import stat
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from imgpipe.domain.records import Reason
from imgpipe.errors import FetchError

__all__ = [
    "SourceKind",
    "classify_source",
    "local_path",
    "read_local_file",
    "source_scheme",
]

# RFC 3986 scheme syntax, anchored at the start. A one-letter "scheme" is a
# Windows drive letter (C:\x.jpg), so it is treated as a path.
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*):")
_REMOTE_SCHEMES = frozenset({"http", "https"})


class SourceKind(StrEnum):
    """What the downloader does with a source string."""

    REMOTE = "remote"  # http(s): fetched over the network
    LOCAL = "local"  # file:// URL or plain path: read from disk
    UNSUPPORTED = "unsupported"  # any other scheme


def source_scheme(text: str) -> str:
    """The lower-cased scheme of ``text``, or ``""`` when it is a plain path.

    ``"http"``, ``"https"``, ``"file"``, ``""`` (a path, including ``C:\\x.jpg``)
    or any other scheme as written (``"ftp"``, ``"data"``, ``"s3"``).
    """
    match = _SCHEME.match(text.strip())
    if match is None or len(match.group(1)) == 1:
        return ""
    return match.group(1).lower()


def classify_source(text: str) -> SourceKind:
    """Remote, local or unsupported, by :func:`source_scheme` alone (no I/O)."""
    scheme = source_scheme(text)
    if scheme in _REMOTE_SCHEMES:
        return SourceKind.REMOTE
    if scheme in ("", "file"):
        return SourceKind.LOCAL
    return SourceKind.UNSUPPORTED


def local_path(text: str, base_dir: Path | None = None) -> Path:
    """The file a local source names; relative paths are taken from ``base_dir``.

    ``file:///abs/a%20b.jpg`` -> ``/abs/a b.jpg``; ``file://localhost/...`` is
    accepted, a ``file://`` URL naming another host is ``invalid_url`` (a
    :class:`FetchError`). ``~`` is not expanded: the CSV is untrusted input.
    """
    text = text.strip()
    if source_scheme(text) == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise FetchError(
                Reason.INVALID_URL, f"file URL names host {parts.netloc!r}, not this machine"
            )
        raw = url2pathname(parts.path)
    else:
        raw = text
    if not raw:
        raise FetchError(Reason.INVALID_URL, "empty file path")
    path = Path(raw)
    if not path.is_absolute():
        path = (base_dir if base_dir is not None else Path.cwd()) / path
    return path.absolute()


def read_local_file(path: Path, max_bytes: int) -> bytes:
    """Read a regular file of at most ``max_bytes`` bytes (blocking; run it in a thread).

    Raises :class:`FetchError` with ``file_not_found`` (missing, unreadable, not
    a regular file), ``too_large`` or ``invalid_url`` (a path the OS rejects).
    """
    try:
        # O_NONBLOCK so that naming a FIFO cannot hang the thread in open();
        # it has no effect on regular files, and fstat on the open descriptor
        # means the size we check is the size of the file we read.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FetchError(Reason.FILE_NOT_FOUND, f"no such file: {path}") from None
    except (IsADirectoryError, NotADirectoryError):
        raise FetchError(Reason.FILE_NOT_FOUND, f"not a file: {path}") from None
    except PermissionError:
        raise FetchError(Reason.FILE_NOT_FOUND, f"permission denied: {path}") from None
    except ValueError as exc:  # e.g. an embedded NUL byte
        raise FetchError(Reason.INVALID_URL, f"unusable path {str(path)!r}: {exc}") from None
    except OSError as exc:
        raise FetchError(Reason.FILE_NOT_FOUND, f"cannot open {path}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise FetchError(Reason.FILE_NOT_FOUND, f"not a regular file: {path}")
        if info.st_size > max_bytes:
            raise FetchError(
                Reason.TOO_LARGE, f"file is {info.st_size} bytes, limit is {max_bytes}"
            )
        with os.fdopen(fd, "rb", closefd=False) as handle:
            # Sized by fstat: asking for max_bytes + 1 at once made every read
            # allocate (and shrink) 50 MB. One byte more tells us if the file grew
            # since; then the rest is read, one byte past the limit at most.
            data = handle.read(info.st_size + 1)
            if len(data) > info.st_size:
                data += handle.read(max_bytes + 1 - len(data))
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise FetchError(Reason.TOO_LARGE, f"file grew past the limit of {max_bytes} bytes")
    return data
