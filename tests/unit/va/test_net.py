"""The address policy and the resolve-once seam."""

from __future__ import annotations

import ipaddress

import pytest

from certctl.domain.errors import AcmeError, ProblemType
from certctl.va import AddressPolicy, VASettings
from certctl.va.net import Network, parse_ip, safe_snippet, tls_client_context
from tests.unit.va.helpers import FakeResolver, async_test

STRICT = AddressPolicy()
LAB = AddressPolicy(allow_loopback=True)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.0.9", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("169.254.169.254", "link-local"),
        ("169.254.0.1", "link-local"),
        ("fe80::1", "link-local"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("240.0.0.1", "reserved"),
        ("fec0::1", "reserved"),  # deprecated site-local
        ("::a9fe:a9fe", "reserved"),  # IPv4-compatible ::169.254.169.254
        ("::ffff:0:a9fe:a9fe", "reserved"),  # RFC 2765 IPv4-translated
        ("::ffff:169.254.169.254", "link-local"),  # IPv4-mapped
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:a9fe:a9fe::1", "embeds 169.254.169.254"),  # 6to4
        ("2002:7f00:1::1", "embeds 127.0.0.1"),
        ("64:ff9b::a9fe:a9fe", "embeds 169.254.169.254"),  # NAT64
        ("2001:0:a9fe:a9fe::1", "embeds 169.254.169.254"),  # Teredo server part
    ],
)
def test_always_forbidden(address: str, reason: str) -> None:
    problem = STRICT.problem(ipaddress.ip_address(address))
    assert problem is not None and reason in problem


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "fd00::1",
        "192.0.2.1",
        "2001:db8::1",
        "8.8.8.8",
        "2606:4700::1111",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ],
)
def test_private_documentation_and_public_addresses_are_allowed(address: str) -> None:
    assert STRICT.problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("address", ["127.0.0.1", "127.0.0.2", "::1", "::ffff:127.0.0.1"])
def test_allow_loopback_allows_loopback_only(address: str) -> None:
    assert LAB.problem(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "address", ["169.254.169.254", "::ffff:169.254.169.254", "0.0.0.0", "fe80::1"]
)
def test_allow_loopback_allows_nothing_else(address: str) -> None:
    assert LAB.problem(ipaddress.ip_address(address)) is not None


def test_allowed_networks_restrict_further() -> None:
    policy = AddressPolicy(
        allow_loopback=True,
        allowed_networks=(ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")),
    )
    assert policy.problem(ipaddress.ip_address("10.9.9.9")) is None
    assert policy.problem(ipaddress.ip_address("::ffff:10.9.9.9")) is None
    assert policy.problem(ipaddress.ip_address("127.0.0.1")) is None
    assert (
        policy.problem(ipaddress.ip_address("127.0.0.2")) == "address outside the allowed networks"
    )
    assert (
        policy.problem(ipaddress.ip_address("192.168.0.1"))
        == "address outside the allowed networks"
    )
    assert policy.problem(ipaddress.ip_address("fd00::1")) == "address outside the allowed networks"
    # The allow-list never re-opens an always-forbidden range.
    metadata = AddressPolicy(allowed_networks=(ipaddress.ip_network("169.254.0.0/16"),))
    assert metadata.problem(ipaddress.ip_address("169.254.169.254")) == "link-local address"


def test_parse_ip_refuses_scoped_addresses() -> None:
    assert parse_ip("fe80::1%eth0") is None
    assert parse_ip("host.example") is None
    assert parse_ip("2001:db8::1") == ipaddress.ip_address("2001:db8::1")


@async_test
async def test_checked_addresses_resolves_once_and_checks_all() -> None:
    resolver = FakeResolver.with_hosts(**{"a.example": ["10.0.0.1", "10.0.0.2"]})
    net = Network(resolver, STRICT, connect_timeout=1)
    records: list[str] = []
    addresses = await net.checked_addresses("a.example", records)
    assert [str(a) for a in addresses] == ["10.0.0.1", "10.0.0.2"]
    assert resolver.calls == [("addr", "a.example")]
    assert records == ["resolved a.example: 10.0.0.1, 10.0.0.2"]
    with pytest.raises(AcmeError) as info:
        await net.checked_addresses("127.0.0.1", [])
    assert info.value.type is ProblemType.CONNECTION
    assert resolver.calls == [("addr", "a.example")]  # IP literals are not looked up


def test_safe_snippet() -> None:
    assert safe_snippet(b"abc") == '"abc"'
    assert safe_snippet(b'a"b\\c\r\n\xff') == '"a\\x22b\\x5cc\\x0d\\x0a\\xff"'
    assert safe_snippet(b"x" * 40) == '"' + "x" * 32 + '"...'


def test_tls_client_context_never_goes_below_tls_1_2() -> None:
    import ssl

    ctx = tls_client_context(("acme-tls/1",))
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode is ssl.CERT_NONE and not ctx.check_hostname


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": 0},
        {"http01_concurrency": 0},
        {"http_port": 0},
        {"resolvers": (("127.0.0.1", 70000),)},
    ],
)
def test_settings_refuse_nonsense(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        VASettings(**kwargs)  # type: ignore[arg-type]


@async_test
async def test_empty_resolver_answer_is_a_dns_problem() -> None:
    net = Network(FakeResolver(addresses={"a.example": [[]]}), STRICT, connect_timeout=1)
    with pytest.raises(AcmeError) as info:
        await net.checked_addresses("a.example", [])
    assert info.value.type is ProblemType.DNS


@async_test
async def test_mapped_loopback_is_dialled_as_ipv4() -> None:
    from tests.unit.va.helpers import TcpServer, silent

    async with TcpServer(silent) as server:
        resolver = FakeResolver.with_hosts(**{"m.example": "::ffff:127.0.0.1"})
        records: list[str] = []
        conn = await Network(resolver, LAB, connect_timeout=1).connect(
            "m.example", server.port, records
        )
        conn.close()
    assert str(conn.address) == "127.0.0.1"
    assert f"connecting to 127.0.0.1:{server.port}" in records
