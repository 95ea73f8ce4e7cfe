"""Fixtures for tests against real local servers.

``state`` is each StateStore in turn (SQLite on a file, the in-memory fake, DynamoDB
on moto with the table as deployed): the contract suites run over it.
``server`` is a fresh :class:`~tests.support.http_server.FaultServer` per test.
``policy(**overrides)`` builds a fast :class:`FetchPolicy` (1 s timeout, 10 ms
backoff) that allows only 127.0.0.0/8, and ``fetch(policy, *urls)`` runs one
:class:`Downloader` over the URLs concurrently and returns the results in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from ipaddress import ip_network
from pathlib import Path
from typing import Any

import pytest

from imgpipe.adapters.dynamodb_state import DynamoStateStore
from imgpipe.adapters.dynamodb_table import create_state_table
from imgpipe.adapters.memory import InMemoryStateStore
from imgpipe.adapters.sqlite_state import SqliteStateStore
from imgpipe.fetch.downloader import Downloader, FetchPolicy, FetchResult
from imgpipe.ports import StateStore
from tests.support.aws import client
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


@pytest.fixture(params=["sqlite", "memory", "dynamodb"])
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "memory":
        yield InMemoryStateStore()
        return
    if request.param == "dynamodb":  # moto's DynamoDB over HTTP, the table as deployed
        settings = request.getfixturevalue("aws")
        request.getfixturevalue("atomic_dynamodb")  # DynamoDB's atomic writes (moto lacks them)
        create_state_table(client(settings, "dynamodb"), "state")
        yield DynamoStateStore("state", settings=settings)
        return
    store = SqliteStateStore(tmp_path / "state.sqlite3")
    yield store
    store.close()
