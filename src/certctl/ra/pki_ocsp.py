"""OCSP answers (RFC 6960, profiled by RFC 5019) from each issuer's delegated responder.

Timing (docs/acme-server.md): thisUpdate now, nextUpdate now + 24 h. Answers to requests
without a nonce are pre-signed and reused until half their validity has passed (the
``OCSPCache`` rule, RFC 5019 §2.2.4); a request nonce is echoed in an answer signed fresh
and never cached.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPResponseStatus

from certctl.ca import Issuer, LocalCA, PrivateKey, load_or_issue_responder
from certctl.domain.serials import canonical_serial
from certctl.ra.context import RAContext
from certctl.ra.pki_crl import HTTP_MAX_AGE, max_age, stored_reason
from certctl.revocation import (
    CERT_ID_HASHES,
    MAX_REQUEST_OCTETS,
    CertStatusRecord,
    OCSPCache,
    OCSPQuery,
    build_response,
    issue_responder_certificate,
    needs_rotation,
    query_for_serial,
    unsigned_error,
)
from certctl.storage import inventory

OCSP_LIFETIME = timedelta(hours=24)
# A pre-signed answer has at least half its validity left (the cache's rule).
_CACHED_MAX_AGE = int(min(HTTP_MAX_AGE, OCSP_LIFETIME / 2).total_seconds())
# RFC 5019 §2.1.1 keeps requests to about 100 octets; the parser refuses more than this.
MAX_OCSP_REQUEST_BYTES = MAX_REQUEST_OCTETS

MALFORMED, UNAUTHORIZED, INTERNAL = "malformed", "unauthorized", "internal"
_ERRORS = {
    MALFORMED: OCSPResponseStatus.MALFORMED_REQUEST,
    UNAUTHORIZED: OCSPResponseStatus.UNAUTHORIZED,
    INTERNAL: OCSPResponseStatus.INTERNAL_ERROR,
}


@dataclass(frozen=True)
class OcspAnswer:
    """A DER OCSPResponse, what it says (good, revoked, unauthorized, malformed,
    internal), and how long HTTP caches may keep it (0: not at all)."""

    der: bytes
    status: str
    max_age: int


def ocsp_error(kind: str) -> OcspAnswer:
    """An unsigned error answer (RFC 6960 §2.3): ``malformed``, ``unauthorized`` or
    ``internal``; never cached."""
    return OcspAnswer(unsigned_error(_ERRORS[kind]), kind, 0)


class OcspResponder:
    """Answers for every issuer of ``ca``, from the cache or signed now; thread-safe."""

    def __init__(self, ctx: RAContext, ca: LocalCA, cache: OCSPCache) -> None:
        self._ctx = ctx
        self._ca = ca
        self.cache = cache
        self._responders: dict[str, tuple[x509.Certificate, PrivateKey]] = {}
        self._lock = threading.Lock()
        # Per issuer and CertID hash: (issuerNameHash, issuerKeyHash), RFC 6960 §4.1.1.
        self._cert_ids = {
            (issuer.id, name): _cert_id(issuer, name)
            for issuer in ca.issuers.values()
            for name in CERT_ID_HASHES
        }

    def cached(self, issuer: Issuer, query: OCSPQuery) -> OcspAnswer | None:
        """The pre-signed answer, if the cache holds one; never reads the store, so the
        event loop may ask. None: ask ``answer``."""
        expected = self._cert_ids[(issuer.id, query.hash_algorithm)]
        if query.nonce is not None or (query.issuer_name_hash, query.issuer_key_hash) != expected:
            return None
        key = _cache_key(issuer.id, query.hash_algorithm)
        hit = self.cache.lookup(key, query.serial, self._ctx.clock())
        if hit is None:
            return None
        der, status = hit
        return OcspAnswer(der, status or _status_of(der), _CACHED_MAX_AGE)

    def answer(self, issuer: Issuer, query: OCSPQuery) -> OcspAnswer:
        expected = self._cert_ids[(issuer.id, query.hash_algorithm)]
        if (query.issuer_name_hash, query.issuer_key_hash) != expected:
            # RFC 6960 §2.3: a CertID naming another CA is not ours to answer.
            return ocsp_error(UNAUTHORIZED)
        hit = self.cached(issuer, query)
        if hit is not None:
            return hit
        now = self._ctx.clock()
        key = _cache_key(issuer.id, query.hash_algorithm)
        version = self.cache.version(key, query.serial)  # before the status: see OCSPCache
        record = self._status(issuer.id, query.serial)
        if record is None:
            # RFC 5019 §2.2.3: a serial this CA never issued is never "good".
            return ocsp_error(UNAUTHORIZED)
        responder_cert, responder_key = self._responder(issuer.id, now)
        der = build_response(
            query=query,
            issuer_cert=issuer.certificate,
            responder_cert=responder_cert,
            responder_key=responder_key,
            record=record,
            this_update=now,
            next_update=now + OCSP_LIFETIME,
            nonce=query.nonce,
        )
        if query.nonce is not None:
            return OcspAnswer(der, record.status, 0)  # RFC 5019 §6.2: never cache a nonce
        self.cache.put(
            key,
            query.serial,
            der,
            this_update=now,
            next_update=now + OCSP_LIFETIME,
            version=version,
            status=record.status,
        )
        return OcspAnswer(der, record.status, max_age(now, now + OCSP_LIFETIME))

    def forget(self, issuer_id: str, serial: int) -> None:
        """Drop the serial's pre-signed answers (every CertID hash): its status changed."""
        for name in CERT_ID_HASHES:
            self.cache.invalidate(_cache_key(issuer_id, name), serial)

    def _status(self, issuer_id: str, serial: int) -> CertStatusRecord | None:
        with self._ctx.db.read() as conn:
            version = inventory.find_by_serial(conn, canonical_serial(serial))
        if version is None or version.issuer_id != issuer_id:
            return None
        if version.status != "revoked":
            return CertStatusRecord(serial, "good")
        return CertStatusRecord(
            serial,
            "revoked",
            revoked_at=version.revoked_at or version.created_at,
            reason=stored_reason(version.revocation_reason),
        )

    def _responder(self, issuer_id: str, now: datetime) -> tuple[x509.Certificate, PrivateKey]:
        """The delegated responder (RFC 6960 §4.2.2.2), shared through the data directory
        by every process, re-issued when ``needs_rotation`` says so."""
        held = self._responders.get(issuer_id)
        if held is not None and not needs_rotation(held[0], now):
            return held
        with self._lock:
            held = load_or_issue_responder(
                self._ca,
                issuer_id,
                is_current=lambda cert: (
                    cert.not_valid_before_utc <= now and not needs_rotation(cert, now)
                ),
                issue=lambda cert, key, responder_key: issue_responder_certificate(
                    cert, key, responder_key, now=now
                ),
            )
            self._responders[issuer_id] = held
            return held


def _cert_id(issuer: Issuer, hash_name: str) -> tuple[bytes, bytes]:
    query = query_for_serial(issuer.certificate, 1, hash_name)
    return query.issuer_name_hash, query.issuer_key_hash


def _cache_key(issuer_id: str, hash_name: str) -> str:
    # A response repeats the request's CertID: one cached answer per hash algorithm.
    return f"{issuer_id}/{hash_name}"


def _status_of(der: bytes) -> str:
    return ocsp.load_der_ocsp_response(der).certificate_status.name.lower()
