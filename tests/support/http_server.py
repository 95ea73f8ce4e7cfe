"""A real HTTP/1.1 server on 127.0.0.1 with per-path behaviours and fault injection.

Tests point real clients at it; nothing ever leaves the machine. Each path gets
a *behaviour*; the server records every request so tests can assert how many
attempts happened, when, with which headers, and how many were in flight::

    from tests.support.http_server import FaultServer, Sequence, Serve, Status

    with FaultServer() as server:
        url = server.add("/flaky.jpg", Sequence(Status(500), Status(500), Serve(jpeg())))
        ...                                   # fetch url three times
        assert server.hits("/flaky.jpg") == 3

Behaviours (frozen dataclasses, reusable across paths):

* :class:`Serve` -- bytes with a content type, optional delay, headers, no length;
* :class:`Status` -- an error status with a small body (e.g. ``Retry-After``);
* :class:`Sequence` -- the n-th request gets the n-th step, the last one repeats;
* :class:`Together` -- another behaviour once N requests are in flight together;
* :class:`Gated` -- another behaviour once the test sets an event;
* :class:`Redirect` -- 30x to a location (absolute or relative);
* :class:`Reset` -- read the request, then reset the TCP connection (RST);
* :class:`SlowBody` -- headers and a few bytes, then one byte per interval;
* :class:`Truncated` -- ``Content-Length`` larger than what is sent, then close;
* :class:`RawRedirect` -- a 302 whose ``Location`` line is written byte for byte;
* :class:`Endless` -- a huge body without a length, counting what was sent.

:meth:`FaultServer.hangups` counts clients that closed the connection mid-body.

``FaultServer(tls=context)`` serves HTTPS with an ``ssl.SSLContext``
(see :mod:`tests.support.tls`); the handshake runs in the connection's thread.

Any object with ``respond(exchange)`` is a behaviour too (see :class:`Exchange`).
POST requests are answered like GET ones, their body recorded in
:attr:`RecordedRequest.body` (webhook receivers).
Unknown paths answer 404; paths match without the query string, so
``server.url("/a.jpg?v=2")`` hits ``/a.jpg``. :meth:`FaultServer.responses`
lists what was answered (status, body bytes); :meth:`FaultServer.conditional_hits`
counts requests that carried ``If-None-Match`` / ``If-Modified-Since``
(:mod:`tests.support.http_caching` answers them). :meth:`FaultServer.close` stops
slow behaviours, closes every connection and joins every thread, so no socket
outlives the test (pytest runs with ``filterwarnings = error``).
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import urlsplit

__all__ = [
    "HTML_ERROR_PAGE",
    "Behaviour",
    "Endless",
    "FaultServer",
    "Gated",
    "RecordedRequest",
    "SentResponse",
    "RawRedirect",
    "Redirect",
    "Reset",
    "Sequence",
    "Serve",
    "SlowBody",
    "Status",
    "Together",
    "Truncated",
]

HTML_ERROR_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Not Found</title></head>"
    b"<body><h1>Sorry, this image is gone</h1></body></html>\n"
)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; ``time`` is ``time.monotonic()``."""

    path: str
    target: str  # path with query, as sent
    host: str  # Host header without the port
    headers: Mapping[str, str]
    time: float
    method: str = "GET"
    body: bytes = b""  # what a POST sent (Content-Length bytes)


@dataclass(frozen=True)
class SentResponse:
    """A status line and how many body bytes :meth:`Exchange.send` wrote with it."""

    status: int
    body_bytes: int


class Exchange:
    """What a behaviour may do with the request it answers."""

    def __init__(self, handler: _Handler, hit: int, path: str = "") -> None:
        self.handler = handler
        self.path = path
        self.hit = hit  # 0 for the first request to this path
        self.stopping = handler.server.stopping

    def send(
        self,
        status: int,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        length: int | None = None,
        close: bool = False,
    ) -> None:
        """Status line, headers and ``body``; ``length=-1`` omits Content-Length."""
        handler = self.handler
        handler.send_response(status)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        declared = len(body) if length is None else length
        if declared >= 0:
            handler.send_header("Content-Length", str(declared))
        if close or declared < 0:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        handler.server.owner._sent(self.path, SentResponse(status, len(body)))
        handler.wfile.write(body)

    def wait(self, seconds: float) -> bool:
        """Sleep unless the server is closing; True means "stop now"."""
        return self.stopping.wait(seconds)

    def hung_up(self) -> None:
        """Record that the client closed the connection before the body was complete."""
        self.handler.server.owner._hung_up(self.path)


