"""ACME request JWS: RFC 8555 §6.2 on top of RFC 7515, flattened JSON serialization only.

``parse_jws`` performs every structural check and returns a ``ParsedJWS``; it never
verifies a signature. ``verify_jws`` verifies against a key that the *caller* chooses: the
embedded ``jwk`` on newAccount/revokeCert-by-certificate-key, the stored account key on
every ``kid`` endpoint (never a key taken from a ``kid`` request, cf. Authlib
CVE-2026-27962). Nothing here falls back to ``ParsedJWS.jwk`` implicitly.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from certctl.acme.b64 import b64url_decode
from certctl.acme.jwk import AccountPublicKey, PublicJWK
from certctl.domain.errors import AcmeError, ProblemType

# RFC 8555 §6.2: servers MUST support RS256 and ES256 and MUST NOT accept "none" or any
# MAC-based algorithm (HS*): the JWS must prove possession of a private key. We also offer
# the other ECDSA sizes (RFC 7518 §3.4) and Ed25519 (RFC 8037 §3.1). Other RSA hashes and
# RSA-PSS are left out on purpose: fewer algorithms, fewer confusion bugs.
ALLOWED_ALGS: Final = frozenset({"RS256", "ES256", "ES384", "ES512", "EdDSA"})

# Bounds for client JSON: stop deep nesting before the parser recurses and huge number
# literals before int()/float() spend quadratic time on them.
MAX_JSON_DEPTH: Final = 32
MAX_NUMBER_CHARS: Final = 100

# alg -> curve name of the only EC key it fits (RFC 7518 §3.4) and its digest.
_EC_ALGS: Final[dict[str, tuple[str, hashes.HashAlgorithm]]] = {
    "ES256": ("secp256r1", hashes.SHA256()),
    "ES384": ("secp384r1", hashes.SHA384()),
    "ES512": ("secp521r1", hashes.SHA512()),
}
# The verifier's algorithm object per alg, built once (a verification is per request).
_ECDSA: Final = {alg: ec.ECDSA(digest) for alg, (_, digest) in _EC_ALGS.items()}
_SHA256: Final = hashes.SHA256()
_PKCS1V15: Final = padding.PKCS1v15()
# Fixed signature sizes in octets: ECDSA raw r||s (RFC 7518 §3.4), Ed25519 (RFC 8032 §5.1.6).
_FIXED_SIG_LEN: Final = {"ES256": 64, "ES384": 96, "ES512": 132, "EdDSA": 64}

_MEMBERS: Final = frozenset({"protected", "payload", "signature"})
_COMPACT: Final = re.compile(rb"\s*[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*\s*")
_FLATTENED_REQUIRED: Final = "flattened JSON serialization required"


@dataclass(frozen=True)
class ParsedJWS:
    """A structurally valid, *not yet verified* ACME request JWS."""

    protected: Mapping[str, Any]
    alg: str
    nonce: str | None
    url: str
    kid: str | None
    jwk: PublicJWK | None
    payload: bytes
    signing_input: bytes
    signature: bytes

    @property
    def is_post_as_get(self) -> bool:
        """RFC 8555 §6.3: an empty payload ("") turns a POST into a GET."""
        return self.payload == b""

    def payload_json(self) -> dict[str, Any]:
        """The payload as a JSON object (RFC 8555 §7 request bodies are all objects)."""
        if self.is_post_as_get:
            raise _malformed("JWS payload must be a JSON object, not empty")
        return _json_object(self.payload, "JWS payload")


def parse_jws(body: bytes, *, require_nonce: bool = True) -> ParsedJWS:
    """Parse and structurally check an ACME request body (RFC 8555 §6.2, RFC 7515 §7.2.2)."""
    protected_b64, payload_b64, signature_b64 = _outer_members(body)
    header_raw = b64url_decode(protected_b64)
    payload = b64url_decode(payload_b64)
    signature = b64url_decode(signature_b64)
    header = _json_object(header_raw, "JWS protected header")

    alg = _header_alg(header)
    _reject_extensions(header)
    kid, jwk = _header_key(header, alg)
    url = _header_url(header)
    nonce = _header_nonce(header, require_nonce=require_nonce)
    _check_signature_size(alg, signature)
    return ParsedJWS(
        protected=MappingProxyType(header),
        alg=alg,
        nonce=nonce,
        url=url,
        kid=kid,
        jwk=jwk,
        payload=payload,
        # RFC 7515 §5.2 step 8: ASCII(BASE64URL(protected) || '.' || BASE64URL(payload)).
        signing_input=f"{protected_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
    )


def verify_jws(jws: ParsedJWS, key: PublicJWK) -> None:
    """Verify ``jws`` with ``key``, chosen by the caller; raise on any failure."""
    if not _alg_fits_key(jws.alg, key.key):
        raise _bad_alg(f'"alg" {jws.alg} cannot be used with this {key.kty} key')
    if not _signature_valid(jws.alg, key.key, jws.signing_input, jws.signature):
        raise AcmeError(ProblemType.UNAUTHORIZED, "JWS signature verification failed")


def key_authorization(token: str, jwk: PublicJWK) -> str:
    """RFC 8555 §8.1: token || '.' || base64url(JWK thumbprint)."""
    return f"{token}.{jwk.thumbprint}"


# --- outer JSON object ----------------------------------------------------------------


def _outer_members(body: bytes) -> tuple[str, str, str]:
    """RFC 8555 §6.2: flattened JSON serialization, no unprotected header, no detaching."""
    if _COMPACT.fullmatch(body) is not None:
        raise _malformed(f"compact serialization is not supported; {_FLATTENED_REQUIRED}")
    obj = _loads_strict(body, "request body")
    if not isinstance(obj, dict):
        raise _malformed(f"request body is not a JSON object; {_FLATTENED_REQUIRED}")
    if "signatures" in obj:
        raise _malformed(f"general JSON serialization is not supported; {_FLATTENED_REQUIRED}")
    if "header" in obj:
        raise _malformed(f"unprotected JWS header is not allowed; {_FLATTENED_REQUIRED}")
    if set(obj) != _MEMBERS:
        raise _malformed(
            f"JWS must have exactly the members protected, payload, signature; "
            f"{_FLATTENED_REQUIRED}"
        )
    values = (obj["protected"], obj["payload"], obj["signature"])
    if not all(isinstance(v, str) for v in values):
        raise _malformed("JWS members protected, payload, signature must be strings")
    protected, payload, signature = (str(v) for v in values)
    if not protected:
        raise _malformed("JWS protected header is required")
    return protected, payload, signature


# --- protected header -----------------------------------------------------------------


def _header_alg(header: Mapping[str, Any]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGS:
        raise _bad_alg('unsupported or missing JWS "alg"; allowed: ' + _allowed_list())
    return alg


def _reject_extensions(header: Mapping[str, Any]) -> None:
    # RFC 7797 §3: "b64": false changes the signing input; ACME never uses it.
    if "b64" in header:
        raise _malformed('JWS "b64" header parameter is not supported')
    # RFC 7515 §4.1.11: we understand no extension, so any "crit" must be refused.
    if "crit" in header:
        raise _malformed('JWS "crit" header parameter is not supported')


def _header_key(header: Mapping[str, Any], alg: str) -> tuple[str | None, PublicJWK | None]:
    """RFC 8555 §6.2: exactly one of "jwk" and "kid"."""
    has_jwk, has_kid = "jwk" in header, "kid" in header
    if has_jwk == has_kid:
        raise _malformed('JWS protected header must contain exactly one of "jwk" and "kid"')
    if has_kid:
        kid = header["kid"]
        if not isinstance(kid, str) or not kid:
            raise _malformed('JWS "kid" must be a non-empty string')
        return kid, None
    jwk = PublicJWK.from_dict(header["jwk"])
    if not _alg_fits_key(alg, jwk.key):
        raise _bad_alg(f'"alg" {alg} cannot be used with this {jwk.kty} key')
    return None, jwk


def _header_url(header: Mapping[str, Any]) -> str:
    """RFC 8555 §6.4: "url" is required; the caller compares it with the request URL."""
    url = header.get("url")
    if not isinstance(url, str) or not url:
        raise _malformed('JWS protected header must contain a "url" string')
    return url


def _header_nonce(header: Mapping[str, Any], *, require_nonce: bool) -> str | None:
    if "nonce" not in header:
        if require_nonce:
            # RFC 8555 §6.5: a missing nonce is rejected as badNonce.
            raise AcmeError(ProblemType.BAD_NONCE, 'JWS protected header must contain "nonce"')
        return None
    nonce = header["nonce"]
    # RFC 8555 §6.5.2: the nonce is base64url; an invalid encoding is malformed.
    if not isinstance(nonce, str):
        raise _malformed('JWS "nonce" must be a string')
    b64url_decode(nonce)
    return nonce


def _check_signature_size(alg: str, signature: bytes) -> None:
    expected = _FIXED_SIG_LEN.get(alg)
    if not signature or (expected is not None and len(signature) != expected):
        raise _malformed(f"JWS signature has the wrong length for {alg}")


# --- signatures -----------------------------------------------------------------------


def _alg_fits_key(alg: str, key: AccountPublicKey) -> bool:
    """Pin alg to key type (alg confusion, cf. PyJWT CVE-2022-29217)."""
    if isinstance(key, rsa.RSAPublicKey):
        return alg == "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        spec = _EC_ALGS.get(alg)
        return spec is not None and spec[0] == key.curve.name
    return alg == "EdDSA"


def _signature_valid(alg: str, key: AccountPublicKey, data: bytes, signature: bytes) -> bool:
    try:
        if isinstance(key, rsa.RSAPublicKey):
            # RFC 8017 §8.2.2 step 1: the signature is exactly as long as the modulus.
            if len(signature) != (key.key_size + 7) // 8:
                return False
            key.verify(signature, data, _PKCS1V15, _SHA256)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(_raw_to_der(key, signature), data, _ECDSA[alg])
        else:
            key.verify(signature, data)
    except (InvalidSignature, ValueError, KeyError):
        return False
    return True


def _raw_to_der(key: ec.EllipticCurvePublicKey, signature: bytes) -> bytes:
    """RFC 7518 §3.4: JWS ECDSA signatures are R || S, each the coordinate size."""
    size = (key.curve.key_size + 7) // 8
    if len(signature) != 2 * size:
        raise ValueError("wrong ECDSA signature length")
    r = int.from_bytes(signature[:size], "big")
    s = int.from_bytes(signature[size:], "big")
    return encode_dss_signature(r, s)


# --- strict JSON ----------------------------------------------------------------------


class _JSONRejectedError(Exception):
    """Raised from json hooks; turned into ``malformed`` with context by the caller."""


# The depth scan's two states (RFC 8259 §2, §7). Outside a string: what opens a string or
# changes the depth. Inside one: what ends it or escapes the next character. Each search
# starts where the last stopped and never looks back, so the scan is linear in the text.
_JSON_STRUCTURAL: Final = re.compile(r'["\[\]{}]')
_JSON_STRING_SPECIAL: Final = re.compile(r'["\\]')
# A lone surrogate can only come from a \uD800-\uDFFF escape: UTF-8 text has none (decode
# refused it), so the walk over every string runs only when the text holds such an escape.
_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")


def _json_object(data: bytes, what: str) -> dict[str, Any]:
    obj = _loads_strict(data, what)
    if not isinstance(obj, dict):
        raise _malformed(f"{what} must be a JSON object")
    return obj


def _loads_strict(data: bytes, what: str) -> object:
    """RFC 8259 JSON in UTF-8, with unique member names (RFC 7515 §5.2 step 4) and bounds."""
    try:
        text = data.decode("utf-8")
        _check_depth(text)
        value = json.loads(
            text,
            object_pairs_hook=_unique_object,
            parse_int=_bounded_int,
            parse_float=_bounded_float,
            parse_constant=_reject_constant,
        )
        if _SURROGATE_ESCAPE.search(text) is not None:
            _check_strings(value)
    except _JSONRejectedError as exc:
        raise _malformed(f"{what}: {exc}") from None
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise _malformed(f"{what} is not valid UTF-8 JSON") from None
    return value


def _check_depth(text: str) -> None:
    # Every bracket opens at most one level, so few brackets cannot nest too deep; an ACME
    # body has a handful (its header and payload are base64url strings), and the exact
    # scan below walks the whole body.
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return
    # One forward pass, never a regex that matches whole string literals: on a quote
    # followed by escaped quotes (\") and no closing one, such a regex fails and retries
    # at every quote, quadratic time (a hostile probe held the GIL for 14 s with a 64 KiB
    # body). An unclosed string runs to the end here; json.loads refuses it before it
    # reaches any bracket after it.
    depth = 0
    pos = 0
    while (match := _JSON_STRUCTURAL.search(text, pos)) is not None:
        char, pos = match.group(), match.end()
        if char == '"':
            pos = _string_end(text, pos)
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise _JSONRejectedError(f"nested deeper than {MAX_JSON_DEPTH} levels")
        else:
            depth -= 1


def _string_end(text: str, pos: int) -> int:
    """The index past the string literal whose content starts at ``pos`` (or the end)."""
    while (match := _JSON_STRING_SPECIAL.search(text, pos)) is not None:
        if match.group() == '"':
            return match.end()
        # RFC 8259 §7: a backslash escapes the one character after it (\u takes four hex
        # digits more, none of them special here).
        pos = match.end() + 1
    return len(text)


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise _JSONRejectedError("duplicate member name")
    return obj


def _bounded_int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _JSONRejectedError("number too long")
    return int(literal)


def _bounded_float(literal: str) -> float:
    value = float(literal) if len(literal) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise _JSONRejectedError("number out of range")
    return value


def _reject_constant(literal: str) -> Any:
    raise _JSONRejectedError(f"{literal} is not JSON")


def _check_strings(value: object) -> None:
    """Refuse lone surrogates (\\ud800 escapes): they are not Unicode text (RFC 8259 §8.2)."""
    if isinstance(value, str):
        value.encode("utf-8")  # UnicodeEncodeError is a ValueError
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_strings(key)
            _check_strings(item)
    elif isinstance(value, list):
        for item in value:
            _check_strings(item)


# --- errors ---------------------------------------------------------------------------


def _allowed_list() -> str:
    return ", ".join(sorted(ALLOWED_ALGS))


def _malformed(detail: str) -> AcmeError:
    return AcmeError(ProblemType.MALFORMED, detail)


def _bad_alg(detail: str) -> AcmeError:
    return AcmeError(ProblemType.BAD_SIGNATURE_ALGORITHM, detail)


def strict_json_object(data: bytes, what: str) -> dict[str, Any]:
    """The JSON rules of this module (UTF-8, unique members, bounded depth and numbers) for
    other JOSE structures, such as the external account binding."""
    return _json_object(data, what)
