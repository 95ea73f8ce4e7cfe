"""API key checks: ``Authorization: Bearer <key>`` for the API, a cookie for the dashboard.

Both are off when ``IMGPIPE_API_KEY`` is empty; comparisons are constant-time.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request

__all__ = ["API_KEY_COOKIE", "key_matches", "require_api_key", "signed_in"]

API_KEY_COOKIE = "imgpipe_key"


def key_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def signed_in(request: Request) -> bool:
    """The dashboard's cookie carries the key (set by ``POST /login``)."""
    expected = request.app.state.settings.api_key
    return not expected or key_matches(request.cookies.get(API_KEY_COOKIE, ""), expected)


def require_api_key(request: Request) -> None:
    """Bearer token, or the dashboard's cookie, when IMGPIPE_API_KEY is set; else 401."""
    expected = request.app.state.settings.api_key
    if not expected:
        return
    header = request.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else ""
    if key_matches(given, expected) or signed_in(request):
        return
    raise HTTPException(
        status_code=401,
        detail="missing or wrong API key (Authorization: Bearer <key>)",
        headers={"WWW-Authenticate": "Bearer"},
    )
