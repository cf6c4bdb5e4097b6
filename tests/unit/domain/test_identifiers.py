"""Identifier syntax and normalisation (RFC 8555 §7.1.4, RFC 1035 §2.3.1, RFC 5891)."""

from __future__ import annotations

from typing import Any

import pytest

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.identifiers import (
    dns_name_problem,
    identifier_set,
    normalise_dns,
    parse_identifiers,
)
from certctl.domain.model import Identifier


def dns(value: str) -> dict[str, str]:
    return {"type": "dns", "value": value}


def refused(raw: object) -> AcmeError:
    with pytest.raises(AcmeError) as info:
        parse_identifiers(raw)
    return info.value


# --- normalisation -------------------------------------------------------------------


def test_names_are_lower_cased_and_never_trimmed() -> None:
    # A name with whitespace is refused (see REJECTED), not trimmed into another name.
    assert normalise_dns("WWW.Example.COM") == "www.example.com"
    assert normalise_dns("  example.com ") == "  example.com "
    assert parse_identifiers([dns("WWW.Example.COM")]) == (Identifier("dns", "www.example.com"),)


def test_non_ascii_is_left_alone_by_normalisation() -> None:
    # Lower-casing Unicode would hide the real problem; the parser refuses it instead.
    assert normalise_dns("BÜCHER.example") == "BÜCHER.example"


def test_duplicates_after_normalisation_collapse_in_order() -> None:
    parsed = parse_identifiers([dns("b.example"), dns("A.example"), dns("B.EXAMPLE")])
    assert [i.value for i in parsed] == ["b.example", "a.example"]


def test_wildcard_identifier_is_kept_and_flagged() -> None:
    (ident,) = parse_identifiers([dns("*.Example.com")])
    assert ident == Identifier("dns", "*.example.com")
    assert ident.is_wildcard
    assert ident.to_wire() == {"type": "dns", "value": "*.example.com"}
    assert not Identifier("dns", "example.com").is_wildcard


def test_identifier_set_compares_type_and_value() -> None:
    a = (Identifier("dns", "a.example"), Identifier("dns", "b.example"))
    assert identifier_set(a) == identifier_set(reversed(a))
    assert identifier_set(a) == frozenset({("dns", "a.example"), ("dns", "b.example")})


# --- syntax rules --------------------------------------------------------------------

LABEL_63 = "a" * 63
# 4 labels of 63 + 3 dots = 255; trim to exactly 253 and 254 octets.
NAME_253 = ".".join([LABEL_63, LABEL_63, LABEL_63, "b" * 61])
NAME_254 = ".".join([LABEL_63, LABEL_63, LABEL_63, "b" * 62])

ACCEPTED = [
    "example.com",
    "a.b",
    "www.example.co.uk",
    "a-b.example",
    "a1.example",
    "1.example",  # digits are fine outside the TLD
    "123.example.com",
    f"{LABEL_63}.example",
    NAME_253,
    "xn--bcher-kva.example",  # IDNA A-label: "--" in positions 3-4 after xn
    "*.example.com",
    "*.a.b",
    "example.xn--p1ai",
]


@pytest.mark.parametrize("name", ACCEPTED)
def test_valid_names_are_accepted(name: str) -> None:
    assert len(NAME_253) == 253
    assert dns_name_problem(name) is None
    assert parse_identifiers([dns(name)]) == (Identifier("dns", name),)


REJECTED: list[tuple[str, str]] = [
    ("example.com.", "dot"),
    ("a..example", "empty label"),
    (".example.com", "empty label"),
    ("", "empty"),
    (f"{'a' * 64}.example", "63"),
    (NAME_254, "253"),
    ("-a.example", "hyphen"),
    ("a-.example", "hyphen"),
    ("ab--cd.example", "positions 3-4"),
    ("a.ab--c", "positions 3-4"),
    ("foo.*.example", "wildcard"),
    ("*.*.example.com", "wildcard"),
    ("*a.example", "wildcard"),
    ("a*.example.com", "wildcard"),
    ("*", "wildcard"),
    ("*.com", "two labels"),
    ("localhost", "two labels"),
    ("example.123", "digits"),
    ("192.168.0.1", "digits"),
    ("a_b.example", "letters, digits"),
    ("a b.example", "letters, digits"),
    ("exa!mple.com", "letters, digits"),
    # Whitespace around a name, a trailing newline included ("$" would match before it).
    ("example.com\n", "letters, digits"),
    ("\t example.com ", "letters, digits"),
    (" example.com", "letters, digits"),
    # An xn-- label must be Punycode of a name with a non-ASCII character, round-tripping.
    ("xn--zzzz.example", "A-label"),
    ("xn--bcher-kva9.example", "A-label"),
    ("xn--abc.example", "A-label"),
]