class Behaviour(Protocol):
    """Answers one request."""

    def respond(self, exchange: Exchange) -> None: ...


@dataclass(frozen=True)
class Serve:
    """200 (or ``status``) with ``body``; ``length=False`` ends the body by closing."""

    body: bytes
    content_type: str | None = "image/jpeg"
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (to hold requests in flight)
    length: bool = True

    def respond(self, exchange: Exchange) -> None:
        if self.delay and exchange.wait(self.delay):
            return
        headers = dict(self.headers)
        if self.content_type is not None:
            headers["Content-Type"] = self.content_type
        exchange.send(self.status, self.body, headers, length=None if self.length else -1)


@dataclass(frozen=True)
class Status:
    """An error status, e.g. ``Status(429, {"Retry-After": "1"})``."""

    code: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b"error\n"

    def respond(self, exchange: Exchange) -> None:
        exchange.send(self.code, self.body, {"Content-Type": "text/plain", **self.headers})


@dataclass(frozen=True)
class Sequence:
    """Request n gets ``steps[n]``; once they run out the last step repeats."""

    steps: tuple[Behaviour, ...]

    def __init__(self, *steps: Behaviour) -> None:
        if not steps:
            raise ValueError("Sequence needs at least one step")
        object.__setattr__(self, "steps", steps)

    def respond(self, exchange: Exchange) -> None:
        self.steps[min(exchange.hit, len(self.steps) - 1)].respond(exchange)


@dataclass(frozen=True)
class Together:
    """``behaviour`` once ``barrier.parties`` requests wait at ``barrier`` at the same time.

    Proves overlap by an event rather than by timing: ``Together(Serve(jpeg()),
    threading.Barrier(3))`` answers only when three requests are in flight together,
    whatever the machine's speed. Send a multiple of ``parties`` requests. Too few
    together for ``timeout`` s break the barrier: that request and every later one
    get a 503 naming why.
    """

    behaviour: Behaviour
    barrier: threading.Barrier
    timeout: float = 10.0

    def respond(self, exchange: Exchange) -> None:
        try:
            self.barrier.wait(self.timeout)
        except threading.BrokenBarrierError:
            why = f"fewer than {self.barrier.parties} requests were in flight together\n"
            exchange.send(503, why.encode(), {"Content-Type": "text/plain"})
            return
        self.behaviour.respond(exchange)


@dataclass(frozen=True)
class Gated:
    """``behaviour`` once the test sets ``gate``: requests stay in flight until it says.

    Stopping the server (or ``timeout`` s) lets a held request go unanswered.
    """

    behaviour: Behaviour
    gate: threading.Event
    timeout: float = 60.0

    def respond(self, exchange: Exchange) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.gate.wait(0.05):  # checks for a stop between waits
            if exchange.stopping.is_set() or time.monotonic() > deadline:
                return
        self.behaviour.respond(exchange)


@dataclass(frozen=True)
class Redirect:
    location: str
    status: int = 302

    def respond(self, exchange: Exchange) -> None:
        exchange.send(self.status, b"", {"Location": self.location})


@dataclass(frozen=True)
class RawRedirect:
    """A 302 whose Location header line is ``location`` byte for byte.

    ``send_header`` would encode a str; this writes what a broken server sends,
    e.g. ``rb"http:\\127.0.0.1:8766\r19"`` or non-ASCII bytes.
    """

    location: bytes

    def respond(self, exchange: Exchange) -> None:
        handler = exchange.handler
        head = b"HTTP/1.1 302 Found\r\nLocation: " + self.location + b"\r\n"
        handler.wfile.write(head + b"Content-Length: 0\r\n\r\n")
        handler.server.owner._sent(exchange.path, SentResponse(302, 0))


