"""A webhook receiver as a team would write one: it checks the signature, drops duplicates.

Mounted on a :class:`~tests.support.http_server.FaultServer` path, it answers 401 when
``X-Imgpipe-Signature`` is not the HMAC-SHA256 of the exact body with its secret,
202 for a new idempotency key and 200 for one it has seen (a duplicate)::

    receiver = Receiver(secret="s3cret")
    url = server.add("/hooks/imgpipe", receiver)
    ...                                   # a batch finishes with IMGPIPE_NOTIFY_URL=url
    assert [d["batch_id"] for d in receiver.accepted] == [batch_id]

``before`` answers the first requests with other behaviours (a 500, a hang), so tests
see the sender retry; those requests are not deliveries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from typing import Any

from tests.support.http_server import Behaviour, Exchange


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """What the README shows receivers: constant-time compare of the hex digests."""
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return header is not None and hmac.compare_digest(expected, header)


class Receiver:
    def __init__(self, secret: str = "", *before: Behaviour) -> None:
        self.secret = secret
        self.before = before
        self.accepted: list[dict[str, Any]] = []
        self.duplicates = 0
        self.rejected = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def respond(self, exchange: Exchange) -> None:
        if exchange.hit < len(self.before):
            self.before[exchange.hit].respond(exchange)
            return
        handler = exchange.handler
        length = int(handler.headers.get("Content-Length") or 0)
        # FaultServer read the body already; it is the last request recorded for the path.
        body = handler.server.owner.requests(exchange.path)[exchange.hit].body
        assert len(body) == length
        signed = handler.headers.get("X-Imgpipe-Signature")
        if self.secret and not verify(self.secret, body, signed):
            with self._lock:
                self.rejected += 1
            exchange.send(401, b"bad signature\n", {"Content-Type": "text/plain"})
            return
        key = handler.headers.get("Idempotency-Key") or ""
        with self._lock:
            duplicate = key in self._seen
            self._seen.add(key)
            if duplicate:
                self.duplicates += 1
            else:
                self.accepted.append(json.loads(body))
        exchange.send(200 if duplicate else 202, b"", {"Content-Type": "text/plain"})
