"""External account binding (RFC 8555 §7.3.4): the inner JWS inside newAccount.

The binding is a flattened JWS whose protected header names a MAC algorithm, the EAB key id
and the newAccount URL, and whose payload is the account's public JWK; it is MACed with the
key the CA handed out-of-band. The MAC key is looked up by the caller from the kid; this
module only parses and verifies, and never takes a key from the request.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from certctl.acme.b64 import b64url_decode
from certctl.acme.jwk import PublicJWK
from certctl.acme.jws import strict_json_object
from certctl.domain.errors import AcmeError, ProblemType, malformed, unauthorized

MAC_ALGS: Mapping[str, Any] = {
    "HS256": hashlib.sha256,
    "HS384": hashlib.sha384,
    "HS512": hashlib.sha512,
}


@dataclass(frozen=True)
class ParsedBinding:
    alg: str
    kid: str
    signing_input: bytes
    mac: bytes


def parse_binding(binding: object, *, account_jwk: PublicJWK, url: str) -> ParsedBinding:
    """Structural checks of §7.3.4, in order; the MAC is checked by ``verify_binding``."""
    if not isinstance(binding, Mapping) or set(binding) != {"protected", "payload", "signature"}:
        raise malformed("externalAccountBinding must be a flattened JWS")
    parts = [binding[k] for k in ("protected", "payload", "signature")]
    if not all(isinstance(p, str) for p in parts):
        raise malformed("externalAccountBinding members must be strings")
    protected_b64, payload_b64, signature_b64 = parts
    header = strict_json_object(b64url_decode(protected_b64), "EAB protected header")
    alg, kid, header_url = header.get("alg"), header.get("kid"), header.get("url")
    # Type before value: a JSON array or object as "alg" is unhashable (a 500 once), and
    # a non-string "alg" is badSignatureAlgorithm, as in the outer JWS (certctl.acme.jws).
    if not isinstance(alg, str) or alg not in MAC_ALGS:
        raise AcmeError(
            ProblemType.BAD_SIGNATURE_ALGORITHM, "externalAccountBinding must use HS256/384/512"
        )
    if not isinstance(kid, str) or not kid or len(kid) > 128:
        raise malformed("externalAccountBinding needs a kid")
    if "nonce" in header:
        raise malformed("externalAccountBinding must not carry a nonce (RFC 8555 §7.3.4)")
    # As for the outer JWS (certctl.acme.jws): "b64": false would change the signing input
    # (RFC 7797 §3), and a "crit" names extensions we do not understand (RFC 7515
    # §4.1.11), so either is refused rather than ignored.
    for member in ("b64", "crit"):
        if member in header:
            raise malformed(f'externalAccountBinding: "{member}" is not supported')
    if not isinstance(header_url, str) or not header_url:
        raise malformed("externalAccountBinding needs a url string (RFC 8555 §7.3.4)")
    if header_url != url:
        raise unauthorized("externalAccountBinding url must be the newAccount URL")
    inner_key = PublicJWK.from_dict(strict_json_object(b64url_decode(payload_b64), "EAB payload"))
    if inner_key.thumbprint != account_jwk.thumbprint:
        raise unauthorized("externalAccountBinding payload must be the account key")
    return ParsedBinding(
        alg=alg,
        kid=kid,
        signing_input=f"{protected_b64}.{payload_b64}".encode(),
        mac=b64url_decode(signature_b64),
    )


def verify_binding(parsed: ParsedBinding, mac_key: bytes) -> None:
    digest = hmac.new(mac_key, parsed.signing_input, MAC_ALGS[parsed.alg]).digest()
    if not hmac.compare_digest(digest, parsed.mac):
        raise unauthorized("externalAccountBinding MAC does not verify")
