"""Identifier policy: label-boundary matching, wildcards, IPs, limits, one subproblem each."""

from __future__ import annotations

import pytest

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Identifier
from certctl.domain.policy import IdentifierPolicy
from certctl.policy.identifiers import (
    check_identifiers,
    name_matches,
    validate_networks,
    validate_patterns,
)


def dns(*names: str) -> list[Identifier]:
    return [Identifier("dns", n) for n in names]


def refused(policy: IdentifierPolicy, idents: list[Identifier]) -> list[str]:
    with pytest.raises(AcmeError) as info:
        check_identifiers(policy, idents, "p")
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER
    return [s.identifier_value for s in info.value.subproblems]


@pytest.mark.parametrize(
    ("name", "pattern", "expected"),
    [
        ("example.com", "example.com", True),
        ("a.example.com", "example.com", True),
        ("a.b.example.com", "example.com", True),
        ("evil-example.com", "example.com", False),
        ("example.com.evil.test", "example.com", False),
        ("xexample.com", "example.com", False),
        ("example.com", "*.example.com", False),
        ("a.example.com", "*.example.com", True),
    ],
)
def test_label_boundary_matching(name: str, pattern: str, expected: bool) -> None:
    assert name_matches(name, pattern) is expected


def test_empty_policy_allows_every_name() -> None:
    check_identifiers(IdentifierPolicy(), dns("a.test", "*.b.test"), "p")


def test_allow_list_refuses_lookalike_and_lists_each_offender() -> None:
    policy = IdentifierPolicy(allowed_names=("example.com",))
    check_identifiers(policy, dns("example.com", "www.example.com"), "p")
    assert refused(policy, dns("www.example.com", "evil-example.com", "example.org")) == [
        "evil-example.com",
        "example.org",
    ]


def test_only_the_last_name_failing_still_fails() -> None:
    policy = IdentifierPolicy(allowed_names=("ok.test",))
    assert refused(policy, dns("a.ok.test", "b.ok.test", "c.ok.test", "bad.test")) == ["bad.test"]


def test_deny_wins_over_allow() -> None:
    policy = IdentifierPolicy(allowed_names=("example.com",), denied_names=("secret.example.com",))
    assert refused(policy, dns("x.secret.example.com", "www.example.com")) == [
        "x.secret.example.com"
    ]


def test_wildcards() -> None:
    assert refused(IdentifierPolicy(allow_wildcards=False), dns("*.a.test")) == ["*.a.test"]
    allow = IdentifierPolicy(allowed_names=("*.example.com",))
    check_identifiers(allow, dns("*.example.com", "*.x.example.com", "a.example.com"), "p")
    assert refused(allow, dns("example.com")) == ["example.com"]
    # A wildcard that would cover a denied name one level down is refused...
    deny = IdentifierPolicy(denied_names=("secret.example.com",))
    assert refused(deny, dns("*.example.com")) == ["*.example.com"]
    # ...but not one that only covers a sibling zone.
    check_identifiers(deny, dns("*.other.example.com"), "p")


def test_ip_identifiers() -> None:
    ip = [Identifier("ip", "10.1.2.3")]
    assert refused(IdentifierPolicy(), ip) == ["10.1.2.3"]
    check_identifiers(IdentifierPolicy(allow_ip=True), ip, "p")
    scoped = IdentifierPolicy(allow_ip=True, ip_networks=("10.1.0.0/16", "fd00::/8"))
    check_identifiers(scoped, [*ip, Identifier("ip", "fd00::1")], "p")
    assert refused(scoped, [Identifier("ip", "192.168.1.1")]) == ["192.168.1.1"]


def test_max_identifiers() -> None:
    with pytest.raises(AcmeError) as info:
        check_identifiers(IdentifierPolicy(max_identifiers=2), dns("a.t1", "b.t1", "c.t1"), "p")
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER


@pytest.mark.parametrize("bad", ["", "*.", "a.*.b", "Upper.test", "trailing.", "*.*.x"])
def test_bad_patterns(bad: str) -> None:
    with pytest.raises(AcmeError):
        validate_patterns([bad])


def test_bad_network() -> None:
    validate_networks(["10.0.0.0/8", "::1/128"])
    with pytest.raises(AcmeError):
        validate_networks(["10.0.0.0/33"])
