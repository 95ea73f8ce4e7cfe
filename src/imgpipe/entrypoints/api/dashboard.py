"""Server-rendered dashboard at ``/``: batches, a batch's collages, creators, upload, compare.

Pages are Jinja templates over the same views as the JSON API; a little
JavaScript (``static/app.js``) polls the API to update progress while a batch
runs and posts the upload and compare forms. No build step.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from imgpipe.domain.records import CreatorStatus
from imgpipe.domain.spec import RANGES
from imgpipe.entrypoints.api.auth import (
    SESSION_COOKIE,
    SESSION_SECONDS,
    issue_session,
    key_matches,
    session_secret,
)
from imgpipe.entrypoints.api.routes_batches import batch_detail, batch_view, creator_view

__all__ = ["login_form", "router"]

TEMPLATES = Jinja2Templates(Path(__file__).resolve().parents[2] / "templates" / "dashboard")
router = APIRouter(include_in_schema=False)
PAGE_SIZE = 100  # creators per batch page: tiles and table rows


def _page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    # Signed in or no key set: the guard middleware let the request through.
    settings = request.app.state.settings
    context.setdefault("title", "imgpipe")
    context["backend"] = settings.backend
    return TEMPLATES.TemplateResponse(request, template, context, status_code=status)


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    batches = [batch_view(b) for b in request.app.state.backend.state.list_batches(50)]
    # The upload form's limits and placeholders: the API's ranges, this server's defaults.
    spec = request.app.state.settings.batch_spec()
    return _page(
        request, "batches.html", batches=batches, title="Batches · imgpipe", ranges=RANGES,
        defaults=spec.render,
    )  # fmt: skip


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(
    request: Request,
    batch_id: str,
    page: Annotated[int, Query(ge=1)] = 1,
    status: CreatorStatus | None = None,
) -> Response:
    detail = batch_detail(
        request, batch_id, status=status, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE
    )
    if detail is None:
        message = f"There is no batch {batch_id!r}."
        return _page(request, "missing.html", status=404, message=message, title="Not found")
    pages = max(1, -(-detail["creators_total"] // PAGE_SIZE))
    return _page(
        request,
        "batch.html",
        batch=detail,
        page=min(page, pages),
        pages=pages,
        page_size=PAGE_SIZE,
        status_filter=status.value if status else "",
        # Re-rendering on every finished creator is only sensible while all fit one page.
        live_reload=(detail.get("total_creators") or 0) <= PAGE_SIZE,
        title=f"Batch {batch_id} · imgpipe",
    )


@router.get("/creators/{name}", response_class=HTMLResponse)
def creator_page(request: Request, name: str) -> Response:
    records = request.app.state.backend.state.creator_history(name, 100)
    if not records:
        message = f"No batch has processed a creator named {name!r}."
        return _page(request, "missing.html", status=404, message=message, title="Not found")
    store = request.app.state.backend.store
    history = [creator_view(r, store) for r in records]
    title = f"{history[0]['creator']} · imgpipe"
    return _page(request, "creator.html", history=history, name=name, title=title)


@router.get("/compare", response_class=HTMLResponse)
def compare_page(request: Request) -> Response:
    config = request.app.state.compare_config
    return _page(request, "compare.html", config=config, title="Compare · imgpipe")


def _local(target: str) -> str:
    """Only a path on this site, so the sign-in form is no open redirect."""
    return target if target.startswith("/") and not target.startswith(("//", "/\\")) else "/"


def _login(request: Request, next: str, failed: bool, status: int) -> Response:
    context = {"next": _local(next), "failed": failed, "title": "Sign in · imgpipe", "backend": ""}
    return TEMPLATES.TemplateResponse(request, "login.html", context, status_code=status)


def login_form(request: Request) -> Response:
    """The guard's answer to a browser asking for a page without a session: 401 and the form."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return _login(request, target, failed=False, status=401)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str = "/", failed: bool = False) -> Response:
    return _login(request, next, failed, status=401 if failed else 200)


@router.post("/login")
def login(
    request: Request, key: Annotated[str, Form()], next: Annotated[str, Form()] = "/"
) -> Response:
    safe_next = _local(next)
    settings = request.app.state.settings
    if not settings.api_key:
        return RedirectResponse(safe_next, status_code=303)  # nothing to sign in to
    if not key_matches(key, settings.api_key):
        return RedirectResponse(f"/login?failed=true&next={quote(safe_next)}", status_code=303)
    response = RedirectResponse(safe_next, status_code=303)
    # A signed, expiring token, never the key: a stolen cookie dies in 12 h and
    # cannot be replayed as the Bearer key.
    token = issue_session(session_secret(settings.session_secret, settings.api_key))
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=SESSION_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    return response
