"""Fixtures for tests against real local servers.

``server`` is a fresh :class:`~tests.support.http_server.FaultServer` per test.
``policy(**overrides)`` builds a fast :class:`FetchPolicy` (1 s timeout, 10 ms
backoff) that allows only 127.0.0.0/8, and ``fetch(policy, *urls)`` runs one
:class:`Downloader` over the URLs concurrently and returns the results in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from typing import Any

import pytest

from imgpipe.fetch.downloader import Downloader, FetchPolicy, FetchResult
from tests.support.http_server import FaultServer

LOOPBACK = (ip_network("127.0.0.0/8"),)

PolicyFactory = Callable[..., FetchPolicy]
Fetch = Callable[..., list[FetchResult]]


def fast_policy(**overrides: Any) -> FetchPolicy:
    settings: dict[str, Any] = {
        "timeout": 1.0,
        "retries": 2,
        "backoff_base": 0.01,
        "backoff_max": 0.05,
        "allowed_networks": LOOPBACK,
    }
    settings.update(overrides)
    return FetchPolicy(**settings)


def fetch_all(policy: FetchPolicy, *urls: str, **downloader_kwargs: Any) -> list[FetchResult]:
    async def run() -> list[FetchResult]:
        async with Downloader(policy, **downloader_kwargs) as downloader:
            return list(await asyncio.gather(*(downloader.fetch(url) for url in urls)))

    return asyncio.run(run())


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


@pytest.fixture
def policy() -> PolicyFactory:
    return fast_policy


@pytest.fixture
def fetch() -> Fetch:
    return fetch_all
