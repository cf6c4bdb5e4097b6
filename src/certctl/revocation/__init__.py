"""certctl.revocation: CRLs, the delegated OCSP responder, OCSP answers and their cache.

Pure building blocks: callers bring the issuer certificate and key, the revoked entries or
a certificate's status, and the time; storage and HTTP wiring live elsewhere. Besides
``certctl.ca``, this is the only component that signs with private keys.
"""

from certctl.revocation._signing import PrivateKey
from certctl.revocation.cache import OCSPCache
from certctl.revocation.crl import RevokedEntry, build_crl
from certctl.revocation.ocsp import (
    CERT_ID_HASHES,
    MAX_REQUEST_OCTETS,
    CertStatus,
    CertStatusRecord,
    OCSPQuery,
    OCSPRequestError,
    build_response,
    issued_by,
    parse_request,
    query_for_serial,
    unsigned_error,
)
from certctl.revocation.reasons import (
    ALL_REASONS,
    SUBSCRIBER_REASONS,
    RevocationReason,
    parse_reason,
)
from certctl.revocation.responder import issue_responder_certificate, needs_rotation

__all__ = [
    "ALL_REASONS",
    "CERT_ID_HASHES",
    "MAX_REQUEST_OCTETS",
    "SUBSCRIBER_REASONS",
    "CertStatus",
    "CertStatusRecord",
    "OCSPCache",
    "OCSPQuery",
    "OCSPRequestError",
    "PrivateKey",
    "RevocationReason",
    "RevokedEntry",
    "build_crl",
    "build_response",
    "issue_responder_certificate",
    "issued_by",
    "needs_rotation",
    "parse_reason",
    "parse_request",
    "query_for_serial",
    "unsigned_error",
]
