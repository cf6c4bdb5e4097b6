"""OCSP request parsing and response signing (RFC 6960, profiled by RFC 5019).

Pure functions: the caller looks up the certificate's status and hands it in as a
``CertStatusRecord``; nothing here touches storage or HTTP. Requests hold exactly one
CertID (RFC 5019 §2.1.1); a request listing several is refused as ``malformedRequest``
rather than answered in part, so a client never mistakes a partial answer for a full one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPResponseStatus
from cryptography.x509.oid import OCSPExtensionOID

from certctl.revocation._signing import (
    PrivateKey,
    key_identifier,
    require_key_of,
    signature_hash,
    subject_public_key_bits,
    utc_seconds,
)
from certctl.revocation.reasons import RevocationReason

# RFC 8954 §2.1: a nonce is 1 to 32 octets; others are malformedRequest.
MIN_NONCE_OCTETS = 1
MAX_NONCE_OCTETS = 32
# A single-CertID request is about 100 octets (RFC 5019 §5 keeps GET URLs short); anything
# this large is not an RFC 5019 request, so refuse it before parsing.
MAX_REQUEST_OCTETS = 8192

CertStatus = Literal["good", "revoked", "unknown"]

# CertID hash algorithms we answer for: SHA-1 (the only one RFC 5019 §2.1.1 clients use)
# and the SHA-2 family RFC 6960 responders commonly accept.
_CERT_ID_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1,
    "sha256": hashes.SHA256,
    "sha384": hashes.SHA384,
    "sha512": hashes.SHA512,
}
# The names above, for callers that keep one answer per CertID hash (a response repeats the
# request's CertID, so a SHA-1 answer cannot serve a SHA-256 request).
CERT_ID_HASHES: frozenset[str] = frozenset(_CERT_ID_HASHES)
# Request extensions we understand; RFC 6960 §4.4: an unknown critical one is an error.
_KNOWN_REQUEST_EXTENSIONS = frozenset(
    {OCSPExtensionOID.NONCE, OCSPExtensionOID.ACCEPTABLE_RESPONSES}
)
_STATUSES: dict[str, ocsp.OCSPCertStatus] = {
    "good": ocsp.OCSPCertStatus.GOOD,
    "revoked": ocsp.OCSPCertStatus.REVOKED,
    "unknown": ocsp.OCSPCertStatus.UNKNOWN,
}


class OCSPRequestError(Exception):
    """A request we cannot answer; send ``unsigned_error(exc.status)`` (RFC 6960 §2.3)."""

    def __init__(
        self, detail: str, status: OCSPResponseStatus = OCSPResponseStatus.MALFORMED_REQUEST
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class OCSPQuery:
    """The one CertID of a request (RFC 6960 §4.1.1) and its nonce, if any.

    ``hash_algorithm`` is the CertID digest's name as ``cryptography`` spells it ("sha1").
    """

    serial: int
    issuer_name_hash: bytes
    issuer_key_hash: bytes
    hash_algorithm: str
    nonce: bytes | None


@dataclass(frozen=True, slots=True)
class CertStatusRecord:
    """What the CA knows about one serial it issued (RFC 6960 §2.2)."""

    serial: int
    status: CertStatus
    revoked_at: datetime | None = None
    reason: RevocationReason | None = None

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"unknown certificate status {self.status!r}")
        if (self.status == "revoked") != (self.revoked_at is not None):
            raise ValueError("revoked_at is required for, and only for, revoked certificates")
        if self.reason is not None and self.status != "revoked":
            raise ValueError("only a revoked certificate has a reason")
        if self.reason is RevocationReason.REMOVE_FROM_CRL:
            raise ValueError("removeFromCRL is not a revocation reason for a status answer")


def parse_request(der: bytes) -> OCSPQuery:
    """The query in an ``application/ocsp-request`` body; ``OCSPRequestError`` otherwise.

    No other exception escapes, whatever the bytes are.
    """
    if not isinstance(der, bytes) or not der or len(der) > MAX_REQUEST_OCTETS:
        raise OCSPRequestError("request is empty or too large")
    try:
        request = ocsp.load_der_ocsp_request(der)
        query = OCSPQuery(
            serial=request.serial_number,
            issuer_name_hash=request.issuer_name_hash,
            issuer_key_hash=request.issuer_key_hash,
            hash_algorithm=_hash_name(request.hash_algorithm),
            nonce=_request_nonce(request.extensions),
        )
    except NotImplementedError:
        # cryptography refuses requestList with more than one Request (RFC 5019 §2.1.1).
        raise OCSPRequestError("request must hold exactly one certificate") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise OCSPRequestError("request is not a DER OCSPRequest") from None
    if query.serial <= 0:
        raise OCSPRequestError("serial numbers are positive")
    return query


def _hash_name(algorithm: hashes.HashAlgorithm) -> str:
    if algorithm.name not in _CERT_ID_HASHES:
        raise OCSPRequestError(f"CertID hash {algorithm.name} is not supported")
    return algorithm.name


def _request_nonce(extensions: x509.Extensions) -> bytes | None:
    nonce: bytes | None = None
    for extension in extensions:
        if isinstance(extension.value, x509.OCSPNonce):  # id-pkix-ocsp-nonce, parsed
            nonce = extension.value.nonce
        elif extension.critical and extension.oid not in _KNOWN_REQUEST_EXTENSIONS:
            raise OCSPRequestError("request carries an unknown critical extension")
    if nonce is not None and not MIN_NONCE_OCTETS <= len(nonce) <= MAX_NONCE_OCTETS:
        raise OCSPRequestError("nonce must be 1 to 32 octets (RFC 8954 §2.1)")
    return nonce


def unsigned_error(status: OCSPResponseStatus) -> bytes:
    """An unsigned OCSPResponse with only ``responseStatus`` (RFC 6960 §4.2.1)."""
    if status is OCSPResponseStatus.SUCCESSFUL:
        raise ValueError("a successful response must be signed")
    response = ocsp.OCSPResponseBuilder.build_unsuccessful(status)
    return response.public_bytes(serialization.Encoding.DER)


def query_for_serial(
    issuer_cert: x509.Certificate, serial: int, hash_algorithm: str = "sha1"
) -> OCSPQuery:
    """The query an RFC 5019 client would send for ``serial`` of ``issuer_cert`` (SHA-1
    CertID by default, RFC 5019 §2.1.1), without a nonce: for lookups by serial alone."""
    if hash_algorithm not in _CERT_ID_HASHES:
        raise ValueError(f"CertID hash {hash_algorithm} is not supported")
    if serial <= 0:
        raise ValueError("serial numbers are positive")
    name_hash, key_hash = _issuer_hashes(issuer_cert, hash_algorithm)
    return OCSPQuery(
        serial=serial,
        issuer_name_hash=name_hash,
        issuer_key_hash=key_hash,
        hash_algorithm=hash_algorithm,
        nonce=None,
    )


def issued_by(query: OCSPQuery, issuer_cert: x509.Certificate) -> bool:
    """Does the query's CertID name ``issuer_cert`` (RFC 6960 §4.1.1 issuerNameHash/KeyHash)?"""
    name_hash, key_hash = _issuer_hashes(issuer_cert, query.hash_algorithm)
    return name_hash == query.issuer_name_hash and key_hash == query.issuer_key_hash


