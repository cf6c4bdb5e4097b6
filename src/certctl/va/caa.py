"""CAA checking (RFC 8659) with account and method binding (RFC 8657).

Decisions kept strict on purpose:

* A lookup failure (SERVFAIL, timeout) anywhere on the climb refuses issuance: we cannot
  know the relevant RRset (RFC 8659 §4 lets a CA issue only when it knows there is none).
* A property value that does not parse (RFC 8659 §4.2 grammar, duplicate parameters)
  authorises nobody; if no other record authorises us, issuance is refused.
* ``ca_identities`` empty means this CA has no issuer domain name: any ``issue`` (or, for
  wildcards, ``issuewild``) property then denies, since none can name us.
* IP identifiers have no CAA (RFC 8738 §7 leaves it undefined): always allowed.
"""

from __future__ import annotations

import re
from typing import Final

from certctl.domain.errors import AcmeError, ProblemType
from certctl.va.net import parse_ip
from certctl.va.resolver import CAARecord, Resolver

# Tags we understand; a critical property with any other tag refuses issuance (RFC 8659 §4.1).
KNOWN_TAGS: Final = frozenset({"issue", "issuewild", "iodef"})
_LABEL = r"[A-Za-z0-9](?:-*[A-Za-z0-9])*"
_ISSUER_DOMAIN: Final = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")  # RFC 8659 §4.2
_PARAM_TAG: Final = re.compile(_LABEL)
_PARAM_VALUE: Final = re.compile(r"[\x21-\x3a\x3c-\x7e]*")
_METHOD: Final = re.compile(r"[A-Za-z0-9-]+")  # RFC 8657 §4 label


async def check_caa(
    resolver: Resolver,
    name: str,
    *,
    ca_identities: tuple[str, ...],
    account_uris: tuple[str, ...],
    method: str,
    wildcard: bool,
) -> AcmeError | None:
    """None when CAA permits this CA to issue for ``name``, else ``AcmeError(CAA)``."""
    base = name.removeprefix("*.")
    wildcard = wildcard or name.startswith("*.")
    if parse_ip(base) is not None:
        return None
    try:
        found = await relevant_rrset(resolver, base)
    except AcmeError as exc:
        return _caa_error(f"CAA lookup for {base} failed, so issuance is refused ({exc.detail})")
    if found is None:
        return None  # RFC 8659 §4: no CAA RRset anywhere up the tree, no restriction
    owner, records = found
    return decide(owner, records, ca_identities, account_uris, method, wildcard)


async def relevant_rrset(resolver: Resolver, name: str) -> tuple[str, list[CAARecord]] | None:
    """RFC 8659 §3: the CAA RRset of ``name``, else of its parent, ... up to the TLD."""
    labels = name.rstrip(".").split(".")
    for i in range(len(labels)):
        candidate = ".".join(labels[i:])
        records = await resolver.caa(candidate)
        if records:
            return candidate, records
    return None


def decide(
    owner: str,
    records: list[CAARecord],
    ca_identities: tuple[str, ...],
    account_uris: tuple[str, ...],
    method: str,
    wildcard: bool,
) -> AcmeError | None:
    """Apply RFC 8659 §4.2/§4.3 and RFC 8657 to the relevant RRset found at ``owner``."""
    for record in records:
        tag = record.tag.lower()  # RFC 8659 §4.1: tags match case-insensitively
        if record.critical and tag not in KNOWN_TAGS:
            return _caa_error(f"CAA record at {owner} has an unknown critical property")
    issue = [r for r in records if r.tag.lower() == "issue"]
    issuewild = [r for r in records if r.tag.lower() == "issuewild"]
    # RFC 8659 §4.3: for a wildcard, issuewild (when present) takes precedence over issue;
    # for other names issuewild is ignored.
    relevant = issuewild if wildcard and issuewild else issue
    if not relevant:
        return None  # only iodef or unknown non-critical tags: no restriction (§4.2)
    identities = {identity.lower() for identity in ca_identities}
    if any(_authorizes(r.value, identities, account_uris, method) for r in relevant):
        return None
    kind = "issuewild" if relevant is issuewild else "issue"
    return _caa_error(f"CAA {kind} records at {owner} do not authorise this CA to issue")


def _authorizes(
    value: str, identities: set[str], account_uris: tuple[str, ...], method: str
) -> bool:
    parsed = parse_issue_value(value)
    if parsed is None:
        return False
    domain, params = parsed
    if not domain or domain.lower() not in identities:
        return False  # ";" alone (RFC 8659 §4.2) or another CA
    # RFC 8657 §3: accounturi must equal the account URI exactly. An account has one URL
    # per URL family it can be reached by (per-profile and, for the default profile, the
    # /acme shorthand); the one the client was given is among them.
    if "accounturi" in params and params["accounturi"] not in account_uris:
        return False
    # RFC 8657 §4: a comma-separated list of ACME challenge types.
    if "validationmethods" in params:
        methods = params["validationmethods"].split(",")
        if not all(_METHOD.fullmatch(m) for m in methods) or method not in methods:
            return False
    return True


def parse_issue_value(value: str) -> tuple[str, dict[str, str]] | None:
    """RFC 8659 §4.2 issue-value: ``[issuer-domain-name] [";" [tag=value *(";" tag=value)]]``.

    Returns (issuer domain, parameters with lower-cased tags) or None when malformed.
    Duplicate parameters are malformed: RFC 8657 §3 forbids issuing on ambiguous bindings.
    """
    domain_part, sep, params_part = value.partition(";")
    domain = domain_part.strip(" \t")
    if domain and _ISSUER_DOMAIN.fullmatch(domain) is None:
        return None
    params: dict[str, str] = {}
    rest = params_part.strip(" \t")
    if not sep or not rest:
        return domain, params
    for item in rest.split(";"):
        tag, eq, param_value = (part.strip(" \t") for part in item.partition("="))
        if not eq or _PARAM_TAG.fullmatch(tag) is None:
            return None
        if _PARAM_VALUE.fullmatch(param_value) is None or tag.lower() in params:
            return None
        params[tag.lower()] = param_value
    return domain, params


def _caa_error(detail: str) -> AcmeError:
    return AcmeError(ProblemType.CAA, detail)
