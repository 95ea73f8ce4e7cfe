"""Async downloads with retries, limits and an SSRF guard. STUB."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from imgpipe.settings import IPNetwork, RunOptions

__all__ = ["Downloader", "FetchPolicy", "FetchResult"]


@dataclass(frozen=True)
class FetchPolicy:
    timeout: float = 30.0
    retries: int = 3
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    max_bytes: int = 20 * 1024 * 1024
    max_redirects: int = 5
    concurrency: int = 8
    per_host_concurrency: int = 8
    allowed_networks: tuple[IPNetwork, ...] = ()
    allow_local_files: bool = True
    user_agent: str = "imgpipe/0.1"

    @classmethod
    def from_options(cls, options: RunOptions) -> FetchPolicy:
        raise NotImplementedError


@dataclass(frozen=True)
class FetchResult:
    url: str
    data: bytes | None
    reason: str | None = None
    detail: str = ""
    attempts: int = 1
    status_code: int | None = None
    content_type: str | None = None
    final_url: str = ""

    @property
    def ok(self) -> bool:
        return self.data is not None and self.reason is None


class Downloader:
    def __init__(self, policy: FetchPolicy, *, base_dir: Path | None = None) -> None:
        raise NotImplementedError

    async def fetch(self, url: str) -> FetchResult:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