class Endless:
    """200 with ``head`` then zeros until the client hangs up, or ``limit`` bytes in all.

    No Content-Length, so only the client's own cap can stop it; ``sent`` counts
    the body bytes written to the socket, for tests to compare with that cap.
    """

    def __init__(self, head: bytes, limit: int, chunk_size: int = 64 * 1024) -> None:
        self.head = head
        self.limit = limit
        self.chunk_size = chunk_size
        self.sent = 0

    def respond(self, exchange: Exchange) -> None:
        exchange.send(200, b"", {"Content-Type": "image/jpeg"}, length=-1)
        chunk = self.head + bytes(self.chunk_size - len(self.head))  # head: magic bytes
        while self.sent < self.limit and not exchange.stopping.is_set():
            try:
                exchange.handler.wfile.write(chunk[: self.limit - self.sent])
            except OSError:  # the client closed the connection: what a cap should do
                exchange.hung_up()
                return
            self.sent += min(len(chunk), self.limit - self.sent)
            chunk = bytes(self.chunk_size)


@dataclass(frozen=True)
class Reset:
    """No response: the connection is reset (SO_LINGER 0, so close sends RST)."""

    def respond(self, exchange: Exchange) -> None:
        handler = exchange.handler
        handler.close_connection = True
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.server.mark_for_reset(handler.connection)


@dataclass(frozen=True)
class SlowBody:
    """Declares the whole body, sends ``first`` bytes, then one byte per ``interval``."""

    body: bytes
    content_type: str = "image/jpeg"
    first: int = 4
    interval: float = 0.05

    def respond(self, exchange: Exchange) -> None:
        head, rest = self.body[: self.first], self.body[self.first :]
        exchange.send(200, head, {"Content-Type": self.content_type}, length=len(self.body))
        for index in range(len(rest)):
            if exchange.wait(self.interval):
                return
            try:
                exchange.handler.wfile.write(rest[index : index + 1])
            except OSError:  # the client gave up, as it should
                exchange.hung_up()
                return


@dataclass(frozen=True)
class Truncated:
    """Declares ``len(body)`` bytes, sends only the first ``sent``, then closes."""

    body: bytes
    sent: int = 100
    content_type: str = "image/jpeg"

    def respond(self, exchange: Exchange) -> None:
        exchange.send(
            200,
            self.body[: self.sent],
            {"Content-Type": self.content_type},
            length=len(self.body),
            close=True,
        )


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    timeout = 10  # a stuck client cannot pin a thread for long

    def do_GET(self) -> None:
        self.server.owner._dispatch(self)

    def do_POST(self) -> None:  # webhooks: the body is read and recorded first
        self.server.owner._dispatch(self)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: FaultServer, host: str, tls: ssl.SSLContext | None) -> None:
        self.owner = owner
        self.tls = tls
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._open: set[socket.socket] = set()
        self._resets: set[socket.socket] = set()
        super().__init__((host, 0), _Handler)
        if tls is not None:
            # No handshake in accept(): a slow or failing client must not stall the others.
            self.socket = tls.wrap_socket(
                self.socket, server_side=True, do_handshake_on_connect=False
            )

    def process_request(self, request: Any, client_address: Any) -> None:
        # Our own worker threads (not ThreadingMixIn's) so close() can join them.
        worker = threading.Thread(
            target=self._work, args=(request, client_address), daemon=True, name="fault-server"
        )
        with self._lock:
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(worker)
            self._open.add(request)
        worker.start()

    def _work(self, request: socket.socket, client_address: Any) -> None:
        try:
            if isinstance(request, ssl.SSLSocket):
                request.settimeout(_Handler.timeout)
                request.do_handshake()  # an OSError (SSLError) is ignored by handle_error
            self.finish_request(request, client_address)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            with self._lock:
                self._open.discard(request)

    def mark_for_reset(self, request: socket.socket) -> None:
        with self._lock:
            self._resets.add(request)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            reset = request in self._resets
            self._resets.discard(request)
        if reset:
            request.close()  # no shutdown(SHUT_WR) first: that would send FIN, not RST
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # clients hanging up mid-response is what fault tests are about
        super().handle_error(request, client_address)

    def stop(self) -> None:
        self.stopping.set()
        self.shutdown()
        with self._lock:
            sockets, workers = list(self._open), list(self._workers)
        for sock in sockets:  # wake keep-alive readers blocked on idle connections
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for worker in workers:
            worker.join(timeout=5)
        self.server_close()


