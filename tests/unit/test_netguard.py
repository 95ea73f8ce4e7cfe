"""The address policy of the SSRF guard, without any network."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, ip_address, ip_network

import pytest

from imgpipe.errors import BlockedAddressError
from imgpipe.fetch.netguard import (
    AddressGuard,
    IPAddress,
    ResolutionError,
    parse_ip_literal,
    system_resolver,
)

LOOPBACK = IPv4Address("127.0.0.1")


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("2130706433", "127.0.0.1"),  # one 32-bit decimal
        ("0x7f000001", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),  # a.(24 bits)
        ("127.1", "127.0.0.1"),
        ("127.0.1", "127.0.0.1"),  # a.b.(16 bits)
        ("0177.0.0.1", "127.0.0.1"),  # octal
        ("017700000001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("0", "0.0.0.0"),
        ("169.254.169.254", "169.254.169.254"),
        ("0xA9FEA9FE", "169.254.169.254"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("::ffff:127.0.0.1", "::ffff:7f00:1"),
    ],
)
def test_ip_literals_in_every_spelling(host: str, expected: str) -> None:
    assert parse_ip_literal(host) == ip_address(expected)


@pytest.mark.parametrize(
    "host",
    [
        "example.com",
        "1e100",
        "localhost",
        "256.0.0.1",
        "1.2.3.4.5",
        "08.0.0.1",
        "",
        "127.0.0.1x",
        "4294967296",
        "1.16777216",
        "[::1",
        "１２７.0.0.1",
    ],
)
def test_names_are_not_literals(host: str) -> None:
    assert parse_ip_literal(host) is None


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.0.10", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "shared"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "private"),  # documentation range
        ("::1", "loopback"),
        ("::", "unspecified"),
        ("fe80::1", "link-local"),
        ("fd12:3456::1", "private"),
        ("ff02::1", "multicast"),
        ("fec0::1", "site-local"),
        ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64 of the metadata service
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ],
)
def test_non_public_addresses_are_refused(address: str, why: str) -> None:
    refusal = AddressGuard().refusal(ip_address(address))
    assert refusal is not None and why in refusal


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_public_addresses_pass(address: str) -> None:
    assert AddressGuard().refusal(ip_address(address)) is None


def test_allowed_networks_open_only_themselves() -> None:
    guard = AddressGuard((ip_network("127.0.0.0/8"), ip_network("10.20.0.0/16")))
    assert guard.refusal(LOOPBACK) is None
    assert guard.refusal(ip_address("127.9.9.9")) is None
    assert guard.refusal(ip_address("::ffff:127.0.0.1")) is None  # the same address
    assert guard.refusal(ip_address("10.20.3.4")) is None
    assert guard.refusal(ip_address("10.21.0.1")) == "private"
    assert guard.refusal(ip_address("::1")) == "loopback"  # IPv6 loopback not allowed
    assert guard.refusal(ip_address("169.254.169.254")) == "link-local"


def fake_resolver(answers: dict[str, list[str]], calls: list[str]):  # type: ignore[no-untyped-def]
    async def resolve(host: str, port: int) -> list[IPAddress]:
        calls.append(host)
        return [ip_address(a) for a in answers.get(host, [])]

    return resolve


def test_vet_checks_every_resolved_address() -> None:
    calls: list[str] = []
    answers = {
        "public.test": ["93.184.216.34", "2606:2800:220:1::1", "93.184.216.34"],
        "mixed.test": ["93.184.216.34", "169.254.169.254"],
        "empty.test": [],
    }
    guard = AddressGuard(resolver=fake_resolver(answers, calls))
    assert asyncio.run(guard.vet("public.test", 443)) == [
        ip_address("93.184.216.34"),
        ip_address("2606:2800:220:1::1"),
    ]
    with pytest.raises(BlockedAddressError, match=r"mixed\.test \(169\.254\.169\.254\)"):
        asyncio.run(guard.vet("mixed.test", 80))
    with pytest.raises(ResolutionError) as caught:
        asyncio.run(guard.vet("empty.test", 80))
    assert caught.value.reason == "connection_error"
    assert calls == ["public.test", "mixed.test", "empty.test"]


def test_literals_skip_the_resolver() -> None:
    calls: list[str] = []
    guard = AddressGuard(resolver=fake_resolver({}, calls))
    with pytest.raises(BlockedAddressError, match="loopback"):
        asyncio.run(guard.vet("2130706433", 80))
    assert asyncio.run(guard.vet("8.8.8.8", 80)) == [ip_address("8.8.8.8")]
    assert calls == []


def test_system_resolver_knows_localhost() -> None:
    addresses = asyncio.run(system_resolver("localhost", 80))
    assert addresses and all(a.is_loopback for a in addresses)
    with pytest.raises(BlockedAddressError):
        asyncio.run(AddressGuard().vet("localhost", 80))
