"""Revocation status for relying parties: one CRL per issuer and the delegated OCSP responder.

The HTTP front (``certctl.pki``) makes one call here per request. This service reads
certificate status from storage, signs through ``certctl.revocation`` with keys it gets
from ``certctl.ca``, and keeps two caches per process: the current CRL of each issuer and
pre-signed OCSP responses (RFC 5019 §2.2.4). Both follow the revocation feed, so a
revocation anywhere (another worker, another replica, the command line) shows here within
about ``FEED_POLL_SECONDS``; the revoking process itself calls ``on_revoked`` after commit
and shows it at once.

Timing choices (documented in docs/acme-server.md):

- CRL: thisUpdate now, nextUpdate now + ``crl_lifetime(interval)`` = twice the generation
  interval, at least 24 h, at most 10 days (CA/B BR §4.9.7). A CRL is regenerated every
  interval, when half its validity has passed, and when a revocation it lacks is seen.
  Entries stay until a CRL issued after the certificate's expiry has carried them
  (RFC 5280 §3.3): for one CRL lifetime past notAfter.
- OCSP: thisUpdate now, nextUpdate now + 24 h; pre-signed responses are re-signed after
  half of that (the cache's rule), responses to requests with a nonce are signed fresh.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPResponseStatus

from certctl.ca import Issuer, LocalCA, PrivateKey, load_or_issue_responder
from certctl.domain.errors import AcmeError
from certctl.domain.serials import canonical_serial, parse_serial_hex
from certctl.ra.context import RAContext
from certctl.ra.revocation_feed import FeedFollower
from certctl.revocation import (
    CERT_ID_HASHES,
    MAX_REQUEST_OCTETS,
    CertStatusRecord,
    OCSPCache,
    OCSPQuery,
    OCSPRequestError,
    RevocationReason,
    RevokedEntry,
    build_crl,
    build_response,
    issue_responder_certificate,
    needs_rotation,
    parse_request,
    query_for_serial,
    unsigned_error,
)
from certctl.storage import inventory, revocations
from certctl.storage.revocations import CrlState, Revocation

log = logging.getLogger(__name__)

CRL_PATH = "/.well-known/pki/crl/{issuer_id}"
OCSP_PATH = "/.well-known/pki/ocsp/{issuer_id}"

CRL_MIN_LIFETIME = timedelta(hours=24)
CRL_MAX_LIFETIME = timedelta(days=10)  # CA/B BR §4.9.7: nextUpdate at most 10 days out
OCSP_LIFETIME = timedelta(hours=24)
# How stale a process may be about revocations made elsewhere, and about the stored CRL.
FEED_POLL_SECONDS = 1.0
CRL_RECHECK_SECONDS = 1.0
# HTTP caches (RFC 5019 §6.2) may keep a response this long, never past its nextUpdate.
HTTP_MAX_AGE = timedelta(minutes=5)
# A pre-signed OCSP response has at least half its validity left (the cache's rule).
_CACHED_MAX_AGE = int(min(HTTP_MAX_AGE, OCSP_LIFETIME / 2).total_seconds())
# Revocations from before a process started that its first CRL must be seen to list.
STARTUP_RECHECK = 100

MALFORMED, UNAUTHORIZED = "malformed", "unauthorized"
# RFC 5019 §2.1.1 keeps requests to about 100 octets; the parser refuses more than this.
MAX_OCSP_REQUEST_BYTES = MAX_REQUEST_OCTETS
_ERRORS = {
    MALFORMED: OCSPResponseStatus.MALFORMED_REQUEST,
    UNAUTHORIZED: OCSPResponseStatus.UNAUTHORIZED,
    "internal": OCSPResponseStatus.INTERNAL_ERROR,
}


class UnknownIssuerError(LookupError):
    """No issuing CA with this id: the front end answers 404."""


def crl_url(base_url: str, issuer_id: str) -> str:
    return base_url.rstrip("/") + CRL_PATH.format(issuer_id=issuer_id)


def ocsp_url(base_url: str, issuer_id: str) -> str:
    return base_url.rstrip("/") + OCSP_PATH.format(issuer_id=issuer_id)


def crl_lifetime(interval: timedelta) -> timedelta:
    return min(max(2 * interval, CRL_MIN_LIFETIME), CRL_MAX_LIFETIME)


def refresh_tick(interval: timedelta) -> float:
    """Seconds between looks of the periodic CRL job: a tenth of the interval, 1 s to
    1 min, so a CRL is re-signed at most a minute after it is due."""
    return min(max(interval.total_seconds() / 10, 1.0), 60.0)


@dataclass(frozen=True)
class PublishedCrl:
    """One issuer's current CRL as served: DER and what the HTTP layer needs about it."""

    issuer_id: str
    number: int
    this_update: datetime
    next_update: datetime
    der: bytes
    entries: int
    idp_url: str | None

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.der).hexdigest()[:32] + '"'

    def max_age(self, now: datetime) -> int:
        return _max_age(now, self.next_update)


