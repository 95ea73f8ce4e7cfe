"""CSVs read from an object store: how a batch names one, parsed whole (small uploads)
or streamed through a hash (planning), so the same bytes give the same batch::

    with io.BufferedReader(HashingReader(store.open(key), digest)) as stream:
        staged = stage(csv_text(stream, spec.encoding), ...)   # digest: the CSV's identity
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO

from imgpipe.domain.csv_text import csv_text
from imgpipe.domain.manifest import Manifest, parse_manifest
from imgpipe.errors import InputError
from imgpipe.settings import BatchSpec

__all__ = ["HashingReader", "csv_source", "parse_csv_bytes"]


def csv_source(csv_key: str, bucket: str | None) -> str:
    """How a batch names its CSV: the key in the input bucket, else the object's URL.

    >>> csv_source("in/a.csv", None), csv_source("in/a.csv", "partner")
    ('in/a.csv', 's3://partner/in/a.csv')
    """
    return f"s3://{bucket}/{csv_key}" if bucket else csv_key


def parse_csv_bytes(data: bytes, options: BatchSpec, csv_key: str) -> Manifest:
    """A CSV read from an object store -> manifest; InputError names the key."""
    try:
        return parse_manifest(
            csv_text(io.BytesIO(data), options.encoding),
            creator_column=options.creator_column,
            url_column=options.url_column,
        )
    except InputError as exc:
        raise InputError(f"{csv_key}: {exc}") from exc


class HashingReader(io.RawIOBase):
    """A readable stream that feeds what passes through it to a hash."""

    def __init__(self, raw: BinaryIO, digest: Any) -> None:
        self._raw, self._digest = raw, digest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        self._digest.update(data)
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._raw.close()
        super().close()
