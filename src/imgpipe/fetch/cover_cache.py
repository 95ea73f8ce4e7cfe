"""An on-disk cache of cover bytes keyed by the URL exactly as given, bounded in bytes.

It only stores and finds; the HTTP rules (validators, freshness) are in
:mod:`.revalidation` and the decisions in :class:`~.downloader.Downloader`.

Layout: ``<root>/<k[:2]>/<k>`` where ``k`` is the sha256 of the URL, plus
``<root>/index.sqlite3``. Each entry is ONE file -- a magic line, a JSON
header line (:class:`CachedCover` plus the body's sha256), then the body --
so one ``os.replace`` publishes header and body together: a reader sees the
old entry or the new one, never half of each. A file that does not parse,
is shorter or longer than its header says, or whose body does not match its
digest is a miss (and is removed), never an exception. Files are not
fsynced: after a power cut the digest catches a torn entry, which is cheaper
than an fsync per cover.

Example:

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> cache = CoverCache(root, max_bytes=1_000_000)
>>> cover = CachedCover("https://cdn.example/a.jpg", size=3, image_format="jpeg",
...                     final_url="https://cdn.example/a.jpg", etag='"v1"')
>>> cache.store(cover, b"abc")
True
>>> cache.lookup("https://cdn.example/a.jpg") == cover, cache.load(cover)
(True, b'abc')
>>> cache.lookup("https://cdn.example/b.jpg") is None
True
>>> import shutil; shutil.rmtree(root)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["CachedCover", "CoverCache"]

log = logging.getLogger(__name__)

_MAGIC = b"imgpipe-cover/1\n"
_MAX_HEADER = 64 * 1024  # a header is ~1 KB; long signed redirect chains stay far below
_LOW_WATER = 0.9  # evict down to 90 %: a full cache then pays one eviction per ~10 % stored
_BUSY_SECONDS = 30.0  # how long a process waits for another's index transaction


@dataclass(frozen=True)
class CachedCover:
    """What is known about one cached cover besides its bytes.

    ``hops`` are the URLs requested when it was stored, start to final (each
    one passed the address guard then). ``fresh_until`` is a Unix time before
    which the cover may be used without asking the server (0: always ask);
    ``lifetime`` is the freshness it was given, so a 304 can renew it.
    """

    url: str
    size: int
    image_format: str
    final_url: str
    content_type: str | None = None
    hops: tuple[str, ...] = ()
    etag: str | None = None
    last_modified: str | None = None
    lifetime: float = 0.0
    fresh_until: float = 0.0


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "url": (str,),
    "size": (int,),
    "image_format": (str,),
    "final_url": (str,),
    "content_type": (str, type(None)),
    "hops": (list,),
    "etag": (str, type(None)),
    "last_modified": (str, type(None)),
    "lifetime": (int, float),
    "fresh_until": (int, float),
}
assert set(_FIELD_TYPES) == {spec.name for spec in fields(CachedCover)}


def _cover_from(header: dict[str, Any]) -> CachedCover | None:
    """The cover a parsed header describes, or None if any field is missing or mistyped."""
    values: dict[str, Any] = {name: header.get(name) for name in _FIELD_TYPES}
    for name, types in _FIELD_TYPES.items():
        # bool is an int to isinstance; no field of ours is a bool.
        if not isinstance(values[name], types) or isinstance(values[name], bool):
            return None
    hops = values["hops"]
    if not all(isinstance(hop, str) for hop in hops) or values["size"] < 0:
        return None
    values["hops"] = tuple(hops)
    return CachedCover(**values)


def url_key(url: str) -> str:
    """The cache key of a URL: sha256 of the string exactly as given."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class _Index:
    """LRU bookkeeping in SQLite, one connection per thread.

    Why SQLite and not file mtimes: to bound the folder we need its total
    size and, when over, its least recently used entries. With mtimes both
    mean stat-ing every file on every eviction and either holding the list
    in RAM or scanning twice; atime is often off (noatime, relatime). The
    index answers both from a B-tree on ``used`` while streaming rows, and
    its locking keeps two processes' accounting consistent. It is advisory:
    an entry file is valid on its own, and a file the index lost is counted
    again when it is next read.
    """

    path: Path
    _ready: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)
    _local: threading.local = field(default_factory=threading.local, init=False)

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per thread, kept: threads never share one. One per
        # operation cost 2.5 ms of CPU a stored cover, mostly in close(): the
        # last connection of a WAL database to close checkpoints it.
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._open()
            self._local.db = db
        try:
            yield db
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                if db.in_transaction:  # a kept connection must not stay mid-transaction
                    db.rollback()
                if isinstance(exc, sqlite3.Error):  # a broken one is not kept
                    self._local.db = None
                    db.close()
            raise

    def _open(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=_BUSY_SECONDS, isolation_level=None)
        with self._lock:
            if not self._ready:
                self._create(db)
                self._ready = True
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    @staticmethod
    def _create(db: sqlite3.Connection) -> None:
        with contextlib.suppress(sqlite3.OperationalError):
            # WAL: commits need no fsync and readers never block the writer.
            # Another process switching at the same moment may hold the lock;
            # the default journal works too, only slower.
            db.execute("PRAGMA journal_mode=WAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS covers"
            " (key TEXT PRIMARY KEY, bytes INTEGER NOT NULL, used REAL NOT NULL) WITHOUT ROWID"
        )
        db.execute("CREATE INDEX IF NOT EXISTS covers_used ON covers (used)")