@dataclass(frozen=True)
class OcspAnswer:
    """A DER OCSPResponse, what it says (good, revoked, unauthorized, malformed), and how
    long HTTP caches may keep it (0: not at all, e.g. a nonce was echoed)."""

    der: bytes
    status: str
    max_age: int


@dataclass(frozen=True)
class _HeldCrl:
    crl: PublishedCrl
    checked: float  # ticker value of the last look at the store


class PkiService:
    """CRLs and OCSP answers for every issuer of ``ca``; thread-safe."""

    def __init__(
        self,
        ctx: RAContext,
        ca: LocalCA,
        *,
        base_url: str,
        crl_interval: timedelta,
        ticker: Callable[[], float] = time.monotonic,
        on_crl_generated: Callable[[str], None] | None = None,
        cache: OCSPCache | None = None,
    ) -> None:
        self._ctx = ctx
        self._ca = ca
        self.base_url = base_url.rstrip("/")
        self.crl_interval = crl_interval
        self.crl_lifetime = crl_lifetime(crl_interval)
        self._ticker = ticker
        self._on_crl_generated = on_crl_generated
        self.cache = cache if cache is not None else OCSPCache()
        self._feed = FeedFollower(ctx.db, ticker=ticker)
        self._polled = float("-inf")
        self._crls: dict[str, _HeldCrl] = {}
        self._crl_lock = threading.Lock()  # one CRL generation at a time per process
        # Serials seen revoked (feed, hook) that the CRL held or stored may not list yet;
        # seeded with the feed's tail so a revocation made while no server ran (the
        # command line) is not missed after a start.
        self._pending: dict[str, set[int]] = {issuer_id: set() for issuer_id in ca.issuers}
        self._pending_lock = threading.Lock()
        self._add_pending(self._feed.recent(STARTUP_RECHECK))
        self._responders: dict[str, tuple[x509.Certificate, PrivateKey]] = {}
        self._responder_lock = threading.Lock()
        # Per issuer and CertID hash: (issuerNameHash, issuerKeyHash), RFC 6960 §4.1.1.
        self._cert_ids = {
            (issuer.id, name): _cert_id(issuer, name)
            for issuer in ca.issuers.values()
            for name in CERT_ID_HASHES
        }

    # -- URLs -----------------------------------------------------------------------------
    def crl_url(self, issuer_id: str) -> str | None:
        return crl_url(self.base_url, issuer_id) if self.base_url else None

    # -- CRLs (RFC 5280 §5) ---------------------------------------------------------------
    def current_crl(self, issuer_id: str) -> PublishedCrl:
        """The CRL to serve: the stored one while it is current, else a new one."""
        self._issuer(issuer_id)
        self.poll_feed()
        held = self._crls.get(issuer_id)
        if held is not None and self._fresh(held):
            return held.crl
        return self._refresh(issuer_id, max_age=None)

    def refresh_crls(self) -> list[PublishedCrl]:
        """The periodic job: regenerate each issuer's CRL that is a generation interval
        old (by any process) or otherwise due. With several replicas the first to look
        regenerates; the others find it fresh."""
        self.poll_feed()
        return [self._refresh(i, max_age=self.crl_interval) for i in self._ca.issuers]

    def generate_crl(self, issuer_id: str) -> PublishedCrl:
        """Sign and store a new CRL now. Its number is one above the stored one, taken in
        the transaction that stores it; if another process stored a higher number
        meanwhile (only possible for the very first CRL on PostgreSQL), that one is
        returned instead: numbers never repeat and never go back (RFC 5280 §5.2.3)."""
        issuer = self._issuer(issuer_id)
        now = self._ctx.clock()
        next_update = now + self.crl_lifetime
        idp = self.crl_url(issuer_id)
        with self._ctx.db.write() as conn:
            number = revocations.next_crl_number(conn, issuer_id)
            rows = revocations.revoked_entries(conn, issuer_id, now - self.crl_lifetime)
            entries = [RevokedEntry(int(s, 16), at, _reason(code)) for s, at, code in rows]
            der = issuer.sign_revocation(
                lambda cert, key: build_crl(
                    issuer_cert=cert,
                    issuer_key=key,
                    crl_number=number,
                    this_update=now,
                    next_update=next_update,
                    entries=entries,
                    idp_url=idp,
                )
            )
            state = CrlState(issuer_id, number, now, next_update, der)
            stored = revocations.store_crl(conn, state)
        if not stored:
            with self._ctx.db.read() as conn:
                latest = revocations.get_crl(conn, issuer_id)
            if latest is None:  # pragma: no cover - store_crl refuses only behind a row
                raise RuntimeError("CRL state vanished")
            return _published(latest)
        if self._on_crl_generated is not None:
            self._on_crl_generated(issuer_id)
        return PublishedCrl(issuer_id, number, now, next_update, der, len(entries), idp)

    def _refresh(
        self, issuer_id: str, *, max_age: timedelta | None, force: bool = False
    ) -> PublishedCrl:
        with self._crl_lock:
            held = self._crls.get(issuer_id)
            if not force and max_age is None and held is not None and self._fresh(held):
                return held.crl  # another thread refreshed it while we waited
            # Every pending serial was committed before we saw it, so a CRL that lists
            # them all, or one generated from here on, covers them.
            with self._pending_lock:
                pending = set(self._pending[issuer_id])
            now = self._ctx.clock()
            crl = None if force else self._stored(issuer_id, held)
            if crl is None or not self._is_current(crl, now, max_age) or _lacks(crl, pending):
                crl = self.generate_crl(issuer_id)
            self._crls[issuer_id] = _HeldCrl(crl, self._ticker())
            with self._pending_lock:
                self._pending[issuer_id] -= pending
            return crl

    def _fresh(self, held: _HeldCrl) -> bool:
        """May ``held`` be served without looking at the store?"""
        return (
            self._ticker() - held.checked < CRL_RECHECK_SECONDS
            and not self._pending[held.crl.issuer_id]
            and self._is_current(held.crl, self._ctx.clock(), None)
        )

    def _stored(self, issuer_id: str, held: _HeldCrl | None) -> PublishedCrl | None:
        """The stored CRL, read in full only when its number moved since ``held``."""
        with self._ctx.db.read() as conn:
            number = revocations.crl_number(conn, issuer_id)
            if held is not None and number == held.crl.number:
                return held.crl
            state = revocations.get_crl(conn, issuer_id)
        return _published(state) if state is not None else None

    def _is_current(self, crl: PublishedCrl, now: datetime, max_age: timedelta | None) -> bool:
        if crl.idp_url != self.crl_url(crl.issuer_id):
            return False  # made with another base URL (a mis-set CLI): leaves name ours
        if max_age is not None and now - crl.this_update >= max_age:
            return False
        return now < crl.this_update + (crl.next_update - crl.this_update) / 2

    # -- OCSP (RFC 6960, RFC 5019) --------------------------------------------------------
    def answer(self, issuer_id: str, request_der: bytes, *, nonce_allowed: bool) -> OcspAnswer:
        """The answer to a DER OCSPRequest sent to issuer ``issuer_id``'s responder.

        ``nonce_allowed`` False (GET, where HTTP caches share answers) ignores a request
        nonce and answers from the pre-signed cache (RFC 5019 §4).
        """
        issuer = self._issuer(issuer_id)
        try:
            query = parse_request(request_der)
        except OCSPRequestError:
            return ocsp_error(MALFORMED)
        if not nonce_allowed:
            query = replace(query, nonce=None)
        return self._answer(issuer, query)

    def answer_serial(self, issuer_id: str, serial_hex: str) -> OcspAnswer:
        """The answer for a serial given in hex (``GET .../ocsp/<issuer>/<serial>``), as to
        a SHA-1 CertID request without nonce."""
        issuer = self._issuer(issuer_id)
        try:
            serial = parse_serial_hex(serial_hex)
        except AcmeError:
            return ocsp_error(MALFORMED)
        return self._answer(issuer, query_for_serial(issuer.certificate, serial))

    def check_issuer(self, issuer_id: str) -> None:
        """``UnknownIssuerError`` unless ``issuer_id`` is one of ours."""
        self._issuer(issuer_id)

    def _answer(self, issuer: Issuer, query: OCSPQuery) -> OcspAnswer:
        expected = self._cert_ids[(issuer.id, query.hash_algorithm)]
        if (query.issuer_name_hash, query.issuer_key_hash) != expected:
            # RFC 6960 §2.3: a CertID naming another CA is not ours to answer.
            return ocsp_error(UNAUTHORIZED)
        self.poll_feed()
        now = self._ctx.clock()
        key = _cache_key(issuer.id, query.hash_algorithm)
        if query.nonce is None:
            hit = self.cache.get(key, query.serial, now)
            if hit is not None:
                return OcspAnswer(hit, _status_of(hit), _CACHED_MAX_AGE)
        version = self.cache.version(key, query.serial)
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
        )
        return OcspAnswer(der, record.status, _max_age(now, now + OCSP_LIFETIME))

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
            reason=_reason(version.revocation_reason),
        )

    def _responder(self, issuer_id: str, now: datetime) -> tuple[x509.Certificate, PrivateKey]:
        """The delegated responder (RFC 6960 §4.2.2.2), shared through the data directory
        by every process, re-issued when ``needs_rotation`` says so."""
        held = self._responders.get(issuer_id)
        if held is not None and not needs_rotation(held[0], now):
            return held
        with self._responder_lock:
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

    # -- revocations ----------------------------------------------------------------------
    def on_revoked(self, issuer_id: str, serial_hex: str) -> None:
        """The RevocationHook of this process (after commit): forget the serial's OCSP
        answers and publish a CRL that lists it, now."""
        if issuer_id not in self._ca.issuers:
            return
        self._forget(issuer_id, int(serial_hex, 16))
        self._refresh(issuer_id, max_age=None, force=True)

    def poll_feed(self, *, force: bool = False) -> int:
        """Apply revocations made elsewhere: at most once per FEED_POLL_SECONDS."""
        tick = self._ticker()
        if not force and tick - self._polled < FEED_POLL_SECONDS:
            return 0
        self._polled = tick
        rows = self._feed.poll()
        for row in rows:
            self._forget(row.issuer_id, int(row.serial, 16))
        self._add_pending(rows)
        return len(rows)

    def _forget(self, issuer_id: str, serial: int) -> None:
        for name in CERT_ID_HASHES:
            self.cache.invalidate(_cache_key(issuer_id, name), serial)

    def _add_pending(self, rows: Iterable[Revocation]) -> None:
        with self._pending_lock:
            for row in rows:
                if row.issuer_id in self._pending:
                    self._pending[row.issuer_id].add(int(row.serial, 16))

    def _issuer(self, issuer_id: str) -> Issuer:
        try:
            return self._ca.issuers[issuer_id]
        except KeyError:
            raise UnknownIssuerError(issuer_id) from None


