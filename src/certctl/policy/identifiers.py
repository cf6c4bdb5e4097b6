"""Identifier policy enforcement (issue in every mode: this is what makes
trust_authenticated safe). One subproblem per offending identifier (RFC 8555 §6.7.1), and
every identifier of an order is checked on its own: a multi-name order where only the last
name is refused must fail (the Let's Encrypt 2020 CAA re-check bug checked one name N times).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

from certctl.domain.errors import AcmeError, ProblemType, Subproblem
from certctl.domain.model import Identifier
from certctl.domain.policy import IdentifierPolicy


def _under(name: str, zone: str) -> bool:
    """``name`` equals ``zone`` or lies under it, on a label boundary."""
    return name == zone or name.endswith("." + zone)


def name_matches(name: str, pattern: str) -> bool:
    """Does ``pattern`` cover the (non-wildcard) DNS name ``name``?"""
    if pattern.startswith("*."):
        base = pattern[2:]
        return name != base and _under(name, base)
    return _under(name, pattern)


def wildcard_allowed_by(base: str, pattern: str) -> bool:
    """Is ``*.base`` inside ``pattern``? Every name it covers must be covered."""
    if pattern.startswith("*."):
        return _under(base, pattern[2:])
    return _under(base, pattern)


def wildcard_hits_denied(base: str, pattern: str) -> bool:
    """Would ``*.base`` cover any name ``pattern`` denies (one level, RFC 6125 §6.4.3)?"""
    zone = pattern[2:] if pattern.startswith("*.") else pattern
    if _under(base, zone):
        return True
    # A denied name exactly one label below the base is covered by the wildcard.
    return zone.endswith("." + base) and "." not in zone[: -len(base) - 1]


def _dns_problem(policy: IdentifierPolicy, value: str) -> str | None:
    if value.startswith("*."):
        if not policy.allow_wildcards:
            return "wildcard names are not allowed by this profile"
        base = value[2:]
        if any(wildcard_hits_denied(base, p) for p in policy.denied_names):
            return "wildcard would cover a name this profile denies"
        if policy.allowed_names and not any(
            wildcard_allowed_by(base, p) for p in policy.allowed_names
        ):
            return "name is not in this profile's allowed names"
        return None
    if any(name_matches(value, p) for p in policy.denied_names):
        return "name is denied by this profile"
    if policy.allowed_names and not any(name_matches(value, p) for p in policy.allowed_names):
        return "name is not in this profile's allowed names"
    return None


def _ip_problem(policy: IdentifierPolicy, value: str) -> str | None:
    if not policy.allow_ip:
        return "IP address identifiers are not allowed by this profile"
    address = ipaddress.ip_address(value)
    networks = [ipaddress.ip_network(n, strict=False) for n in policy.ip_networks]
    if networks and not any(address in net for net in networks):
        return "address is outside this profile's allowed networks"
    return None


def check_identifiers(
    policy: IdentifierPolicy, identifiers: Sequence[Identifier], profile_id: str
) -> None:
    if len(identifiers) > policy.max_identifiers:
        raise AcmeError(
            ProblemType.REJECTED_IDENTIFIER,
            f"profile {profile_id} allows at most {policy.max_identifiers} identifiers per order",
        )
    problems = list(_problems(policy, identifiers))
    if problems:
        names = ", ".join(p.identifier_value for p in problems[:5])
        raise AcmeError(
            ProblemType.REJECTED_IDENTIFIER,
            f"profile {profile_id} does not allow: {names}",
            subproblems=tuple(problems),
        )


def _problems(policy: IdentifierPolicy, identifiers: Iterable[Identifier]) -> Iterable[Subproblem]:
    for ident in identifiers:
        reason = (
            _ip_problem(policy, ident.value)
            if ident.type == "ip"
            else _dns_problem(policy, ident.value)
        )
        if reason is not None:
            yield Subproblem(ProblemType.REJECTED_IDENTIFIER, reason, ident.type, ident.value)


def validate_patterns(patterns: Iterable[str]) -> None:
    """Patterns are lower-case names, optionally with one leading ``*.`` label."""
    for pattern in patterns:
        body = pattern[2:] if pattern.startswith("*.") else pattern
        if not body or "*" in body or pattern != pattern.lower() or body.endswith("."):
            raise AcmeError(ProblemType.MALFORMED, f"bad name pattern {pattern!r}")


def validate_networks(networks: Iterable[str]) -> None:
    for net in networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            raise AcmeError(ProblemType.MALFORMED, f"bad network {net!r}") from None
