"""Downloader against a real HTTP server on 127.0.0.1 and real temporary files."""

from __future__ import annotations

import gzip
import socket
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from ipaddress import IPv4Address, ip_network
from pathlib import Path

import pytest

from imgpipe.fetch.downloader import FetchPolicy
from imgpipe.fetch.netguard import IPAddress, ResolutionError
from imgpipe.fetch.responses import parse_retry_after
from imgpipe.settings import BatchSpec
from tests.integration.conftest import Fetch, PolicyFactory
from tests.support.http_server import (
    HTML_ERROR_PAGE,
    Behaviour,
    Endless,
    FaultServer,
    RawRedirect,
    Redirect,
    Reset,
    Sequence,
    Serve,
    SlowBody,
    Status,
    Together,
    Truncated,
)
from tests.support.images import encode, jpeg, png, solid, webp
from tests.support.tls import TestCA

JPEG = jpeg()


@pytest.mark.parametrize(
    ("body", "content_type", "fmt"),
    [(JPEG, "image/jpeg", "jpeg"), (png(), "image/png", "png"), (webp(), "image/webp", "webp")],
)
def test_serves_image_bytes_exactly(
    server: FaultServer,
    policy: PolicyFactory,
    fetch: Fetch,
    body: bytes,
    content_type: str,
    fmt: str,
) -> None:
    url = server.add("/cover", Serve(body, content_type))
    [result] = fetch(policy(), url)
    assert result.ok, result.detail
    assert result.data == body
    assert (result.attempts, result.status_code, result.image_format) == (1, 200, fmt)
    assert result.content_type == content_type
    assert result.final_url == url
    assert server.hits("/cover") == 1


