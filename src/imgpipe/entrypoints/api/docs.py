"""``/docs`` (Swagger UI) and ``/redoc`` from assets served by this app, never a CDN.

FastAPI's own pages load their scripts from jsDelivr, so they were blank on a
machine without internet. The ``fastapi-offline`` package ships the files
(Swagger UI 5, which renders OpenAPI 3.1; the older ``swagger-ui-bundle`` ships
4.x, which refuses FastAPI's 3.1 schema); they are mounted under ``/docs-assets``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS", "install_docs"]

ASSETS = "/docs-assets"


def install_docs(app: FastAPI) -> None:
    """Add ``/docs``, ``/redoc`` and their assets (create the app with docs_url=None)."""
    folder = Path(str(files("fastapi_offline") / "static"))
    router = APIRouter(include_in_schema=False)
    title = app.title

    @router.get("/docs", response_class=HTMLResponse)
    def swagger(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} · API",
            swagger_js_url=f"{root}{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS}/favicon.png",
            # the dashboard's cookie rides along with "Try it out" too
            swagger_ui_parameters={"persistAuthorization": True},
        )

    @router.get("/redoc", response_class=HTMLResponse)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{title} · API",
            redoc_js_url=f"{root}{ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    app.include_router(router)
    app.mount(ASSETS, StaticFiles(directory=folder), name="docs-assets")
