"""``/healthz`` (alive), ``/readyz`` (named dependency checks), ``/metrics`` (Prometheus)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from imgpipe.entrypoints.api.auth import documented_security

router = APIRouter(tags=["operations"])
CHECK_TIMEOUT = 3.0


@router.get("/healthz", summary="Liveness")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: object store, state store, queue, network")
async def readyz(request: Request) -> JSONResponse:
    settings = request.app.state.settings
    backend = request.app.state.backend
    checks: dict[str, Callable[[], Any]] = {
        "object_store": lambda: list(backend.store.list("results/processing-summaries/"))[:1],
        "state_store": lambda: backend.state.list_batches(1),
    }
    if settings.sqs_queue_url and settings.backend == "aws":
        checks["queue"] = request.app.state.launcher.fanout.ports.queue.depth
    results = await asyncio.gather(*(_check(fn) for fn in checks.values()))
    report = dict(zip(checks, results, strict=True))
    report["network"] = await _network(settings.readiness_url)
    ok = all(r["ok"] for r in report.values() if r.get("ok") is not None)
    return JSONResponse({"ready": ok, "checks": report}, status_code=200 if ok else 503)


async def _check(fn: Callable[[], Any]) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(asyncio.to_thread(fn), CHECK_TIMEOUT)
    except Exception as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 1)}


async def _network(url: str) -> dict[str, Any]:
    """Outbound reachability, as the original health check did; skipped when unset."""
    if not url:
        return {"ok": None, "skipped": "IMGPIPE_READINESS_URL is not set"}
    started = time.perf_counter()
    try:
        async with (
            httpx.AsyncClient(timeout=CHECK_TIMEOUT, trust_env=False) as client,
            client.stream("GET", url) as response,  # headers are enough; the body is not read
        ):
            pass
    except httpx.HTTPError as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    ms = round((time.perf_counter() - started) * 1000, 1)
    return {"ok": response.status_code < 500, "status": response.status_code, "ms": ms}


@router.get(
    "/metrics",
    summary="Prometheus metrics (needs the key unless IMGPIPE_PUBLIC_METRICS=true)",
    response_class=Response,
    dependencies=[Depends(documented_security)],
)
def metrics(request: Request) -> Response:
    return Response(
        request.app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