@pytest.mark.parametrize(("name", "reason"), REJECTED)
def test_syntax_rules(name: str, reason: str) -> None:
    problem = dns_name_problem(name)
    assert problem is not None
    assert reason in problem
    err = refused([dns(name)])
    assert err.type is ProblemType.REJECTED_IDENTIFIER
    (sub,) = err.subproblems
    assert sub.type is ProblemType.REJECTED_IDENTIFIER
    assert (sub.identifier_type, sub.identifier_value) == ("dns", name)
    assert reason in sub.detail


@pytest.mark.parametrize("name", ["bücher.example", "exämple.com", "例え.jp", "\uff45xample.com"])
def test_non_ascii_names_are_refused(name: str) -> None:
    err = refused([dns(name)])
    (sub,) = err.subproblems
    assert sub.type is ProblemType.REJECTED_IDENTIFIER
    assert "ASCII" in sub.detail
    assert sub.identifier_value == name


def test_one_subproblem_per_offending_identifier() -> None:
    err = refused(
        [
            dns("good.example"),
            dns("bad..example"),
            {"type": "email", "value": "192.0.2.1"},
            dns("also-good.example"),
            dns("-bad.example"),
        ]
    )
    assert err.type is ProblemType.REJECTED_IDENTIFIER
    assert [(s.identifier_type, s.identifier_value) for s in err.subproblems] == [
        ("dns", "bad..example"),
        ("email", "192.0.2.1"),
        ("dns", "-bad.example"),
    ]
    assert [s.type for s in err.subproblems] == [
        ProblemType.REJECTED_IDENTIFIER,
        ProblemType.UNSUPPORTED_IDENTIFIER,
        ProblemType.REJECTED_IDENTIFIER,
    ]
    assert "bad..example" in err.detail and "-bad.example" in err.detail


@pytest.mark.parametrize("kind", ["email", "DNS", "IP", "permanent-identifier", ""])
def test_unsupported_identifier_types(kind: str) -> None:
    err = refused([{"type": kind, "value": "192.0.2.1"}])
    assert err.type is ProblemType.UNSUPPORTED_IDENTIFIER
    (sub,) = err.subproblems
    assert sub.type is ProblemType.UNSUPPORTED_IDENTIFIER
    assert sub.identifier_type == kind


def test_long_values_are_truncated_in_subproblems() -> None:
    err = refused([{"type": "x" * 500, "value": "v" * 1000}])
    (sub,) = err.subproblems
    assert len(sub.identifier_type) == 20
    assert len(sub.identifier_value) == 255


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {},
        "example.com",
        ["example.com"],
        [{"type": "dns"}],
        [{"value": "example.com"}],
        [{"type": "dns", "value": 5}],
        [{"type": 1, "value": "example.com"}],
    ],
    ids=repr,
)
def test_structurally_bad_input_is_malformed(raw: Any) -> None:
    assert refused(raw).type is ProblemType.MALFORMED


def test_too_many_identifiers() -> None:
    raw = [dns(f"h{i}.example") for i in range(4)]
    with pytest.raises(AcmeError) as info:
        parse_identifiers(raw, max_count=3)
    assert info.value.type is ProblemType.REJECTED_IDENTIFIER
    assert len(parse_identifiers(raw, max_count=4)) == 4
    assert len(parse_identifiers([dns(f"h{i}.example") for i in range(100)])) == 100
    assert refused([dns(f"h{i}.example") for i in range(101)]).type is (
        ProblemType.REJECTED_IDENTIFIER
    )


@pytest.mark.parametrize(
    ("value", "canonical"),
    [("192.0.2.1", "192.0.2.1"), ("2001:DB8:0:0::1", "2001:db8::1"), ("::1", "::1")],
)
def test_ip_identifiers_are_canonical(value: str, canonical: str) -> None:
    (ident,) = parse_identifiers([{"type": "ip", "value": value}])
    assert ident == Identifier("ip", canonical)


@pytest.mark.parametrize(
    "value", ["192.0.2.01", "192.0.2", "10.0.0.0/8", "fe80::1%eth0", "::ffff:192.0.2.1", "x"]
)
def test_bad_ip_identifiers(value: str) -> None:
    err = refused([{"type": "ip", "value": value}])
    (sub,) = err.subproblems
    assert sub.identifier_type == "ip"