class CoverCache:
    """Cover bytes on disk under ``root``, at most ``max_bytes`` of entry files (0: off).

    Safe for several threads and processes on one folder. Every method
    turns disk and index trouble into a miss or a no-op (logged), because a
    cache must never be the reason a fetch fails. ``clock`` is for tests.
    """

    def __init__(
        self, root: Path, max_bytes: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes
        self._clock = clock
        self._index = _Index(self.root / "index.sqlite3")

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def lookup(self, url: str) -> CachedCover | None:
        """The entry's description if a well-formed entry exists; reads the header only."""
        if not self.enabled:
            return None
        path = self._path(url_key(url))
        try:
            with path.open("rb") as handle:
                cover, _ = self._read_header(handle, url, os.fstat(handle.fileno()).st_size)
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cover cache: cannot read %s: %s", path, exc)
            return None
        if cover is None:
            self._drop(url)
        return cover

    def load(self, cover: CachedCover) -> bytes | None:
        """The body of ``cover``, if the entry on disk is still exactly that cover.

        None when it was replaced (another header), removed or damaged.
        Marks the entry as used for the LRU order.
        """
        if not self.enabled:
            return None
        key = url_key(cover.url)
        try:
            with self._path(key).open("rb") as handle:
                total = os.fstat(handle.fileno()).st_size
                found, digest = self._read_header(handle, cover.url, total)
                body = handle.read(cover.size + 1) if found == cover else None
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("cover cache: cannot read the entry of %s: %s", cover.url, exc)
            return None
        if found is None or (body is not None and hashlib.sha256(body).hexdigest() != digest):
            self._drop(cover.url)
            return None
        if body is None:
            return None  # a newer entry of the same URL: not the one that was asked about
        self._guard(self._touch, key, total)
        return body

    def store(self, cover: CachedCover, body: bytes) -> bool:
        """Write (or replace) the entry of ``cover.url``; False if it was not stored."""
        if len(body) != cover.size:
            raise ValueError(f"cover.size is {cover.size} but the body has {len(body)} bytes")
        if not self.enabled:
            return False
        header = dict(asdict(cover), sha256=hashlib.sha256(body).hexdigest())
        line = json.dumps(header, separators=(",", ":")).encode() + b"\n"
        total = len(_MAGIC) + len(line) + len(body)
        if len(line) > _MAX_HEADER or total > self.max_bytes:
            return False
        key = url_key(cover.url)
        path = self._path(key)
        # Counted before the file exists: a crash in between leaves a row
        # without a file (harmless, evicted in turn), never an uncounted file.
        if not self._guard(self._upsert, key, total):
            return False
        temp = path.with_name(f".{key}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with temp.open("wb") as handle:
                handle.write(_MAGIC + line)
                handle.write(body)
            os.replace(temp, path)
        except OSError as exc:
            log.warning("cover cache: cannot write the entry of %s: %s", cover.url, exc)
            temp.unlink(missing_ok=True)
            return False
        return self._guard(self._settle, key)

    def discard(self, url: str) -> None:
        """Remove the entry of ``url`` if there is one."""
        if self.enabled:
            self._drop(url)

    def total_bytes(self) -> int:
        """Bytes of entry files as the index counts them."""
        if not self.enabled or not self._index.path.exists():
            return 0
        with self._index.connect() as db:
            (total,) = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM covers").fetchone()
        return int(total)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / key

    @staticmethod
    def _read_header(handle: BinaryIO, url: str, total: int) -> tuple[CachedCover | None, str]:
        """The header at the handle's start if it is ours, for ``url`` and fits ``total``."""
        if handle.read(len(_MAGIC)) != _MAGIC:
            return None, ""
        line = handle.readline(_MAX_HEADER + 1)
        if not line.endswith(b"\n"):
            return None, ""
        try:
            header = json.loads(line)
        except ValueError:  # also UnicodeDecodeError
            return None, ""
        if not isinstance(header, dict) or not isinstance(header.get("sha256"), str):
            return None, ""
        cover = _cover_from(header)
        # Another URL (a hash collision) or a truncated or padded body: not this entry.
        if cover is None or cover.url != url or total != len(_MAGIC) + len(line) + cover.size:
            return None, ""
        return cover, header["sha256"]

    def _guard(self, operation: Callable[..., object], *args: Any) -> bool:
        try:
            operation(*args)
        except (OSError, sqlite3.Error) as exc:
            log.warning("cover cache index %s: %s", self._index.path, exc)
            return False
        return True

    def _drop(self, url: str) -> None:
        key = url_key(url)
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            # Nothing stored: the common case (a response that may not be kept, of
            # a URL never kept), so the index is not opened: a SQLite connection
            # and a write transaction a cover. A row a crash left without its file
            # is harmless, and evicted in turn.
            return
        except OSError as exc:
            log.warning("cover cache: cannot remove the entry of %s: %s", url, exc)
        self._guard(self._forget, key)

    def _forget(self, key: str) -> None:
        with self._index.connect() as db:
            db.execute("DELETE FROM covers WHERE key = ?", (key,))

    def _upsert(self, key: str, size: int, db: sqlite3.Connection | None = None) -> None:
        sql = (
            "INSERT INTO covers (key, bytes, used) VALUES (?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET bytes = excluded.bytes, used = excluded.used"
        )
        if db is not None:
            db.execute(sql, (key, size, self._clock()))
            return
        with self._index.connect() as own:
            own.execute(sql, (key, size, self._clock()))

    def _touch(self, key: str, size: int) -> None:
        with self._index.connect() as db:
            touched = db.execute(
                "UPDATE covers SET used = ? WHERE key = ?", (self._clock(), key)
            ).rowcount
            if not touched:  # a file the index lost (a crash, a race with eviction)
                self._upsert(key, size, db)

    def _settle(self, key: str) -> None:
        """Count ``key`` as it is on disk now, then evict down to the bound if over it."""
        victims: list[str] = []
        with self._index.connect() as db:
            # IMMEDIATE: one settler at a time. Two processes then never both
            # decide the folder is too big and evict twice as much, and the
            # stat below sees every replace that came before: whoever settles
            # last leaves the row matching the file (an evictor may also have
            # dropped the row meanwhile: it is counted again here).
            db.execute("BEGIN IMMEDIATE")
            try:
                try:
                    self._upsert(key, self._path(key).stat().st_size, db)
                except FileNotFoundError:  # evicted by another process already
                    db.execute("DELETE FROM covers WHERE key = ?", (key,))
                (total,) = db.execute("SELECT COALESCE(SUM(bytes), 0) FROM covers").fetchone()
                if total > self.max_bytes:
                    victims = self._victims(db, total - int(self.max_bytes * _LOW_WATER))
                    db.executemany("DELETE FROM covers WHERE key = ?", [(k,) for k in victims])
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        for victim in victims:
            # After the commit: a reader between the two sees a file without
            # a row, which it simply counts again.
            self._path(victim).unlink(missing_ok=True)

    @staticmethod
    def _victims(db: sqlite3.Connection, excess: int) -> list[str]:
        """Least recently used keys whose entries add up to at least ``excess`` bytes."""
        victims: list[str] = []
        cursor = db.execute("SELECT key, bytes FROM covers ORDER BY used, key")
        try:
            for key, size in cursor:  # streamed: the index never sits in RAM whole
                if excess <= 0:
                    break
                victims.append(key)
                excess -= size
        finally:
            cursor.close()
        return victims
