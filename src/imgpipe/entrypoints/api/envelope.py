"""One error shape for every JSON answer: ``{"code", "msg", "data"}``, HTTP status = ``code``.

The comparison API of the original system answered this way; every endpoint now
does, for its own errors, FastAPI's (404, 405, 422) and the guard's (401, 413)::

    >>> envelope(404, "no batch 'x'").body
    b'{"code":404,"msg":"no batch \\'x\\'","data":null}'

The ``ImgpipeError`` tree is translated here, once: the client's fault is 400, an
outage of storage, state or queue is 503 (retry later), anything else 500.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from imgpipe.errors import (
    ComparisonError,
    ConfigError,
    FetchError,
    ImageError,
    ImgpipeError,
    InputError,
    MessageError,
    QueueError,
    StateError,
    StorageError,
)

__all__ = ["ERROR_RESPONSES", "ErrorEnvelope", "envelope", "install_error_handlers", "status_of"]

log = logging.getLogger(__name__)


class ErrorEnvelope(BaseModel):
    """Every JSON error: ``code`` equals the HTTP status, ``msg`` says what went wrong."""

    code: int
    msg: str
    data: Any = None


def _described(text: str) -> dict[str, Any]:
    return {"model": ErrorEnvelope, "description": text}


# Listed on every API route so the schema says what an error looks like.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _described("unusable input; `msg` names the file, row or field"),
    401: _described("missing or wrong API key (when IMGPIPE_API_KEY is set)"),
    413: _described("request body over IMGPIPE_MAX_UPLOAD_BYTES"),
    422: _described("invalid parameter; `data` lists each error with its location"),
    503: _described("storage, state store or queue unavailable; retry later"),
}

_STATUS: tuple[tuple[type[ImgpipeError], int], ...] = (
    (InputError, 400),
    (ConfigError, 400),
    (ImageError, 400),
    (MessageError, 400),
    (StorageError, 503),
    (StateError, 503),
    (QueueError, 503),
    (FetchError, 502),
    (ComparisonError, 500),
)


def status_of(exc: ImgpipeError) -> int:
    """The HTTP status of an error of the tree (500 for what is not listed)."""
    return next((status for kind, status in _STATUS if isinstance(exc, kind)), 500)


def envelope(
    code: int, msg: str, data: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """``{"code", "msg", "data"}`` with the HTTP status equal to ``code``."""
    return JSONResponse({"code": code, "msg": msg, "data": data}, code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error FastAPI, Starlette or imgpipe raises becomes an envelope."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return envelope(exc.status_code, str(exc.detail), headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The offending input is left out: it may be a whole upload.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        text = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in errors)
        return envelope(422, text or "invalid request", errors)

    @app.exception_handler(ImgpipeError)
    async def imgpipe_error(request: Request, exc: ImgpipeError) -> JSONResponse:
        status = status_of(exc)
        if status >= 500:
            log.warning("%s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return envelope(status, str(exc))

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback after this answer; the client learns nothing internal.
        return envelope(500, "internal error")


def _field(loc: list[Any]) -> str:
    """``["body", "rows"]`` -> ``rows``: the field as the client named it."""
    return ".".join(str(part) for part in (loc[1:] or loc))
