"""A :class:`~tests.support.http_server.FaultServer` behaviour that speaks HTTP validators.

:class:`Cacheable` answers like a CDN serving a cover: 200 with ``ETag`` /
``Last-Modified`` / ``Cache-Control`` / ``Age``, and 304 with no body when
the request's ``If-None-Match`` (or, without it, ``If-Modified-Since``)
shows the client already has this version::

    url = server.add("/a.jpg", Sequence(Cacheable(v1, etag='"1"'), Cacheable(v2, etag='"2"')))
    ...                                   # fetch twice
    assert server.responses("/a.jpg")[1].status == 200   # "1" is stale: v2 in full
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from tests.support.http_server import Exchange

__all__ = ["Cacheable"]


def _date_not_after(value: str, limit: str) -> bool:
    try:
        return parsedate_to_datetime(value) <= parsedate_to_datetime(limit)
    except (TypeError, ValueError):
        return False


@dataclass(frozen=True)
class Cacheable:
    """``body`` with validators; 304 to a conditional request that matches them."""

    body: bytes
    etag: str | None = None
    last_modified: str | None = None
    cache_control: str | None = None
    age: int | None = None
    content_type: str = "image/jpeg"

    def respond(self, exchange: Exchange) -> None:
        headers: dict[str, str] = {}
        if self.etag is not None:
            headers["ETag"] = self.etag
        if self.last_modified is not None:
            headers["Last-Modified"] = self.last_modified
        if self.cache_control is not None:
            headers["Cache-Control"] = self.cache_control
        if self.age is not None:
            headers["Age"] = str(self.age)
        if self._not_modified(exchange):
            exchange.send(304, b"", headers)
        else:
            exchange.send(200, self.body, {"Content-Type": self.content_type, **headers})

    def _not_modified(self, exchange: Exchange) -> bool:
        request = exchange.handler.headers
        if_none_match = request.get("If-None-Match")
        if if_none_match is not None:  # RFC 9110 13.2.2: it overrides If-Modified-Since
            tags = {tag.strip() for tag in if_none_match.split(",")}
            return self.etag is not None and ("*" in tags or self.etag in tags)
        since = request.get("If-Modified-Since")
        return (
            since is not None
            and self.last_modified is not None
            and _date_not_after(self.last_modified, since)
        )
