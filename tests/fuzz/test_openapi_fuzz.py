"""Schema-driven fuzz of the whole API (schemathesis over /openapi.json): no input gets a 5xx.

Each operation of the schema gets a bounded number of generated requests, sent
over HTTP to a uvicorn server, once open and once with an API key set (the key
sent, so requests get past the guard). Hypothesis is derandomised and its
database is off, so every run sends the same requests.
(schemathesis' own pytest plugin does not run on this pytest, so the operations
are driven through its strategies directly.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from imgpipe.entrypoints.api.app import create_app
from tests.integration.api.conftest import api_settings
from tests.support.api_server import ApiServer

EXAMPLES_PER_OPERATION = 40


KEY = "fuzz-key"


@pytest.fixture(scope="module", params=["open", "keyed"])
def api_schema(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    data_dir: Path = tmp_path_factory.mktemp("fuzz")
    key = KEY if request.param == "keyed" else ""
    # No private networks allowed: generated CSVs must not reach anything on this machine.
    app = create_app(
        api_settings(
            allow_private_networks="", default_timeout=1.0, max_upload_bytes=256_000, api_key=key
        ),
        out_dir=data_dir,
    )
    headers = {"Authorization": f"Bearer {KEY}"} if key else {}
    with ApiServer(app) as server:
        schema = schemathesis.openapi.from_url(server.url("/openapi.json"), headers=headers)
        schema.fuzz_headers = headers
        yield schema


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


def test_schema_lists_every_route(api_schema: Any) -> None:
    labels = {op.label for op in _operations(api_schema)}
    assert {
        "POST /v1/batches",
        "GET /v1/batches",
        "GET /v1/batches/{batch_id}",
        "GET /v1/creators/{name}",
        "GET /v1/collages/{key}",
        "POST /v1/compare",
        "POST /v1/compress",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
    } <= labels


def test_no_operation_answers_5xx(api_schema: Any) -> None:
    statuses: dict[str, set[int]] = {}
    for operation in _operations(api_schema):
        _fuzz(operation, statuses.setdefault(operation.label, set()), api_schema.fuzz_headers)
    # Every operation was really exercised, and the uploads were really parsed.
    assert all(statuses.values())
    assert statuses["POST /v1/compare"] & {200, 400}
    assert statuses["POST /v1/batches"] & {202, 400, 422}


def _fuzz(operation: Any, seen: set[int], headers: dict[str, str]) -> None:
    """Send the operation's generated requests; record each status, fail on any 5xx."""

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case: Any) -> None:
        response = case.call_and_validate(checks=[not_a_server_error], timeout=30, headers=headers)
        seen.add(response.status_code)
        assert response.status_code < 500

    exercise()
