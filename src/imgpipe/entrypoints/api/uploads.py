"""Reading uploaded files with a byte limit enforced while reading (413 past it)."""

from __future__ import annotations

from fastapi import HTTPException, UploadFile

__all__ = ["read_limited"]

CHUNK = 1024 * 1024


async def read_limited(upload: UploadFile, limit: int) -> bytes:
    """The file's bytes; HTTP 413 as soon as more than ``limit`` bytes were read."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(CHUNK):
        size += len(chunk)
        if size > limit:
            name = upload.filename or "upload"
            raise HTTPException(413, f"{name}: larger than the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
