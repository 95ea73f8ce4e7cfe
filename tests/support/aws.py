"""moto in server mode on 127.0.0.1, started once per test session, reset per test.

Tests talk to it over real HTTP with boto3, exactly as the adapters talk to AWS;
nothing reaches a real AWS account (dummy credentials, explicit endpoint).
"""

from __future__ import annotations

import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from imgpipe.settings import Settings

AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings pointing at a freshly reset moto server, with dummy credentials."""
    for name, value in AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("IMGPIPE_AWS_ENDPOINT_URL", moto_endpoint)
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
    yield Settings()


@pytest.fixture
def atomic_dynamodb(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto's DynamoDB writes atomic, as DynamoDB's are.

    moto (in this process, on the server's threads) updates an item by
    read-modify-write without a lock, and rolls a failed transaction back by restoring
    a copy of the whole table taken when it began: two workers finishing creators at
    the same moment can lose one count (7 of 8 seen), and then the batch never
    finishes. One lock over the writes restores what DynamoDB guarantees; the
    engine's own races (claims, leases, replays) still run at full concurrency.
    Real DynamoDB needs nothing of the kind: this works around moto only.
    """
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()  # transact_write_items calls update_item inside
    for name in ("put_item", "update_item", "delete_item", "transact_write_items"):
        original = getattr(DynamoDBBackend, name)

        def locked(self: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            with lock:
                return _original(self, *args, **kwargs)

        monkeypatch.setattr(DynamoDBBackend, name, locked)


def client(settings: Settings, service: str) -> Any:
    from imgpipe.adapters.aws_clients import make_client

    return make_client(service, settings)
