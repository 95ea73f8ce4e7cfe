"""Object keys: sanitized creator keys and the output key layout. Pure.

Every object the pipeline writes lives under one of these keys, on a local
folder and in S3 alike::

    >>> from datetime import datetime
    >>> creator_key("Zoë Dance")
    'Zoë_Dance-bfe8273e'
    >>> collage_key("Ann", datetime(2026, 1, 2, 3, 4, 5))
    'collages/by-creator/Ann/collage_20260102_030405.jpg'
    >>> summary_key("20260102-030405-1a2b3c4d")
    'results/processing-summaries/20260102-030405-1a2b3c4d.json'

A batch may put its output under a prefix (a ``csv_s3`` message's ``output_prefix``)::

    >>> summary_key("b1", prefix=output_prefix("sqs-trigger"))
    'sqs-trigger/results/processing-summaries/b1.json'
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime
from typing import Protocol

__all__ = [
    "API_UPLOADS_PREFIX",
    "ARCHIVE_FAILED",
    "ARCHIVE_PROCESSED",
    "COMPRESSED_PREFIX",
    "OUTPUT_FOLDERS",
    "TakenKeys",
    "check_batch_id",
    "collage_key",
    "creator_key",
    "metadata_key",
    "notice_key",
    "notice_takeover_key",
    "output_prefix",
    "prefixes_overlap",
    "preview_key",
    "summary_key",
    "unique_key",
]

# What the code itself writes into the input bucket. A watched prefix (IMGPIPE_CSV_PREFIX,
# IMGPIPE_COMPRESS_PREFIX) must not overlap these, or an output would come back as input.
COMPRESSED_PREFIX = "compressed/"  # compressed/<original key>
ARCHIVE_PROCESSED = "archived/processed/"  # a planned CSV, once its batch is summarised
ARCHIVE_FAILED = "archived/failed/"  # an unusable CSV
API_UPLOADS_PREFIX = "api-uploads/"  # CSVs uploaded to the API on AWS, planned by message
# The output layout's folders (under a batch's output prefix, if any).
OUTPUT_FOLDERS = ("collages/", "results/")
MAX_PREFIX_BYTES = 256

MAX_KEY_BYTES = 100
"""Budget for the readable part of a creator key; the hash suffix comes on top."""

# Whitespace and what Windows, macOS or S3 tooling refuse or misread in a name.
_UNSAFE = re.compile(r'[\s/\\<>:"|?*]+')
# A name that already looks like "<text>-<hex>" or "<hex>" could equal another
# name's hashed key, so such names are hashed too: then unchanged keys never end
# like this and hashed keys always do, and the two kinds cannot meet.
_HASH_TAIL = re.compile(r"(?:\A|-)[0-9a-f]{8,}\Z")
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL"]
    + [f"COM{i}" for i in range(1, 10)]
    + [f"LPT{i}" for i in range(1, 10)]
)
_BATCH_ID = re.compile(r"[A-Za-z0-9_-]+\Z")


def creator_key(name: str, *, full_hash: bool = False) -> str:
    """A creator's display name as one safe path segment and S3 key segment.

    Readable names stay as they are (``"Ann"`` -> ``"Ann"``, ``"日本語"`` ->
    ``"日本語"``). Any change the sanitizer has to make (separators, control or
    format characters, whitespace, reserved device names, length over
    ``MAX_KEY_BYTES``, non-NFC input) or an empty result appends ``-`` and the
    first 8 hex digits of the SHA-256 of the original name, so two distinct
    names never share a key by accident: ``"a/b"`` -> ``"a_b-…"`` differs from
    ``"a_b"``. ``full_hash=True`` appends the whole digest instead; the manifest
    uses it in the (adversarial) case of two names whose short keys collide.

    Names that differ only by letter case (``"Ann"`` / ``"ann"``) get keys that
    differ only by case, which are one folder on a case-insensitive filesystem
    (macOS, Windows defaults). Within a batch the manifest gives the later one a
    hashed key; across batches they share a folder, where timestamped collage
    names and put-if-absent keep them from overwriting each other.

    >>> creator_key("Zoë")
    'Zoë'
    >>> creator_key("a/b") != creator_key("a_b")
    True
    >>> creator_key("e\u200d\u0301")  # the joiner dropped, the accent composed
    'é-6b461262'
    """
    nfc = unicodedata.normalize("NFC", name)
    text = "".join(ch for ch in nfc if not unicodedata.category(ch).startswith("C"))
    # Normalized again: a dropped format character (a zero-width joiner between a
    # letter and its accent) can leave a pair that composes, and a key must be NFC.
    text = unicodedata.normalize("NFC", text)
    text = _UNSAFE.sub("_", text).strip(" ._")
    budget = MAX_KEY_BYTES // 2 if full_hash else MAX_KEY_BYTES
    text = _cut_utf8(text, budget).rstrip(" ._")
    changed = (
        full_hash
        or text != name
        or not text
        or _HASH_TAIL.search(text) is not None
        or text.split(".", 1)[0].upper() in _WINDOWS_DEVICES
    )
    if not changed:
        return text
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()
    suffix = digest if full_hash else digest[:8]
    return f"{text}-{suffix}" if text else suffix


class TakenKeys(Protocol):
    """Casefolded creator keys handed out so far: a ``set``, or a table lookup."""

    def __contains__(self, folded: object, /) -> bool: ...

    def add(self, folded: str, /) -> None: ...


def unique_key(name: str, taken: TakenKeys) -> str:
    """creator_key(name), made longer while it is taken ignoring letter case; then taken.

    Case counts as taken because the local folder may live on a case-insensitive
    filesystem (macOS, Windows), where ``Ann.json`` and ``ann.json`` are one file.
    ``taken`` holds the casefolded keys handed out so far; the new one is added.
    Called once per creator in order of first appearance, it gives every reader
    of the same CSV the same keys.

    >>> taken: set[str] = set()
    >>> [unique_key(name, taken) for name in ["Ann", "Bo"]]
    ['Ann', 'Bo']
    >>> unique_key("ANN", taken) == creator_key("ANN", full_hash=True)
    True
    """
    key = creator_key(name)
    if key.casefold() in taken:
        key = creator_key(name, full_hash=True)
    base, n = key, 1
    while key.casefold() in taken:  # a full SHA-256 clash; kept only so the loop is total
        n += 1
        key = f"{base}-{n}"
    taken.add(key.casefold())
    return key


def output_prefix(text: str) -> str:
    """A batch's output prefix, checked and ending with ``/`` (``""``: the bucket's root).

    It is a folder of plain segments, so keys under it stay inside the bucket's
    layout; a ValueError says what is wrong with it.

    >>> output_prefix("sqs-trigger"), output_prefix("team/a/"), output_prefix("")
    ('sqs-trigger/', 'team/a/', '')
    >>> output_prefix("../x")
    Traceback (most recent call last):
    ...
    ValueError: output prefix '../x': segments may not be empty, '.' or '..'
    """
    if not text:
        return ""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PREFIX_BYTES:
        raise ValueError(f"output prefix {text[:40]!r}...: longer than {MAX_PREFIX_BYTES} bytes")
    if any(unicodedata.category(ch).startswith("C") for ch in text) or "\\" in text:
        raise ValueError(f"output prefix {text!r}: control characters or backslashes")
    segments = text.removesuffix("/").split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(f"output prefix {text!r}: segments may not be empty, '.' or '..'")
    return "/".join(segments) + "/"


def prefixes_overlap(first: str, second: str) -> bool:
    """True when a key could lie under both prefixes (one starts the other).

    >>> prefixes_overlap("csv-files/", "uploads/"), prefixes_overlap("in/", "in/img/")
    (False, True)
    >>> prefixes_overlap("", "uploads/")  # the empty prefix holds every key
    True
    """
    return first.startswith(second) or second.startswith(first)


def collage_key(creator: str, when: datetime, suffix: int = 0, *, prefix: str = "") -> str:
    """Where a creator's collage rendered at ``when`` goes; ``suffix`` > 0 after a collision.

    >>> collage_key("Ann", datetime(2026, 1, 2, 3, 4, 5), 2)
    'collages/by-creator/Ann/collage_20260102_030405_2.jpg'
    """
    _check_segment(creator)
    if suffix < 0:
        raise ValueError(f"collage key suffix must be >= 0, got {suffix}")
    tail = f"_{suffix}" if suffix else ""
    return f"{prefix}collages/by-creator/{creator}/collage_{when:%Y%m%d_%H%M%S}{tail}.jpg"


def preview_key(collage: str, width: int) -> str:
    """Where the ``width`` px preview of the collage stored at ``collage`` goes.

    Beside the collage and named after it, so a collage has one preview per width
    and a new preview width never reuses an old object.

    >>> preview_key("collages/by-creator/Ann/collage_20260102_030405.jpg", 480)
    'collages/by-creator/Ann/collage_20260102_030405.w480.webp'
    """
    if not collage.endswith(".jpg") or width < 1:
        raise ValueError(f"no preview key for {collage!r} at width {width}")
    return f"{collage[: -len('.jpg')]}.w{width}.webp"


def metadata_key(batch_id: str, creator: str, *, prefix: str = "") -> str:
    """Per-creator metadata document of one batch.

    >>> metadata_key("b1", "Ann")
    'results/metadata/b1/Ann.json'
    """
    check_batch_id(batch_id)
    _check_segment(creator)
    return f"{prefix}results/metadata/{batch_id}/{creator}.json"


def summary_key(batch_id: str, *, prefix: str = "") -> str:
    """The batch summary document.

    >>> summary_key("b1")
    'results/processing-summaries/b1.json'
    """
    check_batch_id(batch_id)
    return f"{prefix}results/processing-summaries/{batch_id}.json"


def notice_key(batch_id: str, *, prefix: str = "") -> str:
    """How the batch's completion notice went, beside its summary (never in it).

    >>> notice_key("b1")
    'results/processing-summaries/b1.notice.json'
    """
    return summary_key(batch_id, prefix=prefix).removesuffix(".json") + ".notice.json"


def notice_takeover_key(notice: str, attempt: int) -> str:
    """The marker that makes one process the sender of a notice's ``attempt`` (2, 3, ...)
    after the sender before it died: written create-if-absent, so one taker per attempt.

    >>> notice_takeover_key("results/processing-summaries/b1.notice.json", 2)
    'results/processing-summaries/b1.notice.take-2.json'
    """
    return f"{notice.removesuffix('.json')}.take-{attempt}.json"


def _cut_utf8(text: str, limit: int) -> str:
    """Longest prefix of ``text`` whose UTF-8 encoding fits in ``limit`` bytes."""
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    # Dropping the partial trailing sequence cuts on a character boundary.
    return data[:limit].decode("utf-8", "ignore")


def check_batch_id(batch_id: str) -> None:
    if not _BATCH_ID.match(batch_id):
        raise ValueError(f"invalid batch id {batch_id!r}: only letters, digits, '_' and '-'")


def _check_segment(creator: str) -> None:
    # Keys are built from creator_key() output; this catches callers passing a raw name.
    if not creator or creator in (".", "..") or "/" in creator or "\\" in creator:
        raise ValueError(f"invalid creator key {creator!r}: use creator_key(name)")
