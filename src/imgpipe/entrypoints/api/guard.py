"""The gate in front of the app: credentials from the headers, then a byte limit on the body.

Pure ASGI on purpose. FastAPI parses a multipart form (spooling it to temp files)
before it runs any dependency, so a ``Depends`` key check came after a 1 GB
chunked upload had been written; and a ``Content-Length`` check misses chunked
bodies. Here the key is checked before the app sees the request, and ``receive``
is wrapped so the app can never pull more than ``IMGPIPE_MAX_UPLOAD_BYTES``::

    app = Guard(fastapi_app, settings, login_page=render_login)

Open without the key: ``/healthz``, ``/readyz`` (probes), ``/login`` and
``/static/`` (the sign-in page and its stylesheet), and ``/metrics`` with
``IMGPIPE_PUBLIC_METRICS=true``. Everything else answers 401: an envelope for API
clients, the sign-in form for a browser asking for a page.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imgpipe.entrypoints.api.auth import presents_credentials, session_secret
from imgpipe.entrypoints.api.envelope import envelope
from imgpipe.settings import Settings

__all__ = ["BodyTooLarge", "Guard"]

OPEN_PATHS = frozenset({"/healthz", "/readyz", "/login"})
OPEN_PREFIXES = ("/static/",)


class BodyTooLarge(HTTPException):
    """Raised from ``receive``; FastAPI re-raises its HTTPException from body parsing
    (any other error becomes a 400),
    and Starlette's form parser closes its temp files on the way out."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than the limit of {limit} bytes")


class Guard:
    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        *,
        login_page: Callable[[Request], Response] | None = None,
    ) -> None:
        self.app = app
        self.key = settings.api_key
        self.secret = session_secret(settings.session_secret, settings.api_key)
        self.limit = settings.max_upload_bytes
        self.open_paths = OPEN_PATHS | ({"/metrics"} if settings.public_metrics else set())
        self.login_page = login_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self._limited(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        """The answer to a request that must not reach the app, read from its headers alone."""
        if self.key and not self._open(scope["path"]) and not self._signed(scope):
            return self._unauthorized(scope)
        declared = Request(scope).headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            return envelope(
                413, f"request body of {declared} bytes is over the limit of {self.limit}"
            )
        return None

    def _open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(OPEN_PREFIXES)

    def _signed(self, scope: Scope) -> bool:
        request = Request(scope)
        return presents_credentials(request.headers, request.cookies, self.key, self.secret)

    def _unauthorized(self, scope: Scope) -> Response:
        request = Request(scope)
        wants_page = request.method == "GET" and "text/html" in request.headers.get("accept", "")
        if wants_page and self.login_page is not None:
            return self.login_page(request)
        return envelope(
            401,
            "missing or wrong API key (Authorization: Bearer <key>)",
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:
            # Reached here only if no handler inside answered it (a plain ASGI route).
            if started:
                raise
            await envelope(413, str(exc.detail))(scope, receive, send)
