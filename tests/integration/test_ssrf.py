"""The SSRF guard end to end: refused before any connection is attempted.

Every TCP connection the downloader opens goes through httpcore's AnyIO
backend; ``connects`` records each one, so the tests can show that a refused
address was never even dialled (not merely that the request failed).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, ip_address, ip_network

import httpcore
import httpx
import pytest

from imgpipe.fetch.asyncio_backend import AsyncioBackend
from imgpipe.fetch.netguard import IPAddress
from tests.integration.conftest import Fetch, PolicyFactory
from tests.support.http_server import FaultServer, Redirect, Serve
from tests.support.images import jpeg

JPEG = jpeg()


@pytest.fixture
def connects(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Hosts the downloader opened TCP connections to, in order."""
    seen: list[str] = []
    original = AsyncioBackend.connect_tcp

    async def spy(
        self: AsyncioBackend,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        seen.append(host)
        return await original(self, host, port, timeout, local_address, socket_options)

    monkeypatch.setattr(AsyncioBackend, "connect_tcp", spy)
    return seen


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/a.jpg",
        "http://localhost:{port}/a.jpg",  # a name that resolves to loopback
        "http://2130706433:{port}/a.jpg",  # 127.0.0.1 as one decimal integer
        "http://0x7f.1:{port}/a.jpg",  # hex and short inet_aton form
        "http://127.1:{port}/a.jpg",
        "http://127.0.0.1.:{port}/a.jpg",  # trailing dot
        "http://0.0.0.0:{port}/a.jpg",  # reaches local services on Linux
        "http://[::1]:{port}/a.jpg",
        "http://[::ffff:127.0.0.1]:{port}/a.jpg",  # IPv4-mapped loopback
        "https://127.0.0.1:{port}/a.jpg",
    ],
)
def test_loopback_forms_are_blocked_and_never_reached(
    server: FaultServer,
    policy: PolicyFactory,
    fetch: Fetch,
    connects: list[str],
    template: str,
) -> None:
    server.add("/a.jpg", Serve(JPEG))
    [result] = fetch(policy(allowed_networks=()), template.format(port=server.port))
    # An address written as an IP is refused before any attempt (0); a name that
    # resolves to loopback is refused by the transport after resolution (1).
    assert result.reason == "blocked_address", result.detail
    host = httpx.URL(template.format(port=server.port)).host
    assert result.attempts == (0 if _is_ip_literal(host) else 1)
    assert "loopback" in result.detail or "unspecified" in result.detail
    assert server.hits() == 0
    assert connects == []


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata service
        "http://10.0.0.1/a.jpg",
        "http://172.16.5.4/a.jpg",
        "http://192.168.1.1/a.jpg",
        "http://100.64.0.1/a.jpg",  # shared address space (CGNAT)
        "http://[fe80::1]/a.jpg",
        "http://[fd00::1]/a.jpg",
        "http://[64:ff9b::a9fe:a9fe]/a.jpg",  # NAT64 form of 169.254.169.254
        "http://224.0.0.1/a.jpg",
    ],
)
def test_private_addresses_are_blocked(
    policy: PolicyFactory, fetch: Fetch, connects: list[str], url: str
) -> None:
    # 127.0.0.0/8 is allowed, which must not open any other private range.
    [result] = fetch(policy(), url)
    assert (result.reason, result.attempts) == ("blocked_address", 0), result.detail
    assert connects == []


def test_allowing_loopback_allows_exactly_loopback(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch, connects: list[str]
) -> None:
    url = server.add("/a.jpg", Serve(JPEG))
    ok, blocked = fetch(
        policy(allowed_networks=(ip_network("127.0.0.0/8"),)), url, "http://10.0.0.1/"
    )
    assert ok.ok and ok.data == JPEG
    assert blocked.reason == "blocked_address"
    assert connects == ["127.0.0.1"]


@pytest.mark.parametrize(
    "target", ["http://10.0.0.1/a.jpg", "http://169.254.169.254/latest/meta-data/"]
)
def test_redirect_to_private_address_is_refused_before_connecting(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch, connects: list[str], target: str
) -> None:
    url = server.add("/hop", Redirect(target))
    [result] = fetch(policy(retries=3), url)
    assert (result.reason, result.attempts) == ("blocked_address", 1)
    assert result.final_url == target
    assert server.hits("/hop") == 1
    assert connects == ["127.0.0.1"]  # only the allowed server was ever dialled


@pytest.mark.parametrize("target", ["file:///etc/passwd", "ftp://files.example.com/a.jpg"])
def test_redirect_to_another_scheme_is_refused(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch, connects: list[str], target: str
) -> None:
    url = server.add("/hop", Redirect(target))
    [result] = fetch(policy(allow_local_files=True), url)
    assert (result.reason, result.data) == ("unsupported_scheme", None)
    assert f"scheme {target.split(':')[0]!r}" in result.detail
    assert connects == ["127.0.0.1"]


def test_any_private_answer_blocks_the_whole_name(
    policy: PolicyFactory, fetch: Fetch, connects: list[str]
) -> None:
    # A resolver answering with a public and a private address (the usual
    # rebinding trick) must not get the name through: the guard vets all.
    async def resolver(host: str, port: int) -> list[IPAddress]:
        return [ip_address("93.184.216.34"), ip_address("10.0.0.7")]

    [result] = fetch(policy(), "http://rebind.test/a.jpg", resolver=resolver)
    assert result.reason == "blocked_address"
    assert "10.0.0.7" in result.detail
    assert connects == []


def test_the_vetted_address_is_the_one_dialled(
    server: FaultServer, policy: PolicyFactory, fetch: Fetch, connects: list[str]
) -> None:
    # One resolution per connection, and the connection goes to its answer:
    # there is no second lookup a rebinding DNS server could answer differently.
    lookups: list[str] = []

    async def resolver(host: str, port: int) -> list[IPAddress]:
        lookups.append(host)
        return [IPv4Address("127.0.0.1")]

    server.add("/a.jpg", Serve(JPEG))
    [result] = fetch(policy(), server.url("/a.jpg", host="images.test"), resolver=resolver)
    assert result.ok
    assert lookups == ["images.test"]
    assert connects == ["127.0.0.1"]
    [request] = server.requests("/a.jpg")
    assert request.headers["Host"] == f"images.test:{server.port}"


def test_environment_proxies_are_ignored(
    server: FaultServer,
    policy: PolicyFactory,
    fetch: Fetch,
    connects: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A proxy would make the guard vet the proxy, not the target.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://10.9.9.9:3128")
    url = server.add("/a.jpg", Serve(JPEG))
    [result] = fetch(policy(), url)
    assert result.ok
    assert connects == ["127.0.0.1"]


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
