"""ObjectStore on a local folder, with the same key layout as the S3 buckets.

Keys are ``/``-separated relative paths below ``root``. Writes are atomic (a
reader sees the old bytes or the new ones, never half a file) and
``if_absent`` is race-free between threads and processes::

    store = LocalObjectStore(Path("imgpipe-data"))
    obj = store.put("collages/by-creator/Ann/collage_20260102_030405.jpg", data,
                    content_type="image/jpeg", if_absent=True)
    obj.url   # 'file:///.../imgpipe-data/collages/by-creator/Ann/collage_...jpg'
"""

from __future__ import annotations

import errno
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from imgpipe.errors import KeyCollisionError, StorageError
from imgpipe.ports import StoredObject

__all__ = ["LocalObjectStore", "check_key", "check_range"]

_TEMP_PREFIX = ".imgpipe-tmp-"


def check_key(key: str) -> None:
    """Raise StorageError unless ``key`` is a relative ``/``-separated path that stays put.

    Shared with the in-memory fake so unit tests refuse the keys a folder would.

    >>> check_key("collages/a.jpg")
    >>> check_key("../x")
    Traceback (most recent call last):
    imgpipe.errors.StorageError: invalid object key: '../x'
    """
    if (
        not key
        or "\\" in key
        or "\x00" in key
        or any(segment in ("", ".", "..") for segment in key.split("/"))
    ):
        raise StorageError(f"invalid object key: {key!r}")


def check_range(start: int, length: int) -> None:
    """Refuse a negative offset or length (shared by every store's ``get_range``).

    >>> check_range(0, -1)
    Traceback (most recent call last):
    ValueError: byte range needs start >= 0 and length >= 0, got 0 and -1
    """
    if start < 0 or length < 0:
        raise ValueError(f"byte range needs start >= 0 and length >= 0, got {start} and {length}")


class LocalObjectStore:
    """Keyed bytes in a folder.

    ``content_type`` and ``metadata`` are accepted for the port's sake and
    ignored: a plain folder has no per-file metadata, and the key's extension
    already tells a browser or a file manager what the bytes are.

    Writes are atomic but not fsync'ed unless ``durable=True``: an fsync per
    collage costs milliseconds each on a laptop disk, and a file lost to a power
    cut is redrawn by the next run.
    """

    def __init__(self, root: Path, *, durable: bool = False) -> None:
        self.root = Path(root).resolve()
        self.durable = durable

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = self._write_temp(path, data)
            try:
                if if_absent:
                    self._link_new(temp, path, data, key)
                else:
                    os.replace(temp, path)
            finally:
                temp.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot write {key}: {exc.strerror or exc}") from exc
        return StoredObject(key=key, size=len(data), url=path.as_uri())

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except FileNotFoundError as exc:
            raise StorageError(f"no such key: {key}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc

    def open(self, key: str) -> BinaryIO:
        path = self._path(key)
        try:
            # A put replaces the file by rename, so an open reader keeps the bytes it began.
            return path.open("rb")
        except FileNotFoundError as exc:
            raise StorageError(f"no such key: {key}") from exc
        except OSError as exc:
            raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        with self.open(key) as stream:
            try:
                stream.seek(start)
                return stream.read(length)
            except OSError as exc:
                raise StorageError(f"cannot read {key}: {exc.strerror or exc}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._path(key).stat().st_size
        except FileNotFoundError as exc:
            raise StorageError(f"no such key: {key}") from exc
        except OSError as exc:
            raise StorageError(f"cannot stat {key}: {exc.strerror or exc}") from exc

    def move(self, source: str, target: str) -> None:
        old, new = self._path(source), self._path(target)
        try:
            new.parent.mkdir(parents=True, exist_ok=True)
            os.replace(old, new)
        except FileNotFoundError as exc:
            raise StorageError(f"no such key: {source}") from exc
        except OSError as exc:
            raise StorageError(f"cannot move {source}: {exc.strerror or exc}") from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot delete {key}: {exc.strerror or exc}") from exc

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` (a string prefix, as in S3), sorted::

        store.list("collages/by-creator/A")
        # -> "collages/by-creator/Ann/collage_20260102_030405.jpg", ...
        """
        if "\x00" in prefix:
            return iter(())
        # Walk only the deepest folder the prefix names fully; "a/b" may match "a/bc/...".
        folder = self.root.joinpath(*prefix.split("/")[:-1]) if "/" in prefix else self.root
        if not folder.resolve().is_relative_to(self.root) or not folder.is_dir():
            return iter(())
        keys: list[str] = []
        try:
            for dirpath, dirnames, filenames in os.walk(folder):
                dirnames.sort()
                base = Path(dirpath).relative_to(self.root).as_posix()
                for name in filenames:
                    if name.startswith(_TEMP_PREFIX):
                        continue  # a write in flight, not an object
                    key = name if base == "." else f"{base}/{name}"
                    if key.startswith(prefix):
                        keys.append(key)
        except OSError as exc:
            raise StorageError(f"cannot list {prefix!r}: {exc.strerror or exc}") from exc
        return iter(sorted(keys))

    def url_for(self, key: str, *, expires_in: int | None = None) -> str:
        return self._path(key).as_uri()  # a file does not expire

    def _path(self, key: str) -> Path:
        """The file for ``key``; StorageError for any key that could leave ``root``."""
        check_key(key)
        if key.rsplit("/", 1)[-1].startswith(_TEMP_PREFIX):
            raise StorageError(f"invalid object key (reserved name): {key!r}")
        path = self.root.joinpath(*key.split("/"))
        # Belt and braces: a symlink inside root must not lead outside it either.
        if not path.resolve().is_relative_to(self.root):
            raise StorageError(f"object key leaves the store: {key!r}")
        return path

    def _write_temp(self, path: Path, data: bytes) -> Path:
        # Same folder as the target, so the final rename or link never crosses
        # filesystems; os.open with 0o666 lets the umask decide the final mode
        # (mkstemp would leave every object private to this user).
        temp = path.with_name(f"{_TEMP_PREFIX}{secrets.token_hex(8)}")
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                if self.durable:
                    handle.flush()
                    os.fsync(handle.fileno())
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return temp

    @staticmethod
    def _link_new(temp: Path, path: Path, data: bytes, key: str) -> None:
        """Publish ``temp`` as ``path`` only if ``path`` is free, else KeyCollisionError."""
        try:
            try:
                # link() refuses an existing target atomically, unlike exists() + replace().
                os.link(temp, path)
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                # No hard links here (FAT, some network mounts): O_EXCL is still
                # race-free, though a reader may briefly see a partial file.
                with open(path, "xb") as handle:
                    handle.write(data)
        except FileExistsError as exc:
            raise KeyCollisionError(f"key already exists: {key}") from exc
