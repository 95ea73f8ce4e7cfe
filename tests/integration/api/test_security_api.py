"""The guard (key before body, byte cap while streaming), sessions, open routes, offline docs.

Uploads are chunked (no Content-Length) through a real uvicorn server; a probe
between uvicorn and the app counts the body bytes the app pulled.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.routing import Mount

from imgpipe.entrypoints.api.app import create_app
from imgpipe.entrypoints.api.auth import SESSION_COOKIE, issue_session, session_secret
from tests.integration.api.conftest import ApiFactory, api_settings
from tests.support.api_server import ApiServer

KEY = "s3cret-key"
BEARER = {"Authorization": f"Bearer {KEY}"}
CHUNK = 64 * 1024
BOUNDARY = "imgpipe-test-boundary"


class Probe:
    """ASGI wrapper: body bytes the app pulled, and the status it answered."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.received = 0
        self.status: int | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counted() -> Any:
            message = await receive()
            self.received += len(message.get("body", b""))
            return message

        async def watched(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            await send(message)

        await self.app(scope, counted, watched)


@pytest.fixture
def probed(tmp_path: Any) -> Iterator[tuple[Probe, ApiServer]]:
    app = create_app(api_settings(api_key=KEY, max_upload_bytes=1024 * 1024), out_dir=tmp_path)
    probe = Probe(app)
    with ApiServer(probe) as server:
        yield probe, server


def chunked_upload(
    probe: Probe, server: ApiServer, headers: dict[str, str], total: int
) -> tuple[httpx.Response, int]:
    """POST a multipart CSV upload of ``total`` bytes as a chunked stream; stop sending
    once the server has answered. Returns the answer and the bytes the client sent."""
    sent = 0

    def body() -> Iterator[bytes]:
        nonlocal sent
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"'
            "\r\nContent-Type: text/csv\r\n\r\ncreator,url\r\n"
        ).encode()
        yield head
        sent += len(head)
        while sent < total and probe.status is None:
            chunk = b"alice,https://example.com/a.jpg\r\n" * (CHUNK // 33)
            sent += len(chunk)
            yield chunk

    content_type = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    with httpx.Client(timeout=60) as http:
        answer = http.post(
            server.url("/v1/batches"), content=body(), headers={**headers, **content_type}
        )
    return answer, sent


def test_a_chunked_upload_without_the_key_is_refused_before_its_body_is_read(
    probed: tuple[Probe, ApiServer],
) -> None:
    probe, server = probed
    answer, sent = chunked_upload(probe, server, {}, total=256 * 1024 * 1024)

    assert answer.status_code == 401
    assert answer.json()["code"] == 401 and answer.headers["www-authenticate"] == "Bearer"
    assert probe.received == 0  # not one body byte reached the app
    assert sent < 32 * 1024 * 1024  # answered while the client was still sending


def test_a_chunked_upload_over_the_limit_is_413_while_streaming(
    probed: tuple[Probe, ApiServer],
) -> None:
    probe, server = probed
    answer, sent = chunked_upload(probe, server, BEARER, total=256 * 1024 * 1024)

    assert answer.status_code == 413, answer.text
    assert answer.json() == {
        "code": 413,
        "msg": "request body larger than the limit of 1048576 bytes",
        "data": None,
    }
    # The app pulled the limit and at most one more network read, never the rest.
    assert probe.received <= 1024 * 1024 + 256 * 1024
    assert sent < 32 * 1024 * 1024
    assert server.url("") and httpx.get(server.url("/v1/batches"), headers=BEARER).json() == []


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def _every_route(app: Any) -> list[tuple[str, str]]:
    """(method, path) for every route of the app, mounts by a file they serve.

    Included routers appear as one entry in newer FastAPI; their effective
    routes (with the prefix) are listed instead.
    """
    flat: list[tuple[Any, str]] = []
    for route in app.routes:
        if hasattr(route, "effective_route_contexts"):
            flat += [(c.original_route, c.path) for c in route.effective_route_contexts()]
        else:
            flat.append((route, route.path))
    found: list[tuple[str, str]] = []
    for route, path in flat:
        if isinstance(route, Mount):
            name = "app.css" if path == "/static" else "swagger-ui.css"
            found.append(("GET", f"{path}/{name}"))
            continue
        for method in sorted(getattr(route, "methods", None) or {"GET"}):
            if method != "HEAD":
                found.append((method, _concrete(path)))
    return found


OPEN = {"/healthz", "/readyz", "/login", "/static/app.css"}


def test_with_a_key_every_route_but_probes_and_sign_in_needs_it(api: ApiFactory) -> None:
    server = api(api_key=KEY)
    routes = _every_route(server.app)
    assert ("GET", "/metrics") in routes and ("GET", "/docs") in routes
    assert ("GET", "/openapi.json") in routes and ("GET", "/redoc") in routes

    for method, path in routes:
        bare = server.http.request(method, path)
        keyed = server.http.request(method, path, headers=BEARER)
        if path in OPEN:
            assert bare.status_code != 401, (method, path)
            continue
        assert bare.status_code == 401, (method, path, bare.status_code)
        assert bare.json()["code"] == 401
        assert keyed.status_code != 401, (method, path)
        wrong = server.http.request(method, path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401, (method, path)


def test_a_browser_asking_for_a_page_gets_the_sign_in_form(api: ApiFactory) -> None:
    server = api(api_key=KEY)
    page = server.http.get("/batches/x?page=2", headers={"Accept": "text/html"})
    assert page.status_code == 401
    assert 'name="key"' in page.text and 'value="/batches/x?page=2"' in page.text


def test_public_metrics_opens_only_metrics(api: ApiFactory) -> None:
    server = api(api_key=KEY, public_metrics=True)
    assert server.http.get("/metrics").status_code == 200
    assert server.http.get("/openapi.json").status_code == 401
    assert server.http.get("/v1/batches").status_code == 401


def _session(token: str) -> dict[str, str]:
    return {"Cookie": f"{SESSION_COOKIE}={token}"}


def test_the_dashboard_cookie_is_a_signed_expiring_session(api: ApiFactory) -> None:
    server = api(api_key=KEY)
    bad = server.http.post("/login", data={"key": "nope", "next": "/compare"})
    assert bad.status_code == 303 and "failed=true" in bad.headers["location"]
    assert SESSION_COOKIE not in server.http.cookies

    good = server.http.post("/login", data={"key": KEY, "next": "//evil.example/"})
    assert good.status_code == 303 and good.headers["location"] == "/"  # no open redirect
    cookie = good.headers["set-cookie"].lower()
    token = server.http.cookies[SESSION_COOKIE]
    assert KEY not in token and KEY.lower() not in cookie
    assert "httponly" in cookie and "samesite=lax" in cookie and "max-age=43200" in cookie
    assert "secure" not in cookie  # plain HTTP here
    assert server.http.get("/compare").status_code == 200
    assert server.http.get("/v1/batches").status_code == 200  # fetch() from the dashboard

    # Another process with the same key (another Lambda container) accepts it.
    other = api(api_key=KEY)
    assert other.http.get("/v1/batches", headers=_session(token)).status_code == 200
    # The raw key, a tampered or an expired token, or another key's token are refused.
    secret = session_secret("", KEY)
    expired = issue_session(secret, now=0)
    rekeyed = issue_session(session_secret("", "other-key"))
    for value in (KEY, token[:-2] + "xx", expired, rekeyed):
        assert other.http.get("/v1/batches", headers=_session(value)).status_code == 401


def test_session_secret_setting_signs_and_https_marks_the_cookie_secure(api: ApiFactory) -> None:
    server = api(api_key=KEY, session_secret="rotate-me")
    # uvicorn trusts X-Forwarded-Proto from 127.0.0.1, as behind a TLS proxy
    good = server.http.post("/login", data={"key": KEY}, headers={"X-Forwarded-Proto": "https"})
    assert "secure" in good.headers["set-cookie"].lower()
    derived = issue_session(session_secret("", KEY))
    assert server.http.get("/v1/batches", headers=_session(derived)).status_code == 401
    signed = issue_session(session_secret("rotate-me", KEY))
    assert server.http.get("/v1/batches", headers=_session(signed)).status_code == 200


def test_docs_load_only_local_assets(api: ApiFactory) -> None:
    server = api(api_key=KEY)
    for page in ("/docs", "/redoc"):
        html = server.http.get(page, headers=BEARER).text
        urls = re.findall(r"""(?:src|href|url)\s*[:=]\s*['"]([^'"]+)['"]""", html)
        assert urls, page
        assert all(u.startswith("/") and not u.startswith("//") for u in urls), urls
        for url in urls:
            assert server.http.get(url, headers=BEARER).status_code == 200, url


def test_openapi_declares_the_schemes_and_the_error_envelope(api: ApiFactory) -> None:
    schema = api().http.get("/openapi.json").json()
    schemes = schema["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"http", "apiKey"}
    upload = schema["paths"]["/v1/batches"]["post"]
    assert upload["security"]
    for status in ("400", "401", "413", "422", "503"):
        ref = upload["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorEnvelope")
    assert "limit" in schema["paths"]["/v1/batches"]["get"]["description"]
