"""dns-01 (RFC 8555 §8.4): a TXT record at ``_acme-challenge.<name>`` holding the digest."""

from __future__ import annotations

import hashlib

from certctl.acme.b64 import b64url_encode
from certctl.domain.errors import AcmeError, ProblemType
from certctl.va.model import ValidationRequest
from certctl.va.net import safe_snippet
from certctl.va.resolver import Resolver

PREFIX = "_acme-challenge"


def dns01_digest(key_authorization: str) -> str:
    """RFC 8555 §8.4: base64url(SHA-256(key authorization)), without padding."""
    return b64url_encode(hashlib.sha256(key_authorization.encode("ascii")).digest())


def dns01_name(identifier_value: str) -> str:
    """The record name; for ``*.example.com`` it is that of the base name (RFC 8555 §8.4)."""
    base = identifier_value.removeprefix("*.")
    return f"{PREFIX}.{base}"


async def validate_dns01(req: ValidationRequest, resolver: Resolver, records: list[str]) -> None:
    """Raise a typed ``AcmeError`` unless one TXT record equals the expected digest."""
    name = dns01_name(req.identifier.value)
    expected = dns01_digest(req.key_authorization)
    values = await resolver.txt(name)  # CNAMEs are followed by the resolver
    records.append(f"TXT {name}: {len(values)} record(s)")
    # RFC 8555 §8.4: the record set may hold several values (several pending challenges);
    # one exact match is enough.
    if expected in values:
        return
    seen = safe_snippet(values[0].encode("utf-8")) if values else "none"
    more = f" and {len(values) - 1} more" if len(values) > 1 else ""
    raise AcmeError(
        ProblemType.INCORRECT_RESPONSE,
        f"no TXT record at {name} matches the challenge (found {seen}{more})",
    )
