"""ObjectStore on an S3 bucket, with the local folder's key layout and rules.

Uploads carry ``ContentType``, a year of ``CacheControl`` (keys are never
rewritten with other bytes: collage keys carry a timestamp) and AES256
server-side encryption. Bodies above ``multipart_threshold`` go through boto3's
managed transfer (multipart). ``if_absent`` is a conditional put
(``If-None-Match: *``), so two workers can never overwrite each other's collage::

    store = S3ObjectStore("imgpipe-output", settings=settings)
    store.put("collages/by-creator/Ann/collage_20260102_030405.jpg", data,
              content_type="image/jpeg", if_absent=True)
    store.url_for(key)   # a presigned GET URL, valid for ``presign_expiry`` seconds
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from imgpipe.adapters.aws_clients import aws_error_code, make_client
from imgpipe.adapters.local_store import check_key, check_range
from imgpipe.errors import KeyCollisionError, StorageError
from imgpipe.ports import StoredObject
from imgpipe.settings import Settings

__all__ = ["S3ObjectStore"]

CACHE_CONTROL = "max-age=31536000"
_MISSING = {"NoSuchKey", "404", "NotFound"}
_TAKEN = {"PreconditionFailed", "ConditionalRequestConflict", "412"}
_PAST_END = {"InvalidRange", "416"}
# Reads of an open object go to S3 in pieces this large: few round trips per CSV,
# little memory per reader.
_READ_BUFFER = 1024 * 1024


class S3ObjectStore:
    """Keyed bytes in one bucket; ``client`` is injectable (tests, custom sessions)."""

    def __init__(
        self,
        bucket: str,
        *,
        client: Any | None = None,
        settings: Settings | None = None,
        presign_expiry: int | None = None,
        multipart_threshold: int = 8 * 1024 * 1024,
    ) -> None:
        if not bucket:
            raise StorageError(
                "no bucket configured"
                " (IMGPIPE_INPUT_BUCKET / IMGPIPE_OUTPUT_BUCKET / IMGPIPE_TEMP_BUCKET)"
            )
        self.bucket = bucket
        self._settings = settings
        self._client = client
        self.presign_expiry = presign_expiry or (settings.presign_expiry if settings else 3600)
        self.multipart_threshold = multipart_threshold

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = make_client("s3", self._settings)
        return self._client

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_absent: bool = False,
        metadata: Mapping[str, str] | None = None,
    ) -> StoredObject:
        check_key(key)
        extra: dict[str, Any] = {
            "ContentType": content_type,
            "CacheControl": CACHE_CONTROL,
            "ServerSideEncryption": "AES256",
            "Metadata": dict(metadata or {}),
        }
        try:
            if len(data) > self.multipart_threshold and not if_absent:
                from boto3.s3.transfer import TransferConfig

                transfer = TransferConfig(
                    multipart_threshold=self.multipart_threshold,
                    multipart_chunksize=self.multipart_threshold,
                )
                self.client.upload_fileobj(
                    io.BytesIO(data), self.bucket, key, ExtraArgs=extra, Config=transfer
                )
            else:
                condition = {"IfNoneMatch": "*"} if if_absent else {}
                self.client.put_object(Bucket=self.bucket, Key=key, Body=data, **extra, **condition)
        except Exception as exc:
            if aws_error_code(exc) in _TAKEN:
                raise KeyCollisionError(f"s3://{self.bucket}/{key} already exists") from exc
            raise StorageError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc
        return StoredObject(key=key, size=len(data), url=f"s3://{self.bucket}/{key}")

    def put_file(
        self, key: str, path: Path, *, content_type: str = "application/octet-stream"
    ) -> StoredObject:
        """Upload a local file, streamed from disk (multipart above ``multipart_threshold``).

        Not part of the ObjectStore port: only what writes a large file it made
        (``imgpipe export-csv --out s3://...``) needs it, and it is wired to S3 alone.
        """
        check_key(key)
        from boto3.s3.transfer import TransferConfig

        # No year-long CacheControl: unlike a collage, an export's key is written again.
        extra = {"ContentType": content_type, "ServerSideEncryption": "AES256"}
        transfer = TransferConfig(
            multipart_threshold=self.multipart_threshold,
            multipart_chunksize=self.multipart_threshold,
        )
        try:
            self.client.upload_file(str(path), self.bucket, key, ExtraArgs=extra, Config=transfer)
        except Exception as exc:
            raise StorageError(f"cannot write s3://{self.bucket}/{key}: {exc}") from exc
        return StoredObject(key=key, size=path.stat().st_size, url=f"s3://{self.bucket}/{key}")

    def get(self, key: str) -> bytes:
        check_key(key)
        try:
            body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as exc:
            if aws_error_code(exc) in _MISSING:
                raise StorageError(f"no such key: s3://{self.bucket}/{key}") from exc
            raise StorageError(f"cannot read s3://{self.bucket}/{key}: {exc}") from exc
        return body

    def open(self, key: str) -> BinaryIO:
        """The object's body as a buffered binary stream; read errors become StorageError."""
        check_key(key)
        where = f"s3://{self.bucket}/{key}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        except Exception as exc:
            if aws_error_code(exc) in _MISSING:
                raise StorageError(f"no such key: {where}") from exc
            raise StorageError(f"cannot read {where}: {exc}") from exc
        return io.BufferedReader(_Body(body, where), buffer_size=_READ_BUFFER)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_key(key)
        check_range(start, length)
        where = f"s3://{self.bucket}/{key}"
        if length == 0:  # a Range cannot ask for nothing; the key must still exist
            if not self.exists(key):
                raise StorageError(f"no such key: {where}")
            return b""
        byte_range = f"bytes={start}-{start + length - 1}"
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=key, Range=byte_range)["Body"]
            data: bytes = body.read()
        except Exception as exc:
            code = aws_error_code(exc)
            if code in _PAST_END:
                return b""
            if code in _MISSING:
                raise StorageError(f"no such key: {where}") from exc
            raise StorageError(f"cannot read {where} ({byte_range}): {exc}") from exc
        return data

    def size(self, key: str) -> int:
        """The object's size in bytes without reading it (StorageError if missing)."""
        check_key(key)
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])
        except Exception as exc:
            raise StorageError(f"cannot stat s3://{self.bucket}/{key}: {exc}") from exc

    def exists(self, key: str) -> bool:
        check_key(key)
        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if aws_error_code(exc) in _MISSING:
                return False
            raise StorageError(f"cannot check s3://{self.bucket}/{key}: {exc}") from exc
        return True

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            raise StorageError(f"cannot delete s3://{self.bucket}/{key}: {exc}") from exc

    def move(self, source: str, target: str) -> None:
        """Server-side copy then delete (how CSVs are archived)."""
        check_key(source)
        check_key(target)
        try:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=target,
                CopySource={"Bucket": self.bucket, "Key": source},
                ServerSideEncryption="AES256",
            )
        except Exception as exc:
            raise StorageError(f"cannot move s3://{self.bucket}/{source}: {exc}") from exc
        self.delete(source)

    def list(self, prefix: str = "") -> Iterator[str]:
        keys: list[str] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                keys.extend(item["Key"] for item in page.get("Contents", []))
        except Exception as exc:
            raise StorageError(f"cannot list s3://{self.bucket}/{prefix}: {exc}") from exc
        return iter(sorted(keys))

    def url_for(self, key: str, *, expires_in: int | None = None) -> str:
        check_key(key)
        try:
            url: str = self.client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": key},
                ExpiresIn=expires_in or self.presign_expiry,
            )
        except Exception as exc:
            raise StorageError(f"cannot presign s3://{self.bucket}/{key}: {exc}") from exc
        return url


class _Body(io.RawIOBase):
    """botocore's streaming body as a raw stream that io's buffers and text wrappers read.

    Errors while reading (a reset connection, a short body) leave as StorageError,
    like every other failure of the store.
    """

    def __init__(self, body: Any, where: str) -> None:
        self._body = body
        self._where = where

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            chunk: bytes = self._body.read(len(buffer))
        except Exception as exc:
            raise StorageError(f"cannot read {self._where}: {exc}") from exc
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()
