"""CAA (RFC 8659) with RFC 8657 account and method binding."""

from __future__ import annotations

import pytest

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Identifier
from certctl.va import CAARecord, ValidationAuthority, VASettings, check_caa
from certctl.va.caa import parse_issue_value
from tests.unit.va.helpers import FakeResolver, async_test

CA = "ca.example"
ACCOUNT = "https://acme.ca.example/acme/acct/123"


def issue(value: str, tag: str = "issue", flags: int = 0) -> CAARecord:
    return CAARecord(flags, tag, value)


async def caa(
    records: dict[str, list[CAARecord]],
    name: str = "www.site.example",
    *,
    wildcard: bool = False,
    method: str = "http-01",
    identities: tuple[str, ...] = (CA,),
    resolver: FakeResolver | None = None,
) -> AcmeError | None:
    return await check_caa(
        resolver or FakeResolver(caa_records=records),
        name,
        ca_identities=identities,
        account_uris=(ACCOUNT,),
        method=method,
        wildcard=wildcard,
    )


def denied(error: AcmeError | None, fragment: str = "") -> None:
    assert error is not None and error.type is ProblemType.CAA
    assert fragment in error.detail, error.detail


@async_test
async def test_no_caa_anywhere_allows_and_climbs_to_the_tld() -> None:
    resolver = FakeResolver()
    assert await caa({}, resolver=resolver) is None
    assert [n for _, n in resolver.calls] == ["www.site.example", "site.example", "example"]


@async_test
async def test_issue_for_us_allows() -> None:
    assert await caa({"www.site.example": [issue(CA)]}) is None
    assert await caa({"www.site.example": [issue("other.example"), issue("CA.Example")]}) is None


@async_test
async def test_issue_for_another_ca_denies() -> None:
    denied(await caa({"www.site.example": [issue("other.example")]}), "do not authorise")


@async_test
async def test_empty_issue_value_denies() -> None:
    denied(await caa({"www.site.example": [issue(";")]}))


@async_test
async def test_inherited_from_parent_and_closest_rrset_wins() -> None:
    resolver = FakeResolver(caa_records={"site.example": [issue("other.example")]})
    denied(await caa({}, resolver=resolver), "at site.example")
    assert [n for _, n in resolver.calls] == ["www.site.example", "site.example"]
    # The closest non-empty RRset is the relevant one; the parent's is not consulted.
    closer = {"www.site.example": [issue(CA)], "site.example": [issue("other.example")]}
    assert await caa(closer) is None


@async_test
async def test_issuewild_takes_precedence_for_wildcards() -> None:
    records = {"site.example": [issue(CA), issue("other.example", "issuewild")]}
    denied(await caa(records, "*.site.example"), "issuewild")
    denied(await caa(records, "site.example", wildcard=True), "issuewild")
    assert await caa(records, "site.example") is None  # issuewild ignored for non-wildcards
    only_issue = {"site.example": [issue(CA)]}
    assert await caa(only_issue, "*.site.example") is None  # falls back to issue
    wild_ok = {"site.example": [issue("other.example"), issue(CA, "issuewild")]}
    assert await caa(wild_ok, "*.site.example") is None
    denied(await caa(wild_ok, "www.site.example"))


@async_test
async def test_accounturi() -> None:
    assert await caa({"site.example": [issue(f"{CA}; accounturi={ACCOUNT}")]}) is None
    denied(await caa({"site.example": [issue(f"{CA}; accounturi={ACCOUNT}4")]}))
    # Another record without binding for us still authorises.
    mixed = [issue(f"{CA}; accounturi=https://x/acct/9"), issue(CA)]
    assert await caa({"site.example": mixed}) is None


@async_test
async def test_validationmethods() -> None:
    records = {"site.example": [issue(f"{CA}; validationmethods=dns-01,tls-alpn-01")]}
    assert await caa(records, method="dns-01") is None
    assert await caa(records, method="tls-alpn-01") is None
    denied(await caa(records, method="http-01"))
    both = {"site.example": [issue(f"{CA}; accounturi={ACCOUNT}; validationmethods=http-01")]}
    assert await caa(both) is None
    denied(await caa(both, method="dns-01"))


@async_test
async def test_critical_unknown_tag_denies_even_when_issue_allows() -> None:
    records = {"site.example": [issue(CA), issue("x", "futuretag", flags=128)]}
    denied(await caa(records), "unknown critical")
    harmless = {
        "site.example": [issue(CA), issue("x", "futuretag"), issue("mailto:a@b", "iodef", 128)]
    }
    assert await caa(harmless) is None


@async_test
async def test_only_iodef_does_not_restrict() -> None:
    assert await caa({"site.example": [issue("mailto:sec@site.example", "iodef")]}) is None


@async_test
async def test_tags_are_case_insensitive() -> None:
    denied(await caa({"site.example": [issue("other.example", "ISSUE")]}))


@async_test
async def test_lookup_failure_refuses() -> None:
    resolver = FakeResolver(
        failures={"site.example": AcmeError(ProblemType.DNS, "SERVFAIL looking up CAA")}
    )
    denied(await caa({}, resolver=resolver), "SERVFAIL")


@async_test
async def test_no_identities_means_any_issue_denies() -> None:
    denied(await caa({"site.example": [issue(CA)]}, identities=()))
    assert await caa({}, identities=()) is None


@async_test
async def test_ip_names_have_no_caa() -> None:
    resolver = FakeResolver()
    assert await caa({}, "192.0.2.1", resolver=resolver) is None
    assert resolver.calls == []


@async_test
async def test_malformed_values_authorise_nobody() -> None:
    for value in [f"{CA}; accounturi", f"{CA}; a=1; a=2", f"{CA} junk", f"-{CA}", f"{CA}; a=b c"]:
        denied(await caa({"site.example": [issue(value)]}))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ca.example", ("ca.example", {})),
        ("  ca.example  ", ("ca.example", {})),
        (";", ("", {})),
        ("", ("", {})),
        ("ca.example;", ("ca.example", {})),
        (
            "ca.example; AccountURI = https://x/1 ;validationmethods=http-01",
            ("ca.example", {"accounturi": "https://x/1", "validationmethods": "http-01"}),
        ),
        ("ca.example; x=", ("ca.example", {"x": ""})),
        ("ca.example; accounturi", None),
        ("ca.example; a=1;", None),
        ("ca_example", None),
        ("ca.example; a=1; A=2", None),
    ],
)
def test_parse_issue_value(value: str, expected: tuple[str, dict[str, str]] | None) -> None:
    assert parse_issue_value(value) == expected


@async_test
async def test_authority_check_caa_uses_its_resolver() -> None:
    resolver = FakeResolver(caa_records={"site.example": [issue("other.example")]})
    va = ValidationAuthority(VASettings(), resolver=resolver)
    kwargs = {"ca_identities": (CA,), "account_uris": (ACCOUNT,), "method": "dns-01"}
    denied(await va.check_caa(Identifier("dns", "*.site.example"), **kwargs))  # type: ignore[arg-type]
    assert await va.check_caa(Identifier("ip", "192.0.2.1"), **kwargs) is None  # type: ignore[arg-type]
    slow = ValidationAuthority(VASettings(timeout=0.1), resolver=FakeResolver(delay=1))
    denied(await slow.check_caa(Identifier("dns", "a.example"), **kwargs), "timed out")  # type: ignore[arg-type]
