"""Object keys: sanitized creator keys and the output key layout. Pure. STUB."""

from __future__ import annotations

from datetime import datetime

__all__ = ["collage_key", "creator_key", "metadata_key", "summary_key"]


def creator_key(name: str) -> str:
    raise NotImplementedError


def collage_key(creator: str, when: datetime, suffix: int = 0) -> str:
    raise NotImplementedError


def metadata_key(batch_id: str, creator: str) -> str:
    raise NotImplementedError


def summary_key(batch_id: str) -> str:
    raise NotImplementedError
