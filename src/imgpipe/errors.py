"""One exception tree for the whole project.

Adapters translate their library's errors (``sqlite3.Error``, ``httpx``,
``botocore``) into this tree where they arise (``raise StorageError(...) from exc``),
so services and entry points only ever catch ``ImgpipeError`` subclasses::

    ImgpipeError
    ├── ConfigError            bad settings or flags
    ├── InputError             unusable input as a whole (missing file, no usable column)
    │   └── ManifestError
    │       └── ColumnError    no creator or URL column (carries the role)
    ├── FetchError             one URL could not be fetched (carries a reason code)
    │   └── BlockedAddressError
    ├── ImageError             bytes are not a usable image (carries a reason code)
    ├── StorageError           object store failure
    │   └── KeyCollisionError  a put-if-absent found the key taken
    ├── StateError             state store failure
    │   ├── ConditionFailedError  a conditional write lost the race
    │   ├── ConflictError      contention or throttling; the write did not happen, retry it
    │   ├── ClaimBusyError     another worker holds a live claim on the creator
    │   ├── BatchLockedError   another process is running this batch on this machine
    │   └── SummaryPendingError  another worker claimed the summary, not written yet
    ├── QueueError             work queue failure (SQS)
    ├── SourceError            a SQL source failed (no connection, the server went away)
    ├── MessageError           a queue message or event that cannot be processed (poison)
    └── ComparisonError        a comparison timed out or its model failed (not the input's fault)
"""

from __future__ import annotations

__all__ = [
    "BatchLockedError",
    "BlockedAddressError",
    "ClaimBusyError",
    "ColumnError",
    "ComparisonError",
    "column_role",
    "ConditionFailedError",
    "ConflictError",
    "ConfigError",
    "FetchError",
    "ImageError",
    "ImgpipeError",
    "InputError",
    "KeyCollisionError",
    "ManifestError",
    "MessageError",
    "QueueError",
    "SourceError",
    "StateError",
    "StorageError",
    "SummaryPendingError",
]


class ImgpipeError(Exception):
    """Root of every error imgpipe raises on purpose."""


class ConfigError(ImgpipeError):
    """A setting or flag has an unusable value."""


class InputError(ImgpipeError):
    """The input as a whole cannot be used (exit code 2)."""


class ManifestError(InputError):
    """The CSV cannot be read or has no usable creator/URL column."""


class ColumnError(ManifestError):
    """The CSV has no column for ``role`` (``creator`` or ``url``).

    The message names no CLI flag or form field: each entry point adds how its
    users choose the column (``--creator-column``, the form field ``creator_column``).
    """

    def __init__(self, message: str, role: str) -> None:
        super().__init__(message)
        self.role = role


def column_role(exc: BaseException) -> str | None:
    """The role of the ColumnError behind ``exc`` (re-raised with a file name), if any."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ColumnError):
            return seen.role
        seen = seen.__cause__
    return None


class _ReasonError(ImgpipeError):
    """An error that carries a machine-readable reason code (``http_404``, ``timeout``...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class FetchError(_ReasonError):
    """One source could not be fetched."""


class BlockedAddressError(FetchError):
    """The source resolves to an address the network policy refuses."""

    def __init__(self, detail: str = "") -> None:
        super().__init__("blocked_address", detail)


class ImageError(_ReasonError):
    """Bytes that are not a usable image (not_an_image, too_small, too_large, decode_error)."""


class StorageError(ImgpipeError):
    """The object store failed."""


class KeyCollisionError(StorageError):
    """A write that must not overwrite found its key already taken."""


class StateError(ImgpipeError):
    """The state store failed."""


class ConditionFailedError(StateError):
    """A conditional state write found a different state than expected."""


class ConflictError(StateError):
    """The backend refused the write for contention or throttling; nothing was written.

    DynamoDB answers ``TransactionConflict`` and throttling under load and botocore
    does not retry the former; the service retries these with jitter.
    """


class ClaimBusyError(StateError):
    """A live claim of another worker holds the creator; come back after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class BatchLockedError(StateError):
    """Another process on this machine is running the batch (its lock is held)."""


class SummaryPendingError(StateError):
    """Another worker holds the batch summary's claim and has not written it yet.

    Raised so the message is retried: by then the summary is written, or the claim
    has outlived its lease (its holder died) and the retry writes the summary.
    """


class QueueError(ImgpipeError):
    """The work queue failed."""


class SourceError(ImgpipeError):
    """A SQL source could not be read: no connection, or it broke off (not the query's fault)."""


class MessageError(ImgpipeError):
    """A queue message or event cannot be processed: bad JSON, unknown type, missing object."""


class ComparisonError(ImgpipeError):
    """A comparison could not finish: a timeout or a model failure (HTTP 500)."""
