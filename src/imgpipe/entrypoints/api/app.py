"""The FastAPI application: ``/v1`` API, dashboard, health and metrics.

One app for ``imgpipe serve`` (uvicorn) and Lambda behind API Gateway (Mangum)::

    app = create_app(Settings(), out_dir=Path("imgpipe-data"))
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgpipe.adapters.prometheus_metrics import PrometheusMetrics
from imgpipe.bootstrap import Backend, make_image_tools, open_backend
from imgpipe.entrypoints.api.auth import documented_security
from imgpipe.entrypoints.api.docs import install_docs
from imgpipe.entrypoints.api.envelope import ERROR_RESPONSES, install_error_handlers
from imgpipe.entrypoints.api.guard import Guard
from imgpipe.entrypoints.api.launch import BatchLauncher, make_launcher
from imgpipe.settings import Settings
from imgpipe.version import version

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
        version=version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served from local assets by install_docs
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.backend = backend
    app.state.launcher = launcher
    app.state.metrics = metrics
    app.state.compare_config = tools.compare_config
    app.state.comparator = tools.comparator
    app.state.compressor = tools.compressor
    app.state.decode_budget = tools.budget  # shared by both; its counters are for tests

    # Added last = outermost: CORS answers preflights (which carry no key), then the
    # guard checks the key and caps the body before anything reads it.
    app.add_middleware(_Measure, metrics=metrics)
    app.add_middleware(Guard, settings=settings, login_page=dashboard.login_form)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type"],
        )
    install_error_handlers(app)

    secured = [Depends(documented_security)]  # for the docs; the guard checks
    for router in (routes_batches.router, routes_tools.router):
        app.include_router(
            router, prefix=API_PREFIX, dependencies=secured, responses=ERROR_RESPONSES
        )
    app.include_router(routes_health.router)
    app.include_router(dashboard.router)
    install_docs(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


DESCRIPTION = """Collages from creator CSVs, image comparison and compression.

Every JSON error is `{"code": <HTTP status>, "msg": "<what went wrong>", "data": ...}`.
With `IMGPIPE_API_KEY` set every route but `/healthz`, `/readyz` and `/login` needs
`Authorization: Bearer <key>` (or the dashboard's session cookie); request bodies
are capped at `IMGPIPE_MAX_UPLOAD_BYTES` (413).
"""


class _Measure:
    """Requests and latencies by route template and status, for /metrics.

    Pure ASGI: Starlette's BaseHTTPMiddleware runs ``receive`` in a task group, which
    wraps the guard's 413 in an ExceptionGroup that FastAPI then reports as a 400.
    """

    def __init__(self, app: ASGIApp, metrics: PrometheusMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app raises before responding

        async def watched(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watched)
        finally:
            self.metrics.observe(
                "http_request",
                time.perf_counter() - started,
                method=scope["method"],
                route=_route_of(scope),
                status=str(status),
            )


def _route_of(scope: Scope) -> str:
    """The route template (``/v1/batches/{batch_id}``), so labels stay few.

    FastAPI records the matched route in the scope with its path relative to the
    router it was included in, so the ``/v1`` prefix is put back here.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None:
        return "unmatched"
    if scope["path"].startswith(API_PREFIX + "/") and not path.startswith(API_PREFIX + "/"):
        return API_PREFIX + str(path)
    return str(path)
