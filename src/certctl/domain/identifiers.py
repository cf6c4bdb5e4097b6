"""Identifier syntax and normalisation (RFC 8555 §7.1.4, RFC 1035 §2.3.1, RFC 5890).

Names arrive as A-labels: we lower-case them and refuse anything that is not a
syntactically valid host name, so policy and CSR comparison work on one canonical form.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Mapping

from certctl.domain.errors import AcmeError, ProblemType, Subproblem, malformed
from certctl.domain.model import Identifier

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")  # fullmatch: no trailing \n
MAX_NAME_LENGTH = 253
MAX_LABEL_LENGTH = 63


def dns_name_problem(value: str) -> str | None:
    """Return why ``value`` (already lower-cased) is not an acceptable DNS identifier."""
    if not value:
        return "empty name"
    if len(value) > MAX_NAME_LENGTH:
        return "name longer than 253 octets"
    if value.endswith("."):
        return "name must not end with a dot"
    labels = value.split(".")
    if labels[0] == "*":
        labels = labels[1:]  # RFC 8555 §7.1.3: a wildcard is only the leftmost label
        if not labels:
            return "wildcard without a base name"
    if len(labels) < 2:
        return "name must have at least two labels"
    for label in labels:
        if not label:
            return "empty label"
        if "*" in label:
            return "wildcard only allowed as the whole leftmost label"
        if len(label) > MAX_LABEL_LENGTH:
            return "label longer than 63 octets"
        if not _LABEL.fullmatch(label):
            return f"label {label[:63]!r} is not letters, digits and inner hyphens"
        if label[2:4] == "--" and not label.startswith("xn--"):
            return f"label {label!r} has hyphens in positions 3-4 (reserved, RFC 5891 §4.2.3.1)"
        if label.startswith("xn--") and not _is_a_label(label):
            return f"label {label!r} is not a valid IDNA A-label (RFC 5890 §2.3.2.1)"
    if labels[-1].isdigit():
        return "top-level label must not be all digits"
    return None


def _is_a_label(label: str) -> bool:
    """Whether an ``xn--`` label is Punycode (RFC 3492) of a name with a non-ASCII
    character, none of them a control, format, unassigned or space character, that encodes
    back to the same label: the part of RFC 5891 §5.4's A-label test that needs no IDNA
    tables (the rest is for the name's owner to get right)."""
    try:
        decoded = label[4:].encode("ascii").decode("punycode")
    except UnicodeError:
        return False
    return (
        not decoded.isascii()
        and not any(unicodedata.category(c)[0] in "CZ" for c in decoded)
        and "xn--" + decoded.encode("punycode").decode("ascii") == label
    )


def normalise_dns(value: str) -> str:
    # Lower case only (RFC 4343): whitespace, a trailing newline included, is refused by
    # the label syntax, never trimmed into a different name.
    return value.lower() if value.isascii() else value


def parse_identifiers(raw: object, *, max_count: int = 100) -> tuple[Identifier, ...]:
    """Parse newOrder ``identifiers``; every bad one becomes its own subproblem."""
    if not isinstance(raw, list) or not raw:
        raise malformed("identifiers must be a non-empty array")
    if len(raw) > max_count:
        raise AcmeError(
            ProblemType.REJECTED_IDENTIFIER, f"an order may have at most {max_count} identifiers"
        )
    parsed: list[Identifier] = []
    problems: list[Subproblem] = []
    for item in raw:
        ident, problem = _parse_one(item)
        if problem is not None:
            problems.append(problem)
        elif ident is not None and ident not in parsed:
            parsed.append(ident)
    if problems:
        detail = "; ".join(f"{p.identifier_value}: {p.detail}" for p in problems[:5])
        unsupported = all(p.type is ProblemType.UNSUPPORTED_IDENTIFIER for p in problems)
        raise AcmeError(
            ProblemType.UNSUPPORTED_IDENTIFIER if unsupported else ProblemType.REJECTED_IDENTIFIER,
            f"identifiers refused: {detail}",
            subproblems=tuple(problems),
        )
    return tuple(parsed)


def _parse_one(item: object) -> tuple[Identifier | None, Subproblem | None]:
    if not isinstance(item, Mapping):
        raise malformed("each identifier must be an object")
    kind, value = item.get("type"), item.get("value")
    if not isinstance(kind, str) or not isinstance(value, str):
        raise malformed("identifier type and value must be strings")
    if kind == "ip":
        return _parse_ip(value)
    if kind != "dns":
        return None, Subproblem(
            ProblemType.UNSUPPORTED_IDENTIFIER,
            f"identifier type {kind[:20]!r} is not supported",
            kind[:20],
            value[:255],
        )
    name = normalise_dns(value)
    reason = dns_name_problem(name) if name.isascii() else "name must be ASCII (use IDNA A-labels)"
    if reason is not None:
        return None, Subproblem(ProblemType.REJECTED_IDENTIFIER, reason, "dns", value[:255])
    return Identifier("dns", name), None


def _parse_ip(value: str) -> tuple[Identifier | None, Subproblem | None]:
    """RFC 8738 §3: an IPv4 dotted quad (RFC 1123 §2.1) or IPv6 text (RFC 5952), stored in
    the canonical form; zones, prefixes and leading zeros are refused."""
    try:
        if "%" in value:  # zone indices (RFC 4007) name a local interface, not an address
            raise ValueError(value)
        address = ipaddress.ip_address(value)
    except ValueError:
        return None, Subproblem(ProblemType.MALFORMED, "not an IP address", "ip", value[:64])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return None, Subproblem(
            ProblemType.REJECTED_IDENTIFIER, "use the IPv4 form of this address", "ip", value[:64]
        )
    return Identifier("ip", str(address)), None


def identifier_set(identifiers: Iterable[Identifier]) -> frozenset[tuple[str, str]]:
    return frozenset((i.type, i.value) for i in identifiers)
