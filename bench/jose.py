"""The JOSE and PKCS#10 pieces of the load driver: ES256 keys, flattened JWS, CSRs."""

from __future__ import annotations

import base64
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

_SHA256 = hashes.SHA256()
_ECDSA = ec.ECDSA(_SHA256)
_COMPACT = (",", ":")


def b64u(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=_COMPACT).encode()


class AccountKey:
    """A P-256 account key that signs flattened JWS with ES256 (raw r||s, RFC 7518 §3.4)."""

    __slots__ = ("jwk", "key")

    def __init__(self, key: ec.EllipticCurvePrivateKey | None = None) -> None:
        self.key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        numbers = self.key.public_key().public_numbers()
        self.jwk = {
            "crv": "P-256",
            "kty": "EC",
            "x": b64u(numbers.x.to_bytes(32, "big")),
            "y": b64u(numbers.y.to_bytes(32, "big")),
        }

    def sign(self, url: str, nonce: str, payload: bytes | None, kid: str | None) -> bytes:
        """The flattened JWS body; ``payload=None`` is a POST-as-GET (empty payload)."""
        protected: dict[str, Any] = {"alg": "ES256", "nonce": nonce, "url": url}
        if kid is None:
            protected["jwk"] = self.jwk
        else:
            protected["kid"] = kid
        protected_b64 = b64u(dumps(protected))
        payload_b64 = "" if payload is None else b64u(payload)
        der = self.key.sign(f"{protected_b64}.{payload_b64}".encode("ascii"), _ECDSA)
        r, s = decode_dss_signature(der)
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return dumps(
            {"protected": protected_b64, "payload": payload_b64, "signature": b64u(signature)}
        )


def make_csr(name: str) -> bytes:
    """A DER CSR for ``name`` (CN and SAN) with a fresh P-256 key."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .sign(key, _SHA256)
    )
    return csr.public_bytes(Encoding.DER)
