"""dns-01 with a fake resolver, and the dnspython resolver against a loopback DNS server."""

from __future__ import annotations

import hashlib

import pytest

from certctl.acme.b64 import b64url_encode
from certctl.domain.errors import AcmeError, ProblemType
from certctl.va import (
    DnsPythonResolver,
    ValidationAuthority,
    ValidationResult,
    VASettings,
    dns01_digest,
)
from tests.unit.va.helpers import (
    KEY_AUTH,
    OTHER_KEY_AUTH,
    DnsServer,
    FakeResolver,
    HttpLog,
    TcpServer,
    Zone,
    async_test,
    request,
    serve_key_auth,
)

DIGEST = dns01_digest(KEY_AUTH)
OTHER_DIGEST = dns01_digest(OTHER_KEY_AUTH)
RECORD = "_acme-challenge.dns.example"


def test_digest_is_base64url_sha256() -> None:
    assert b64url_encode(hashlib.sha256(KEY_AUTH.encode()).digest()) == DIGEST
    assert len(DIGEST) == 43 and "=" not in DIGEST


async def validate(resolver: FakeResolver, name: str = "dns.example") -> ValidationResult:
    return await ValidationAuthority(VASettings(), resolver=resolver).validate(
        request("dns-01", name)
    )


def assert_error(result: ValidationResult, kind: ProblemType, fragment: str = "") -> None:
    assert not result.valid and result.error is not None
    assert result.error.type is kind, result.error
    assert fragment in result.error.detail, result.error.detail


@async_test
async def test_match() -> None:
    resolver = FakeResolver(txt_records={RECORD: [DIGEST]})
    result = await validate(resolver)
    assert result.valid
    assert resolver.calls == [("txt", RECORD)]


@async_test
async def test_one_match_among_several() -> None:
    assert (
        await validate(FakeResolver(txt_records={RECORD: ["junk", OTHER_DIGEST, DIGEST]}))
    ).valid


@async_test
async def test_no_match() -> None:
    result = await validate(FakeResolver(txt_records={RECORD: [OTHER_DIGEST, "x"]}))
    assert_error(
        result, ProblemType.INCORRECT_RESPONSE, f'found "{OTHER_DIGEST[:32]}"... and 1 more'
    )


@async_test
async def test_wildcard_uses_the_base_name() -> None:
    resolver = FakeResolver(txt_records={RECORD: [DIGEST]})
    assert (await validate(resolver, "*.dns.example")).valid
    assert resolver.calls == [("txt", RECORD)]


@async_test
async def test_missing_record_is_a_dns_problem() -> None:
    assert_error(await validate(FakeResolver()), ProblemType.DNS, "NXDOMAIN")


@async_test
async def test_slow_resolver_is_bounded() -> None:
    resolver = FakeResolver(txt_records={RECORD: [DIGEST]}, delay=5)
    va = ValidationAuthority(VASettings(timeout=0.2), resolver=resolver)
    assert_error(await va.validate(request("dns-01", "dns.example")), ProblemType.DNS, "timed out")


# --- the real dnspython resolver against a DNS server on loopback ------------------------


def zone() -> Zone:
    return Zone(
        records={
            RECORD: [("TXT", f'"{DIGEST[:20]}" "{DIGEST[20:]}"'), ("TXT", '"unrelated"')],
            "_acme-challenge.target.example": [("TXT", f'"{DIGEST}"')],
            "http.example": [("A", "127.0.0.1")],
            "empty.example": [("A", "127.0.0.1")],
        },
        cnames={"_acme-challenge.alias.example": "_acme-challenge.target.example"},
        servfail={"_acme-challenge.broken.example"},
        drop={"_acme-challenge.silent.example"},
    )


def real_va(server: DnsServer, **overrides: object) -> ValidationAuthority:
    settings: dict[str, object] = {"resolvers": (("127.0.0.1", server.port),), "timeout": 2.0}
    settings.update(overrides)
    return ValidationAuthority(VASettings(**settings))  # type: ignore[arg-type]


@async_test
async def test_real_dns_resolvers_setting_is_honoured() -> None:
    """Multi-string TXT records are concatenated; the query reached our server."""
    async with DnsServer(zone()) as server:
        result = await real_va(server).validate(request("dns-01", "dns.example"))
    assert result.valid, result.error
    assert server.queries == [(RECORD, "TXT")]


@async_test
async def test_real_dns_cname_is_followed() -> None:
    async with DnsServer(zone()) as server:
        result = await real_va(server).validate(request("dns-01", "alias.example"))
    assert result.valid, result.error


@async_test
async def test_real_dns_servfail_is_a_dns_problem() -> None:
    async with DnsServer(zone()) as server:
        result = await real_va(server).validate(request("dns-01", "broken.example"))
    assert_error(result, ProblemType.DNS, "SERVFAIL")


@async_test
async def test_real_dns_timeout_is_a_dns_problem() -> None:
    async with DnsServer(zone()) as server:
        result = await real_va(server, timeout=0.6).validate(request("dns-01", "silent.example"))
    assert_error(result, ProblemType.DNS, "timed out")


@async_test
async def test_real_dns_nxdomain_and_no_answer() -> None:
    async with DnsServer(zone()) as server:
        va = real_va(server)
        nx = await va.validate(request("dns-01", "nowhere.example"))
        resolver = DnsPythonResolver((("127.0.0.1", server.port),))
        with pytest.raises(AcmeError) as info:
            await resolver.txt("empty.example")
    assert_error(nx, ProblemType.DNS, "NXDOMAIN")
    assert info.value.type is ProblemType.DNS and "no records" in info.value.detail


@async_test
async def test_real_dns_addresses_for_http01() -> None:
    """http-01 resolves through the configured resolver too (AAAA then A)."""
    log = HttpLog()
    async with DnsServer(zone()) as dns_server, TcpServer(serve_key_auth(log=log)) as http:
        va = real_va(dns_server, http_port=http.port, allow_loopback=True)
        result = await va.validate(request("http-01", "http.example"))
    assert result.valid, result.error
    assert sorted(dns_server.queries) == [("http.example", "A"), ("http.example", "AAAA")]
    assert http.peers == ["127.0.0.1"]


@async_test
async def test_real_dns_no_addresses_is_a_dns_problem() -> None:
    async with DnsServer(zone()) as server:
        resolver = DnsPythonResolver((("127.0.0.1", server.port),))
        with pytest.raises(AcmeError) as info:
            await resolver.resolve_addresses("_acme-challenge.target.example")
    assert info.value.type is ProblemType.DNS and "no A or AAAA" in info.value.detail


@async_test
async def test_real_dns_caa_records() -> None:
    records = Zone(records={"caa.example": [("CAA", '128 issue "ca.example; accounturi=x"')]})
    async with DnsServer(records) as server:
        resolver = DnsPythonResolver((("127.0.0.1", server.port),))
        found = await resolver.caa("caa.example")
        none = await resolver.caa("nothing.example")
    assert [(r.flags, r.tag, r.value, r.critical) for r in found] == [
        (128, "issue", "ca.example; accounturi=x", True)
    ]
    assert none == []


def test_resolver_refuses_non_ip_servers() -> None:
    with pytest.raises(ValueError):
        DnsPythonResolver((("dns.example", 53),))


@async_test
async def test_real_dns_servfail_on_addresses_is_a_dns_problem() -> None:
    broken = Zone(servfail={"broken.example"})
    async with DnsServer(broken) as server:
        result = await real_va(server).validate(request("http-01", "broken.example"))
    assert_error(result, ProblemType.DNS, "SERVFAIL looking up")
