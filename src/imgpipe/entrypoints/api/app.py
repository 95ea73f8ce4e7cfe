"""The FastAPI application: ``/v1`` API, dashboard, health and metrics.

One app for ``imgpipe serve`` (uvicorn) and Lambda behind API Gateway (Mangum)::

    app = create_app(Settings(), out_dir=Path("imgpipe-data"))
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles

from imgpipe.adapters.prometheus_metrics import PrometheusMetrics
from imgpipe.bootstrap import Backend, make_image_tools, open_backend
from imgpipe.entrypoints.api.auth import require_api_key
from imgpipe.entrypoints.api.launch import BatchLauncher, make_launcher
from imgpipe.errors import ImgpipeError
from imgpipe.settings import Settings

__all__ = ["create_app"]

API_PREFIX = "/v1"
STATIC = Path(__file__).resolve().parents[2] / "static"


def create_app(
    settings: Settings | None = None,
    *,
    out_dir: Path | None = None,
    backend: Backend | None = None,
    launcher: BatchLauncher | None = None,
) -> FastAPI:
    """Wire the adapters once; routes read them from ``app.state``."""
    from imgpipe.entrypoints.api import dashboard, routes_batches, routes_health, routes_tools

    settings = settings or Settings()
    root = (out_dir or settings.data_dir).resolve()
    backend = backend or open_backend(settings, out_dir=root)
    metrics = PrometheusMetrics()
    launcher = launcher or make_launcher(settings, backend, root, metrics)
    tools = make_image_tools(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        close = getattr(launcher, "close", None)
        if callable(close):
            close()
        tools.close()
        backend.close()

    app = FastAPI(
        title="imgpipe",
        version="0.1.0",
        description="Collages from creator CSVs, image comparison and compression.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.backend = backend
    app.state.launcher = launcher
    app.state.metrics = metrics
    app.state.compare_config = tools.compare_config
    app.state.comparator = tools.comparator
    app.state.compressor = tools.compressor
    app.state.decode_budget = tools.budget  # shared by both; its counters are for tests

    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    app.middleware("http")(_limit_and_measure)

    @app.exception_handler(ImgpipeError)
    async def imgpipe_error(request: Request, exc: ImgpipeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    secured = [Depends(require_api_key)]
    app.include_router(routes_batches.router, prefix=API_PREFIX, dependencies=secured)
    app.include_router(routes_tools.router, prefix=API_PREFIX, dependencies=secured)
    app.include_router(routes_health.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


async def _limit_and_measure(
    request: Request, call_next: Callable[[Request], Awaitable[Response]]
) -> Response:
    """413 for a declared body over the limit (streamed bodies are checked while read)."""
    limit = request.app.state.settings.max_upload_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return JSONResponse(
            {"detail": f"request body of {declared} bytes exceeds the limit of {limit}"},
            status_code=413,
        )
    started = time.perf_counter()
    response = await call_next(request)
    request.app.state.metrics.observe(
        "http_request",
        time.perf_counter() - started,
        method=request.method,
        route=_route_of(request),
        status=str(response.status_code),
    )
    return response


def _route_of(request: Request) -> str:
    """The route template (``/v1/batches/{batch_id}``), so labels stay few.

    FastAPI records the matched route in the scope with its path relative to the
    router it was included in, so the ``/v1`` prefix is put back here.
    """
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    if request.url.path.startswith(API_PREFIX + "/") and not path.startswith(API_PREFIX + "/"):
        return API_PREFIX + str(path)
    return str(path)
