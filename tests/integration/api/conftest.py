"""Fixtures for the HTTP service: the app under uvicorn on 127.0.0.1, with covers to fetch.

``api(**settings)`` starts a server (settings by field name) and returns it with
an ``httpx.Client`` bound to it; everything stops at the end of the test.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from imgpipe.entrypoints.api.app import create_app
from imgpipe.settings import Settings
from tests.support.api_server import ApiServer
from tests.support.http_server import FaultServer


@dataclass
class Api:
    server: ApiServer
    http: httpx.Client
    app: Any
    data_dir: Path

    def url(self, path: str) -> str:
        return self.server.url(path)


ApiFactory = Callable[..., Api]


def api_settings(**overrides: Any) -> Settings:
    """Test settings: loopback covers allowed, quick fetches; the environment cannot leak in."""
    values: dict[str, Any] = {
        "backend": "local",
        "allow_private_networks": "127.0.0.0/8",
        "default_timeout": 5.0,
        "default_max_retries": 0,
        "api_key": "",
        "cors_origins": "",
        "readiness_url": "",
        "compare_backend": "builtin",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ApiFactory]:
    started = itertools.count()
    with ExitStack() as stack:

        def start(**overrides: Any) -> Api:
            data_dir = tmp_path / f"data{next(started)}"
            app = create_app(api_settings(**overrides), out_dir=data_dir)
            server = stack.enter_context(ApiServer(app))
            http = stack.enter_context(httpx.Client(base_url=server.base_url, timeout=30))
            return Api(server, http, app, data_dir)

        yield start


@pytest.fixture
def covers() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running