def test_sends_user_agent_and_accept(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    url = server.add("/a.jpg", Serve(JPEG))
    fetch(policy(user_agent="imgpipe-test/9"), url)
    [request] = server.requests("/a.jpg")
    assert request.headers["User-Agent"] == "imgpipe-test/9"
    assert request.headers["Accept"] == "image/*"


@pytest.mark.parametrize("content_type", ["application/octet-stream", "text/plain", None])
def test_real_image_with_wrong_content_type_is_accepted(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch, content_type: str | None
) -> None:
    url = server.add("/a", Serve(JPEG, content_type))
    [result] = fetch(policy(), url)
    assert result.ok
    assert result.data == JPEG
    assert result.content_type == content_type


def test_404_is_not_retried(server: FaultServer, policy: PolicyFactory, fetch: Fetch) -> None:
    [result] = fetch(policy(), server.url("/missing.jpg"))
    assert (result.reason, result.attempts, result.status_code) == ("http_404", 1, 404)
    assert result.detail == "HTTP 404 Not Found after 1 attempt"
    assert result.data is None and not result.ok
    assert server.hits("/missing.jpg") == 1


@pytest.mark.parametrize("status", [400, 403, 410])
def test_other_4xx_are_not_retried(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch, status: int
) -> None:
    url = server.add("/private.jpg", Status(status))
    [result] = fetch(policy(retries=3), url)
    assert (result.reason, result.attempts) == (f"http_{status}", 1)
    assert server.hits("/private.jpg") == 1


def test_500_twice_then_ok(server: FaultServer, policy: PolicyFactory, fetch: Fetch) -> None:
    url = server.add("/flaky.jpg", Sequence(Status(500), Status(500), Serve(JPEG)))
    [result] = fetch(policy(retries=3), url)
    assert result.ok
    assert result.data == JPEG
    assert result.attempts == 3
    assert server.hits("/flaky.jpg") == 3


@pytest.mark.parametrize("retries", [0, 2])
def test_persistent_500_uses_every_attempt(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch, retries: int
) -> None:
    url = server.add("/down.jpg", Status(500))
    [result] = fetch(policy(retries=retries), url)
    assert (result.reason, result.attempts) == ("http_500", retries + 1)
    assert result.detail.startswith("HTTP 500 Internal Server Error after")
    assert server.hits("/down.jpg") == retries + 1


def test_retry_after_is_honoured(server: FaultServer, policy: PolicyFactory, fetch: Fetch) -> None:
    url = server.add(
        "/busy.jpg", Sequence(Status(429, {"Retry-After": "1"}), Serve(JPEG, "image/jpeg"))
    )
    [result] = fetch(policy(backoff_max=5.0), url)
    assert result.ok
    assert result.attempts == 2
    first, second = server.times("/busy.jpg")
    assert second - first >= 0.9


def test_retry_after_is_capped_by_backoff_max(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    url = server.add("/busy.jpg", Sequence(Status(503, {"Retry-After": "120"}), Serve(JPEG)))
    [result] = fetch(policy(backoff_max=0.05), url)
    assert result.ok
    first, second = server.times("/busy.jpg")
    assert second - first < 5.0


def test_parse_retry_after_seconds_and_dates() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30.0)
    assert parse_retry_after(format_datetime(now, usegmt=True), now=now.timestamp() + 60) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_connection_reset_is_retried_then_reported(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    url = server.add("/reset.jpg", Reset())
    [result] = fetch(policy(retries=2), url)
    assert (result.reason, result.attempts) == ("connection_error", 3)
    assert server.hits("/reset.jpg") == 3


@pytest.mark.parametrize(
    "fault", [Reset(), Truncated(JPEG), SlowBody(JPEG, interval=0.2), Status(503), Status(429)]
)
def test_one_fault_then_ok(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch, fault: Behaviour
) -> None:
    url = server.add("/flaky.jpg", Sequence(fault, Serve(JPEG)))
    [result] = fetch(policy(timeout=0.5), url)
    assert result.ok and result.data == JPEG and result.attempts == 2


def test_connection_refused_is_a_connection_error(policy: PolicyFactory, fetch: Fetch) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    [result] = fetch(policy(retries=1), f"http://127.0.0.1:{port}/a.jpg")
    assert (result.reason, result.attempts) == ("connection_error", 2)


def test_slow_body_times_out(server: FaultServer, policy: PolicyFactory, fetch: Fetch) -> None:
    # One byte every 50 ms keeps every single read well inside the timeout;
    # only a deadline on the whole request stops it.
    # Without the deadline the body would arrive whole (3,030 bytes, 150 s) and be
    # used; with it, the client hangs up mid-body, which the server sees. No clock
    # is read here, so a slow machine cannot fail this.
    url = server.add("/slow.jpg", SlowBody(JPEG, interval=0.05))
    [result] = fetch(policy(timeout=0.5, retries=0), url)
    assert (result.reason, result.attempts, result.data) == ("timeout", 1, None)
    assert "0.5 s" in result.detail
    assert server.hangups("/slow.jpg", wait_for=1) == 1


def test_truncated_body_is_retried_then_connection_error(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    url = server.add("/cut.jpg", Truncated(JPEG, sent=100))
    [result] = fetch(policy(retries=1), url)
    assert (result.reason, result.attempts) == ("connection_error", 2)
    assert "truncated" in result.detail
    assert server.hits("/cut.jpg") == 2


@pytest.mark.parametrize("content_type", ["image/jpeg", "text/html; charset=utf-8"])
def test_html_page_with_200_is_not_an_image(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch, content_type: str
) -> None:
    url = server.add("/soft404.jpg", Serve(HTML_ERROR_PAGE, content_type))
    [result] = fetch(policy(), url)
    assert (result.reason, result.attempts, result.data) == ("not_an_image", 1, None)
    assert result.content_type == content_type
    assert server.hits("/soft404.jpg") == 1


def test_declared_length_over_limit_is_too_large(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    url = server.add("/big.jpg", Serve(JPEG))
    [result] = fetch(policy(max_bytes=len(JPEG) - 1), url)
    assert (result.reason, result.attempts) == ("too_large", 1)
    assert "Content-Length" in result.detail
    assert server.hits("/big.jpg") == 1


def test_body_over_limit_without_length_is_too_large(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    url = server.add("/stream.jpg", Serve(JPEG, length=False))
    [over] = fetch(policy(max_bytes=len(JPEG) - 1), url)
    [exact] = fetch(policy(max_bytes=len(JPEG)), url)
    assert (over.reason, over.attempts) == ("too_large", 1)
    assert "exceeds" in over.detail
    assert exact.ok and exact.data == JPEG


def test_limit_applies_to_decompressed_size(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    inflated = JPEG + bytes(2_000_000)
    bomb = gzip.compress(inflated)
    assert len(bomb) < 100_000
    url = server.add("/bomb.jpg", Serve(bomb, headers={"Content-Encoding": "gzip"}))
    [result] = fetch(policy(max_bytes=1_000_000), url)
    assert result.reason == "too_large"


def test_redirect_chain_is_followed(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    server.add("/r1", Redirect(server.url("/r2"), status=301))
    server.add("/r2", Redirect("/img.jpg?size=l", status=307))  # relative location
    target = server.add("/img.jpg", Serve(JPEG))
    [result] = fetch(policy(max_redirects=2), server.url("/r1"))
    assert result.ok and result.data == JPEG
    assert result.final_url == target + "?size=l"
    assert [server.hits(p) for p in ("/r1", "/r2", "/img.jpg")] == [1, 1, 1]


def test_too_many_redirects(server: FaultServer, policy: PolicyFactory, fetch: Fetch) -> None:
    url = server.add("/loop", Redirect("/loop"))
    [result] = fetch(policy(max_redirects=3), url)
    assert (result.reason, result.attempts) == ("too_many_redirects", 1)
    assert server.hits("/loop") == 4  # the first request and three followed hops


def test_global_concurrency_bounds_requests_in_flight(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    # Answered only when three are in flight together: the limit is reached whatever
    # the machine's speed. The short hold after that only widens the window in which a
    # broken limiter's fourth request would be seen; passing does not depend on it.
    server.add("/held.jpg", Together(Serve(JPEG, delay=0.05), threading.Barrier(3)))
    urls = [server.url(f"/held.jpg?n={n}") for n in range(12)]
    results = fetch(policy(concurrency=3, per_host_concurrency=10), *urls)
    assert all(r.ok for r in results)
    assert server.hits("/held.jpg") == 12
    assert server.max_in_flight == 3


def test_per_host_concurrency_bounds_each_host(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    async def resolver(host: str, port: int) -> list[IPAddress]:
        return [IPv4Address("127.0.0.1")]

    # Answered when four are in flight together: two per host, the hosts together.
    server.add("/held.jpg", Together(Serve(JPEG, delay=0.05), threading.Barrier(4)))
    urls = [server.url(f"/held.jpg?n={n}", host=h) for n in range(6) for h in ("a.test", "b.test")]
    results = fetch(policy(concurrency=10, per_host_concurrency=2), *urls, resolver=resolver)
    assert all(r.ok for r in results)
    assert server.max_in_flight_for("a.test") == 2
    assert server.max_in_flight_for("b.test") == 2
    assert server.max_in_flight == 4  # the hosts do not share their slots
    assert {r.headers["Host"] for r in server.requests()} == {
        f"a.test:{server.port}",
        f"b.test:{server.port}",
    }


def test_hundreds_of_concurrent_fetches(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    server.add("/a.jpg", Serve(JPEG))
    urls = [server.url(f"/a.jpg?n={n}") for n in range(300)] + ["ftp://x/y", "/nope/x.jpg"]
    results = fetch(policy(concurrency=16, per_host_concurrency=16), *urls)
    assert sum(r.ok for r in results) == 300
    assert [r.reason for r in results[300:]] == ["unsupported_scheme", "file_not_found"]


def test_unresolvable_host_is_a_connection_error(policy: PolicyFactory, fetch: Fetch) -> None:
    calls: list[str] = []

    async def resolver(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        raise ResolutionError(f"cannot resolve host {host!r}", transient=False)

    [result] = fetch(policy(retries=3), "http://no-such-host.test/a.jpg", resolver=resolver)
    assert (result.reason, result.attempts) == ("connection_error", 1)
    assert "cannot resolve" in result.detail
    assert calls == ["no-such-host.test"]


@pytest.fixture
def covers(tmp_path: Path) -> Path:
    (tmp_path / "a b.jpg").write_bytes(JPEG)
    (tmp_path / "page.jpg").write_bytes(HTML_ERROR_PAGE)
    (tmp_path / "cover.bmp").write_bytes(encode(solid((1, 2, 3), (8, 8)), "BMP"))
    (tmp_path / "folder").mkdir()
    return tmp_path


def test_local_sources(covers: Path, policy: PolicyFactory, fetch: Fetch) -> None:
    sources = [
        "a b.jpg",  # relative to base_dir
        str(covers / "a b.jpg"),
        (covers / "a b.jpg").as_uri(),  # file:///.../a%20b.jpg
        "cover.bmp",
        "page.jpg",
        "missing.jpg",
        "folder",
        "C:\\covers\\x.jpg",  # a drive letter is a path, not a scheme
    ]
    results = fetch(policy(), *sources, base_dir=covers)
    assert [r.data == JPEG for r in results[:3]] == [True, True, True]
    assert results[0].final_url == (covers / "a b.jpg").as_uri()
    assert results[3].ok and results[3].image_format == "bmp"
    assert [r.reason for r in results[4:]] == [
        "not_an_image",
        "file_not_found",
        "file_not_found",
        "file_not_found",
    ]


def test_local_file_over_limit(covers: Path, policy: PolicyFactory, fetch: Fetch) -> None:
    [result] = fetch(policy(max_bytes=len(JPEG) - 1), "a b.jpg", base_dir=covers)
    assert result.reason == "too_large"


def test_local_files_can_be_disabled(covers: Path, policy: PolicyFactory, fetch: Fetch) -> None:
    results = fetch(policy(allow_local_files=False), "a b.jpg", (covers / "a b.jpg").as_uri())
    assert [r.reason for r in results] == ["unsupported_scheme"] * 2
    assert all("local files are disabled" in r.detail for r in results)


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("ftp://example.com/a.jpg", "unsupported_scheme"),
        ("data:image/png;base64,iVBORw0KGgo=", "unsupported_scheme"),
        ("javascript:alert(1)", "unsupported_scheme"),
        ("s3://bucket/key.jpg", "unsupported_scheme"),
        ("", "invalid_url"),
        ("http://", "invalid_url"),
        ("http://[::1/a.jpg", "invalid_url"),
        ("file://otherhost/a.jpg", "invalid_url"),
    ],
)
def test_refused_sources_are_not_attempted(
    policy: PolicyFactory, fetch: Fetch, source: str, reason: str
) -> None:
    [result] = fetch(policy(), source)
    assert result.reason == reason
    assert result.attempts == 0
    assert result.detail


def test_flat_fetch_options_land_in_the_fetch_policy() -> None:
    options = BatchSpec.of(
        timeout=7.5,
        retries=5,
        backoff_base=0.2,
        backoff_max=3.0,
        max_bytes=1234,
        max_redirects=2,
        concurrency=11,
        per_host_concurrency=3,
        allowed_networks=(ip_network("10.0.0.0/8"),),
        allow_local_files=False,
        user_agent="ua/1",
    )
    assert options.fetch == FetchPolicy(
        7.5, 5, 0.2, 3.0, 1234, 2, 11, 3, (ip_network("10.0.0.0/8"),), False, "ua/1"
    )


# -- limits while streaming (issue 10: "the test suite's blind spots") -------------


def test_the_default_cap_stops_an_endless_body_while_it_streams(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch
) -> None:
    # 200 MB without a Content-Length: a client that read it all and measured it
    # afterwards would get the same reason, but the server would send every byte.
    cap = FetchPolicy().max_bytes
    assert cap == 20 * 1024 * 1024
    body = Endless(JPEG[:16], limit=200_000_000)
    url = server.add("/endless.jpg", body)
    [result] = fetch(policy(timeout=30.0, max_bytes=cap), url)
    assert (result.reason, result.attempts, result.data) == ("too_large", 1, None)
    assert f"exceeds the limit of {cap} bytes" in result.detail
    assert server.hangups("/endless.jpg", wait_for=1) == 1  # the client closed early
    # What the server got out: the cap plus what the socket buffers held when the
    # client closed (a few MB on loopback), far from the 200 MB on offer.
    assert cap < body.sent < 2 * cap


# -- malformed redirects and TLS (issue 10, finding 5) ------------------------------


@pytest.mark.parametrize(
    "location",
    [
        rb"http:\\127.0.0.1:8766\r19",  # as reported: httpx raised InvalidURL on it
        b"http://[::1",  # httpx: RemoteProtocolError "Invalid URL in location header"
        b"http://xn--a/",  # an IDNA label that does not decode
        b"http://a\x80b/",  # a byte that is no host character
    ],
)
def test_a_malformed_redirect_is_an_invalid_url_logged_quietly(
    server: FaultServer,
    policy: PolicyFactory,
    fetch: Fetch,
    caplog: pytest.LogCaptureFixture,
    location: bytes,
) -> None:
    url = server.add("/moved.jpg", RawRedirect(location))
    with caplog.at_level("DEBUG", logger="imgpipe"):
        [result] = fetch(policy(retries=2), url)
    assert (result.reason, result.attempts) == ("invalid_url", 1)
    assert "invalid URL" in result.detail
    assert server.hits("/moved.jpg") == 1  # not retried: the Location will not get better
    loud = [r for r in caplog.records if r.levelname in ("WARNING", "ERROR") or r.exc_info]
    assert loud == []


def test_a_url_whose_host_does_not_decode_is_invalid(policy: PolicyFactory, fetch: Fetch) -> None:
    [result] = fetch(policy(), "http://xn--a/cover.jpg")
    assert (result.reason, result.attempts) == ("invalid_url", 0)


@pytest.fixture
def trusted_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestCA:
    """A test CA the downloader trusts (httpx reads SSL_CERT_FILE when it builds its
    context), so the only fault left in a certificate is the one a test puts there."""
    ca = TestCA()
    (tmp_path / "ca.pem").write_bytes(ca.pem)
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    return ca


def test_a_certificate_for_another_host_is_a_tls_error_not_retried(
    trusted_ca: TestCA, tmp_path: Path, policy: PolicyFactory, fetch: Fetch
) -> None:
    with FaultServer(tls=trusted_ca.server_context(["127.0.0.1"], tmp_path)) as good:
        [control] = fetch(policy(), good.add("/a.jpg", Serve(JPEG)))
    assert control.ok, control.detail  # the CA is trusted: only the name can fail below

    with FaultServer(tls=trusted_ca.server_context(["other.example"], tmp_path)) as wrong:
        url = wrong.add("/a.jpg", Serve(JPEG))
        [result] = fetch(policy(retries=2), url)
        assert wrong.hits() == 0  # no request was ever sent over that connection
    assert (result.reason, result.attempts) == ("tls_error", 1)
    assert "mismatch" in result.detail and "127.0.0.1" in result.detail


def test_an_untrusted_self_signed_certificate_is_a_tls_error(
    tmp_path: Path, policy: PolicyFactory, fetch: Fetch
) -> None:
    with FaultServer(tls=TestCA().server_context(["127.0.0.1"], tmp_path)) as server:
        [result] = fetch(policy(retries=2), server.add("/a.jpg", Serve(JPEG)))
    assert (result.reason, result.attempts) == ("tls_error", 1)
    assert "certificate" in result.detail
