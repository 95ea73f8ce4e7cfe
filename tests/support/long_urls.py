"""A creator whose cover URLs are as long as a CSV may carry them, and checks on
what becomes of them (see :mod:`imgpipe.service.creator_covers`).

60 URLs of the 8,192-character limit make the creator's cover list about 490 KB:
past the 256 KB a final record may hold (and DynamoDB's 400 KB item limit), so its
covers must go to its metadata document and still reach the summary and the API
in full::

    rows, failing = long_url_rows(server)
    ...                                      # run the batch
    assert failed_urls_in_summary(summary, store) == failing
"""

from __future__ import annotations

import json
from typing import Any

from imgpipe.domain.row_rules import MAX_URL_CHARS
from imgpipe.ports import ObjectStore
from tests.support.covers import BLUE, RED, solid_jpeg
from tests.support.http_server import FaultServer, Serve

CREATOR = "Long Signed"
COVERS = 60  # about 490 KB of URLs: past DynamoDB's 400 KB item limit too
WORKING = 2  # covers that download; the rest answer 404
TOO_LONG_LINE = COVERS + 2  # the header is line 1


def long_url(server: FaultServer, path: str, index: int) -> str:
    """A URL of exactly MAX_URL_CHARS characters (the server ignores the query)."""
    head = server.url(f"{path}?n={index}&sig=")
    return head + "s" * (MAX_URL_CHARS - len(head))


def long_url_rows(server: FaultServer) -> tuple[list[tuple[str, str]], set[str]]:
    """The CSV rows of one creator with COVERS long URLs (WORKING of them serve an
    image), then one row (CSV line TOO_LONG_LINE) whose URL is one character too long;
    and the failing URLs."""
    server.add("/red.jpg", Serve(solid_jpeg(RED, (300, 400))))
    server.add("/blue.jpg", Serve(solid_jpeg(BLUE, (300, 400))))
    working = [long_url(server, "/red.jpg", 0), long_url(server, "/blue.jpg", 1)]
    failing = [long_url(server, "/gone.jpg", i) for i in range(COVERS - WORKING)]
    too_long = long_url(server, "/gone.jpg", 999) + "s"
    rows = [(CREATOR, url) for url in [*working, *failing, too_long]]
    return rows, set(failing)


def failed_urls_in_summary(summary: dict[str, Any], store: ObjectStore) -> tuple[set[str], ...]:
    """The failed URLs the summary lists inline, and those of its JSON Lines parts."""
    inline = {item["url"] for item in summary["failed_urls"]}
    parts: set[str] = set()
    for key in summary["failed_url_files"]:
        for line in store.get(key).decode().splitlines():
            parts.add(json.loads(line)["url"])
    return inline, parts
