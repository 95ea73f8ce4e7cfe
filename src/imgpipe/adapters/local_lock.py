"""Batch locks on this machine: an ``flock`` on one file per batch.

The operating system drops the lock the moment its process dies (``kill -9``
included), so a lock that can be taken proves that no process on this machine
is running the batch: a rerun takes its claims over at once instead of waiting
for their leases, and ``imgpipe status`` shows the batch as interrupted::

    locks = FileBatchLocks(Path("imgpipe-data/locks"))
    lock = locks.acquire("20261123-101500-1a2b3c4d")   # None: another process has it
    ...
    lock.release()
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from imgpipe.domain.keys import check_batch_id
from imgpipe.errors import StateError

__all__ = ["FileBatchLocks", "FileLock"]

PROBE_WAIT_SECONDS = 0.5


class FileLock:
    """A held lock; released by :meth:`release` or by the process ending."""

    def __init__(self, fd: int, path: Path) -> None:
        self._fd: int | None = fd
        self.path = path

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class FileBatchLocks:
    """One lock file per batch id under ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, batch_id: str) -> Path:
        check_batch_id(batch_id)
        return self.folder / f"{batch_id}.lock"

    def acquire(self, batch_id: str, *, wait: float = PROBE_WAIT_SECONDS) -> FileLock | None:
        """The lock, or None when another process still holds it after ``wait`` seconds.

        The short wait outlasts :meth:`is_held`'s probe of another ``imgpipe status``,
        which holds the lock for microseconds; a running batch holds it for good.
        """
        path = self._path(batch_id)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"cannot open the batch lock {path}: {exc}") from exc
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    os.close(fd)
                    return None
                time.sleep(0.02)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return FileLock(fd, path)

    def is_held(self, batch_id: str) -> bool:
        """True while some process holds the batch's lock."""
        lock = self.acquire(batch_id, wait=0.0)
        if lock is None:
            return True
        lock.release()
        return False
