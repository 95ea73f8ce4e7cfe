"""Credentials: ``Authorization: Bearer <key>``, or the dashboard's signed session cookie.

The check itself runs in :mod:`imgpipe.entrypoints.api.guard`, before any body is
read; :data:`documented_security` only declares the schemes so ``/docs`` offers
"Authorize". The cookie never holds the key: it is ``<expiry>.<nonce>.<signature>``,
HMAC-SHA256 under ``IMGPIPE_SESSION_SECRET``, or when that is unset under a secret
derived from the key (so every process and Lambda container agrees, and changing
the key ends every session)::

    >>> secret = session_secret("", "s3cret")
    >>> token = issue_session(secret, now=1000.0)
    >>> session_valid(token, secret, now=1000.0 + SESSION_SECONDS - 1)
    True
    >>> session_valid(token, secret, now=1000.0 + SESSION_SECONDS)
    False
    >>> session_valid(token, session_secret("", "other"), now=1000.0)
    False
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping

from fastapi import Security
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer

__all__ = [
    "SESSION_COOKIE",
    "SESSION_SECONDS",
    "documented_security",
    "issue_session",
    "key_matches",
    "presents_credentials",
    "session_secret",
    "session_valid",
]

SESSION_COOKIE = "imgpipe_session"
SESSION_SECONDS = 12 * 3600
_DERIVE_LABEL = b"imgpipe dashboard session v1"


def key_matches(given: str, expected: str) -> bool:
    """Constant-time comparison, so timing tells nothing about the key."""
    return hmac.compare_digest(given.encode(), expected.encode())


def session_secret(configured: str, api_key: str) -> bytes:
    """``IMGPIPE_SESSION_SECRET``, else HMAC-SHA256 of a fixed label keyed by the API key."""
    if configured:
        return configured.encode()
    return hmac.new(api_key.encode(), _DERIVE_LABEL, hashlib.sha256).digest()


def _sign(secret: bytes, payload: str) -> str:
    digest = hmac.new(secret, payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def issue_session(secret: bytes, *, now: float | None = None) -> str:
    """A token valid for :data:`SESSION_SECONDS` from ``now``."""
    expires = int((time.time() if now is None else now) + SESSION_SECONDS)
    payload = f"{expires}.{secrets.token_urlsafe(12)}"
    return f"{payload}.{_sign(secret, payload)}"


def session_valid(token: str, secret: bytes, *, now: float | None = None) -> bool:
    payload, _, signature = token.rpartition(".")
    expires = payload.split(".", 1)[0]
    if not expires.isdigit() or not hmac.compare_digest(signature, _sign(secret, payload)):
        return False
    return (time.time() if now is None else now) < int(expires)


def presents_credentials(
    headers: Mapping[str, str], cookies: Mapping[str, str], api_key: str, secret: bytes
) -> bool:
    """The bearer key, or a live session cookie."""
    header = headers.get("authorization", "")
    if header[:7].lower() == "bearer " and key_matches(header[7:].strip(), api_key):
        return True
    token = cookies.get(SESSION_COOKIE, "")
    return bool(token) and session_valid(token, secret)


_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <IMGPIPE_API_KEY>")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="the dashboard's session (POST /login)"
)


def documented_security(
    bearer: HTTPAuthorizationCredentials | None = Security(_bearer),  # noqa: B008
    cookie: str | None = Security(_cookie),  # noqa: B008
) -> None:
    """Declares the schemes for OpenAPI; the guard middleware has already checked them."""