def ocsp_error(kind: str) -> OcspAnswer:
    """An unsigned error answer (RFC 6960 §2.3): ``malformed``, ``unauthorized`` or
    ``internal``; never cached."""
    return OcspAnswer(unsigned_error(_ERRORS[kind]), kind, 0)


def _cert_id(issuer: Issuer, hash_name: str) -> tuple[bytes, bytes]:
    query = query_for_serial(issuer.certificate, 1, hash_name)
    return query.issuer_name_hash, query.issuer_key_hash


def _cache_key(issuer_id: str, hash_name: str) -> str:
    # A response repeats the request's CertID: one cached answer per hash algorithm.
    return f"{issuer_id}/{hash_name}"


def _reason(code: int | None) -> RevocationReason | None:
    """The stored reason code as a CRL/OCSP reason; None (say nothing) for unspecified,
    unknown codes and removeFromCRL, which only a delta CRL may carry (RFC 5280 §5.3.1)."""
    try:
        reason = RevocationReason(code) if code is not None else None
    except ValueError:
        return None
    return None if reason is RevocationReason.REMOVE_FROM_CRL else reason


def _status_of(der: bytes) -> str:
    return ocsp.load_der_ocsp_response(der).certificate_status.name.lower()


def _max_age(now: datetime, next_update: datetime) -> int:
    return max(0, int(min(HTTP_MAX_AGE, next_update - now).total_seconds()))


def _published(state: CrlState) -> PublishedCrl:
    crl = x509.load_der_x509_crl(state.der)
    try:
        idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
        names = idp.full_name or []
        idp_url = next(
            (n.value for n in names if isinstance(n, x509.UniformResourceIdentifier)), None
        )
    except x509.ExtensionNotFound:
        idp_url = None
    return PublishedCrl(
        state.issuer_id,
        state.crl_number,
        state.this_update,
        state.next_update,
        state.der,
        len(crl),
        idp_url,
    )


def _lacks(crl: PublishedCrl, serials: set[int]) -> bool:
    """Does ``crl`` miss one of ``serials`` (revoked since it was read)?"""
    if not serials:
        return False
    parsed = x509.load_der_x509_crl(crl.der)
    return any(parsed.get_revoked_certificate_by_serial_number(s) is None for s in serials)