@functools.lru_cache(maxsize=64)
def _issuer_hashes(issuer_cert: x509.Certificate, hash_algorithm: str) -> tuple[bytes, bytes]:
    """(issuerNameHash, issuerKeyHash) of a CA (RFC 6960 §4.1.1), the same for every query:
    kept per certificate (equal by DER) instead of serialised and hashed each time."""
    algorithm = _CERT_ID_HASHES[hash_algorithm]()
    return (
        _digest(algorithm, issuer_cert.subject.public_bytes()),
        _digest(algorithm, subject_public_key_bits(issuer_cert)),
    )


def build_response(
    *,
    query: OCSPQuery,
    issuer_cert: x509.Certificate,
    responder_cert: x509.Certificate,
    responder_key: PrivateKey,
    record: CertStatusRecord | None,
    this_update: datetime,
    next_update: datetime,
    nonce: bytes | None,
) -> bytes:
    """A DER OCSPResponse answering ``query``.

    A CertID for another issuer, or a serial this issuer never issued (``record`` None), gets
    the unsigned ``unauthorized`` response (RFC 6960 §2.3; RFC 5019 §2.2.3): never "good".
    Otherwise a ``successful`` BasicOCSPResponse signed by the delegated responder, which is
    included in ``certs`` and named by key hash (RFC 6960 §4.2.1, ResponderID byKey). Pass
    ``nonce=None`` to pre-sign a response any request for the serial may get (RFC 5019
    §2.2.4).
    """
    if not issued_by(query, issuer_cert) or record is None:
        return unsigned_error(OCSPResponseStatus.UNAUTHORIZED)
    if record.serial != query.serial:
        raise ValueError("the status record is for another serial")
    start = utc_seconds(this_update, "this_update")
    end = utc_seconds(next_update, "next_update")
    if end <= start:
        raise ValueError("next_update must be after this_update")
    _check_responder(issuer_cert, responder_cert, responder_key, start)
    builder = (
        ocsp.OCSPResponseBuilder()
        .add_response_by_hash(
            issuer_name_hash=query.issuer_name_hash,
            issuer_key_hash=query.issuer_key_hash,
            serial_number=query.serial,
            algorithm=_CERT_ID_HASHES[query.hash_algorithm](),
            cert_status=_STATUSES[record.status],
            this_update=start,
            next_update=end,
            revocation_time=_revocation_time(record),
            revocation_reason=_revocation_reason(record),
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, responder_cert)
        .certificates([responder_cert])
    )
    if nonce is not None:
        if not MIN_NONCE_OCTETS <= len(nonce) <= MAX_NONCE_OCTETS:
            raise ValueError("nonce must be 1 to 32 octets")
        # RFC 6960 §4.4.1: echo the request's nonce in responseExtensions.
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    response = builder.sign(responder_key, signature_hash(responder_key))
    return response.public_bytes(serialization.Encoding.DER)