class FaultServer:
    """A threaded HTTP server on ``host`` (an IPv4 address), port chosen by the OS.

    Serving starts at construction; use it as a context manager or call
    :meth:`close`. All recording methods are thread-safe.
    """

    def __init__(self, host: str = "127.0.0.1", *, tls: ssl.SSLContext | None = None) -> None:
        self._routes: dict[str, Behaviour] = {}
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._hits: Counter[str] = Counter()
        self._responses: defaultdict[str, list[SentResponse]] = defaultdict(list)
        self._in_flight: Counter[str] = Counter()
        self._hangups: Counter[str] = Counter()
        self._hangup = threading.Condition(self._lock)
        self._max_by_host: defaultdict[str, int] = defaultdict(int)
        self._max_total = 0
        self._server = _Server(self, host, tls)
        self.scheme = "https" if tls is not None else "http"
        self.host = host
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name="fault-server-accept",
        )
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def url(self, path: str, host: str | None = None) -> str:
        """Absolute URL of ``path``; ``host`` swaps the host name (same port)."""
        return f"{self.scheme}://{host or self.host}:{self.port}{path}"

    def add(self, path: str, behaviour: Behaviour) -> str:
        """Answer requests for ``path`` with ``behaviour``; returns its URL."""
        with self._lock:
            self._routes[path] = behaviour
        return self.url(path)

    def hits(self, path: str | None = None) -> int:
        """Requests received for ``path`` (all paths when None)."""
        with self._lock:
            return sum(self._hits.values()) if path is None else self._hits[path]

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def conditional_hits(self, path: str) -> int:
        """Requests for ``path`` that asked "changed?" (If-None-Match / If-Modified-Since)."""
        conditions = ("if-none-match", "if-modified-since")
        return sum(
            any(name.lower() in conditions for name in r.headers) for r in self.requests(path)
        )

    def responses(self, path: str) -> list[SentResponse]:
        """What was answered for ``path``, in order (resets and hang-ups send nothing)."""
        with self._lock:
            return list(self._responses[path])

    def hangups(self, path: str, *, wait_for: int = 0, timeout: float = 10.0) -> int:
        """How often a client closed the connection to ``path`` while its body was being
        sent; with ``wait_for``, first wait (up to ``timeout`` s) until there were that many.

        The server sees a hang-up at its next write, a moment after the client closed.
        """
        with self._hangup:
            self._hangup.wait_for(lambda: self._hangups[path] >= wait_for, timeout)
            return self._hangups[path]

    def _hung_up(self, path: str) -> None:
        with self._hangup:
            self._hangups[path] += 1
            self._hangup.notify_all()

    def _sent(self, path: str, response: SentResponse) -> None:
        with self._lock:
            self._responses[path].append(response)

    def times(self, path: str) -> list[float]:
        """``time.monotonic()`` of each request to ``path``, in arrival order."""
        return [r.time for r in self.requests(path)]

    @property
    def max_in_flight(self) -> int:
        """Most requests being answered at the same moment, all hosts together."""
        with self._lock:
            return self._max_total

    def max_in_flight_for(self, host: str) -> int:
        """Most concurrent requests whose Host header named ``host`` (port ignored)."""
        with self._lock:
            return self._max_by_host[host]

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.stop()
            self._thread.join(timeout=5)

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _dispatch(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        host = urlsplit("//" + (handler.headers.get("Host") or "")).hostname or ""
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length > 0 else b""
        record = RecordedRequest(
            path,
            handler.path,
            host,
            dict(handler.headers.items()),
            time.monotonic(),
            method=handler.command,
            body=body,
        )
        with self._lock:
            hit = self._hits[path]
            self._hits[path] += 1
            self._requests.append(record)
            self._in_flight[host] += 1
            self._max_by_host[host] = max(self._max_by_host[host], self._in_flight[host])
            self._max_total = max(self._max_total, sum(self._in_flight.values()))
            behaviour = self._routes.get(path)
        try:
            exchange = Exchange(handler, hit, path)
            if behaviour is None:
                exchange.send(404, b"no such path\n", {"Content-Type": "text/plain"})
            else:
                behaviour.respond(exchange)
        finally:
            with self._lock:
                self._in_flight[host] -= 1
