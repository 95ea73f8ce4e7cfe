"""Address policy: the SSRF guard that :mod:`.transport` enforces on every connection.

The CSV is untrusted input: a cover URL may point at ``127.0.0.1``, at the
cloud metadata service ``169.254.169.254`` or at a hostname whose DNS answers
with a private address. Nothing may be fetched from a non-public address
unless the operator allowed its network explicitly.

Where the check happens, and why there: :class:`~.transport.GuardedTransport` is an httpx
transport whose connection pool opens TCP connections through
:class:`~.transport.GuardedBackend`. Every connection -- the first request, each redirect
hop, each retry, each reconnect of the pool -- resolves the host once, vets
*all* resolved addresses and then connects to one of exactly those vetted
addresses. Checking and connecting on the same resolution closes the DNS
rebinding window (a second lookup could answer differently), and because the
URL is never rewritten to an IP, TLS still verifies the real hostname, the
``Host`` header stays right and pooled connections stay keyed by hostname.
httpx itself has no hook for a network backend, so the transport is built on
httpcore's public pool API and maps httpcore errors to httpx's, as httpx does.
The transport lives in its own module so that this policy (and a run that only
reads local files) does not import httpx and httpcore (about 0.1 s of start-up).

Example::

    guard = AddressGuard(allowed_networks=(ipaddress.ip_network("10.1.0.0/16"),))
    guard.refusal(ipaddress.ip_address("10.1.2.3"))      # None: allowed
    guard.refusal(ipaddress.ip_address("169.254.169.254"))  # "link-local"
    client = httpx.AsyncClient(transport=transport.GuardedTransport(guard))
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from imgpipe.domain.records import Reason
from imgpipe.errors import BlockedAddressError, FetchError

if TYPE_CHECKING:
    from imgpipe.settings import IPNetwork

__all__ = [
    "AddressGuard",
    "IPAddress",
    "ResolutionError",
    "Resolver",
    "parse_ip_literal",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]
"""``async (host, port) -> addresses``; injectable so tests need no real DNS."""

_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_V4_COMPATIBLE = ipaddress.ip_network("::/96")
_SHARED = ipaddress.ip_network("100.64.0.0/10")
# One part of a legacy IPv4 literal: hex, octal (leading 0) or decimal, ASCII only.
_V4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")


class ResolutionError(FetchError):
    """The host name did not resolve; ``transient`` when a retry may help."""

    def __init__(self, detail: str, *, transient: bool) -> None:
        super().__init__(Reason.CONNECTION_ERROR, detail)
        self.transient = transient


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address a host string denotes literally, or None for a name.

    Besides dotted quads and IPv6 (with or without brackets), this accepts the
    legacy ``inet_aton`` forms that resolvers and browsers still honour --
    ``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1`` -- so that none of
    them can slip past the guard as a "name".
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        try:
            return ipaddress.IPv6Address(text)
        except ValueError:
            return None
    if text.endswith("."):  # "127.0.0.1." is the same host as "127.0.0.1"
        text = text[:-1]
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(_V4_PART.fullmatch(part) for part in parts):
        return None
    numbers = [
        int(part[2:] or "0", 16)
        if part[:2].lower() == "0x"
        else int(part, 8 if part.startswith("0") else 10)
        for part in parts
    ]
    # inet_aton: a.b.c.d, a.b.(16 bits), a.(24 bits), or one 32-bit number.
    *head, last = numbers
    if any(not 0 <= n <= 255 for n in head) or not 0 <= last < 256 ** (5 - len(numbers)):
        return None
    value = last
    for index, number in enumerate(head):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address | None, bool]:
    """The IPv4 address an IPv6 address carries, and whether it *is* that address.

    IPv4-mapped, IPv4-compatible and NAT64 (RFC 6052) forms stand for the v4
    address (True); 6to4 and Teredo addresses route towards it (False: judge both).
    """
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped, True
    if ip in _V4_COMPATIBLE and int(ip) > 1:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), True
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF), True
    if ip.sixtofour is not None:
        return ip.sixtofour, False
    if ip.teredo is not None:
        return ip.teredo[1], False
    return None, False


def _why_not_public(ip: IPAddress) -> str | None:
    """A short word for why an address is not publicly routable, or None."""
    # Ordered most specific first so the detail names the real reason.
    checks = (
        ("unspecified", ip.is_unspecified),
        ("loopback", ip.is_loopback),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("shared (CGNAT)", isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
        ("site-local", isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local),
        ("not global", not ip.is_global),
    )
    return next((word for word, hit in checks if hit), None)


@dataclass(frozen=True)
class AddressGuard:
    """Which addresses may be contacted: public ones, plus ``allowed_networks``.

    A host is refused when ANY of its resolved addresses is refused, so a DNS
    answer mixing a public and a private address cannot be used to reach the
    private one.
    """

    allowed_networks: tuple[IPNetwork, ...] = ()
    resolver: Resolver | None = field(default=None, compare=False)

    def _allowed(self, ip: IPAddress) -> bool:
        # Mixed versions are simply "not in": ip_network.__contains__ is False.
        return any(ip in net for net in self.allowed_networks)

    def refusal(self, ip: IPAddress) -> str | None:
        """Why ``ip`` must not be contacted (e.g. ``"loopback"``), or None if it may."""
        candidates: list[IPAddress] = [ip]
        if isinstance(ip, ipaddress.IPv6Address):
            inner, same = _embedded_ipv4(ip)
            if inner is not None:
                candidates = [inner] if same else [inner, ip]
        for candidate in candidates:
            if self._allowed(candidate) or self._allowed(ip):
                continue
            why = _why_not_public(candidate)
            if why is not None:
                return why if candidate is ip else f"{why} (embeds {candidate})"
        return None

    async def vet(self, host: str, port: int) -> list[IPAddress]:
        """Resolve ``host`` and return its addresses if every one may be contacted.

        Raises :class:`BlockedAddressError` naming the first refused address,
        or :class:`ResolutionError` when the name does not resolve.
        """
        literal = parse_ip_literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            addresses = await (self.resolver or system_resolver)(host, port)
        if not addresses:
            raise ResolutionError(f"host {host!r} has no addresses", transient=False)
        for address in addresses:
            why = self.refusal(address)
            if why is not None:
                shown = host if host.strip("[]") == str(address) else f"{host} ({address})"
                raise BlockedAddressError(
                    f"refused to connect to {shown}: {why} address outside the allowed networks"
                )
        return list(dict.fromkeys(addresses))


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """All addresses the system resolver gives for ``host``, in its preferred order."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ResolutionError(
            f"cannot resolve host {host!r}: {exc.strerror or exc}",
            transient=exc.errno == socket.EAI_AGAIN,
        ) from exc
    except UnicodeError as exc:  # an unencodable label
        raise ResolutionError(f"cannot resolve host {host!r}: {exc}", transient=False) from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]