def _check_responder(
    issuer_cert: x509.Certificate,
    responder_cert: x509.Certificate,
    responder_key: PrivateKey,
    moment: datetime,
) -> None:
    """Refuse to sign with a responder that relying parties would reject: a key that is not
    its certificate's, a certificate from another issuer (RFC 6960 §4.2.2.2: delegated by
    *this* CA), or one not valid at ``this_update``. Name and key id only, no signature
    check, to keep the per-response cost at one signature."""
    require_key_of(responder_cert, responder_key, "responder")
    try:
        aki = responder_cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
        key_id = aki.value.key_identifier
    except x509.ExtensionNotFound:
        key_id = None
    if responder_cert.issuer != issuer_cert.subject or key_id != key_identifier(issuer_cert).digest:
        raise ValueError("the responder certificate is not issued by this issuer")
    if not responder_cert.not_valid_before_utc <= moment < responder_cert.not_valid_after_utc:
        raise ValueError("the responder certificate is not valid at this_update")


def _revocation_time(record: CertStatusRecord) -> datetime | None:
    if record.revoked_at is None:
        return None
    return utc_seconds(record.revoked_at, "revoked_at")


def _revocation_reason(record: CertStatusRecord) -> x509.ReasonFlags | None:
    # Same rule as the CRL entry (RFC 5280 §5.3.1): unspecified is said by saying nothing,
    # so the two sources agree (CA/B BR §7.3 asks OCSP and CRL reasons to match).
    if record.reason is None or record.reason is RevocationReason.UNSPECIFIED:
        return None
    return record.reason.flag


def _digest(algorithm: hashes.HashAlgorithm, data: bytes) -> bytes:
    context = hashes.Hash(algorithm)
    context.update(data)
    return context.finalize()
