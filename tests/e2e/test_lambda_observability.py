"""Powertools Logger and Tracer on the Lambda functions, in a process set up as Lambda's.

The functions run in a fresh interpreter (``tests.support.lambda_invoke``) with the
runtime's environment: ``LAMBDA_TASK_ROOT``, a trace header, and
``AWS_XRAY_DAEMON_ADDRESS`` pointing at a UDP socket this test reads, so the
segments the X-Ray SDK sends are the real ones (annotations included). AWS is moto.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.aws_deploy import Deployment
from tests.support.covers import RED, solid_jpeg
from tests.support.http_server import FaultServer, Serve

REPO = Path(__file__).resolve().parents[2]
TRACE_HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
HEAVY = ("aws_xray_sdk", "aws_lambda_powertools", "botocore", "boto3", "httpx", "wrapt")


def python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO / "src"), **env},
    )


def test_importing_the_handlers_loads_neither_powertools_nor_xray() -> None:
    code = f"""
import sys
import imgpipe.entrypoints.aws_lambda, imgpipe.entrypoints.api_lambda
from imgpipe.entrypoints import lambda_observability as obs
# None entries are imports imgpipe blocks on purpose (httpx's CLI), not modules loaded
loaded = sorted(n for n, m in sys.modules.items() if m is not None and n.split(".")[0] in {HEAVY!r})
tracing = type(obs.tracing()).__name__
print(loaded, tracing, obs.lambda_logger(), sorted(n for n in sys.modules if "xray" in n))
"""
    # Outside Lambda: nothing heavy on import, and tracing is the no-op
    result = python(code, {})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[]", "NullTracing", "None", "[]"]
    # In a Lambda with tracing switched off: still no X-Ray SDK, even once tracing is asked for
    env = {"LAMBDA_TASK_ROOT": str(REPO), "POWERTOOLS_TRACE_DISABLED": "true"}
    result = python(code, env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[:2] == ["[]", "NullTracing"] and "xray" not in result.stdout


def entities(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The document and its nested subsegments, each with its parent's id."""
    yield document
    for child in document.get("subsegments", []):
        yield from entities({**child, "parent_id": document["id"]})


def received(daemon: socket.socket) -> list[dict[str, Any]]:
    """Every segment and subsegment the SDK sent ('header\\nbody' datagrams), flattened."""
    found: list[dict[str, Any]] = []
    daemon.setblocking(False)
    while True:
        try:
            datagram = daemon.recv(65536)
        except BlockingIOError:
            return found
        header, body = datagram.decode().split("\n", 1)
        assert json.loads(header)["format"] == "json"
        found.extend(entities(json.loads(body)))


@pytest.mark.slow  # a fresh interpreter loading boto3, Powertools and the X-Ray SDK
def test_functions_log_json_with_correlation_keys_and_trace_to_xray(
    deployed: Deployment, tmp_path: Path
) -> None:
    with FaultServer() as server, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        daemon.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        good = server.add("/a.jpg", Serve(solid_jpeg(RED)))
        gone = server.url("/gone.jpg")  # 404
        deployed.upload_csv("csv-files/obs.csv", [("Ann", good), ("Ann", gone)])
        for message in deployed.queue.receive(max_messages=10, wait_seconds=1):
            deployed.queue.delete(message)  # the bucket's notification; the driver plans
        env = {
            **os.environ,
            "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}",
            "LAMBDA_TASK_ROOT": str(REPO),
            "AWS_LAMBDA_FUNCTION_NAME": "imgpipe-worker",
            "_X_AMZN_TRACE_ID": TRACE_HEADER,
            "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
            "IMGPIPE_DATA_DIR": str(tmp_path),
        }
        request = json.dumps({"bucket": deployed.names["IMGPIPE_INPUT_BUCKET"],
                              "key": "csv-files/obs.csv"})  # fmt: skip
        result = subprocess.run(
            [sys.executable, "-m", "tests.support.lambda_invoke"],
            input=request, capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        segments = received(daemon)
    planned, worked, swept = json.loads(result.stderr.splitlines()[-1])
    batch_id = planned["results"][0]["batch_id"]
    assert worked == {"batchItemFailures": []} and swept["stuck"] == 0

    # Logs: Powertools JSON on stdout (EMF documents share it: they have no level)
    records = [json.loads(line) for line in result.stdout.splitlines()]
    logs = [r for r in records if "level" in r]
    assert logs and all(r["service"] == "imgpipe" for r in logs)
    (failed,) = [r for r in logs if r["message"].startswith("cover failed")]
    assert failed["url"] == gone and gone in failed["message"] and failed["reason"] == "http_404"
    assert failed["batch_id"] == batch_id and failed["creator"] == "Ann"
    assert failed["function_request_id"] == "req-obs" and failed["cold_start"] in (True, False)
    (done,) = [r for r in logs if r["message"] == "creator Ann: completed"]
    assert done["batch_id"] == batch_id and done["creator"] == "Ann"
    # the keys are the creator's only: the sweep, after it, logs without them
    (sweep,) = [r for r in logs if r["message"] == "sweep"]
    assert "creator" not in sweep and "batch_id" not in sweep
    assert (sweep["backing_off"], sweep["failing"]) == (0, 0)
    # Metrics: the sweep's EMF document carries both of its gauges, for its function
    (emf,) = [r for r in records if "StuckCreators" in r]
    metrics = {m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert metrics == {"StuckCreators", "BatchesFailingToFinalise"}
    assert emf["BatchesFailingToFinalise"] == [0.0]  # one observation this run

    # Traces: our annotated subsegments, and the patched clients' calls
    by_name: dict[str, list[dict[str, Any]]] = {}
    for entity in segments:
        by_name.setdefault(entity["name"], []).append(entity)
    (creator,) = by_name["## creator"]
    assert creator["annotations"] == {"batch_id": batch_id, "creator": "Ann"}
    (plan,) = by_name["## plan"]
    assert plan["annotations"]["batch_id"] == batch_id
    assert plan["annotations"]["csv_key"] == "csv-files/obs.csv"
    for handler in ("## planner_handler", "## worker_handler", "## sweep_handler"):
        (entity,) = by_name[handler]
        assert entity["annotations"]["Service"] == "imgpipe"
        assert entity["trace_id"] == "1-5759e988-bd862e3fe1be46a994272793"
    aws_calls = {e["name"] for e in segments if e.get("namespace") == "aws"}
    assert {"s3", "sqs", "dynamodb"} <= aws_calls  # botocore, patched on first use
    downloads = [e for e in segments if e.get("namespace") == "remote"]
    assert {e["http"]["request"]["url"] for e in downloads} == {good, gone}  # httpx
    # concurrent downloads each nest under the creator, never under one another
    assert {e["parent_id"] for e in downloads} == {creator["id"]}
    assert not any("fault" in e or "error" in e for e in downloads if good in str(e))
