"""One CRL per issuer (RFC 5280 §5): signed, stored, and the current one held per process.

Timing (docs/acme-server.md): thisUpdate now, nextUpdate now + ``crl_lifetime(interval)``,
twice the generation interval, at least 24 h, at most 10 days (CA/B BR §4.9.7). A CRL is
re-signed every interval, when half its validity has passed, when it names another URL
than ours, and when a revocation it lacks is seen. Entries stay until a CRL issued after
the certificate's expiry has carried them (RFC 5280 §3.3): one CRL lifetime past notAfter.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509

from certctl.ca import Issuer
from certctl.ra.context import RAContext
from certctl.revocation import RevocationReason, RevokedEntry, build_crl
from certctl.storage import revocations
from certctl.storage.revocations import CrlState

CRL_MIN_LIFETIME = timedelta(hours=24)
CRL_MAX_LIFETIME = timedelta(days=10)  # CA/B BR §4.9.7: nextUpdate at most 10 days out
# How long a process serves the CRL it holds before looking at the stored one again.
CRL_RECHECK_SECONDS = 1.0
# HTTP caches (RFC 5019 §6.2) may keep a response this long, never past its nextUpdate.
HTTP_MAX_AGE = timedelta(minutes=5)


def crl_lifetime(interval: timedelta) -> timedelta:
    return min(max(2 * interval, CRL_MIN_LIFETIME), CRL_MAX_LIFETIME)


def max_age(now: datetime, next_update: datetime) -> int:
    """Seconds an HTTP cache may keep an answer: at most HTTP_MAX_AGE, never past
    ``next_update``."""
    return max(0, int(min(HTTP_MAX_AGE, next_update - now).total_seconds()))


def stored_reason(code: int | None) -> RevocationReason | None:
    """The stored reason code as a CRL/OCSP reason; None (say nothing) for unknown codes
    and removeFromCRL, which only a delta CRL may carry (RFC 5280 §5.3.1)."""
    try:
        reason = RevocationReason(code) if code is not None else None
    except ValueError:
        return None
    return None if reason is RevocationReason.REMOVE_FROM_CRL else reason


@dataclass(frozen=True)
class PublishedCrl:
    """One issuer's current CRL as served: DER and what the HTTP layer needs about it."""

    issuer_id: str
    number: int
    this_update: datetime  # when it was signed (to the microsecond; the DER has seconds)
    next_update: datetime
    der: bytes
    entries: int
    idp_url: str | None

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.der).hexdigest()[:32] + '"'

    def max_age(self, now: datetime) -> int:
        return max_age(now, self.next_update)


@dataclass(frozen=True)
class _Held:
    crl: PublishedCrl
    checked: float  # ticker value of the last look at the store


class CrlPublisher:
    """Signs and stores CRLs, and holds each issuer's current one; thread-safe."""

    def __init__(
        self,
        ctx: RAContext,
        *,
        issuer_ids: Iterable[str],
        idp_url: Callable[[str], str | None],
        interval: timedelta,
        ticker: Callable[[], float] = time.monotonic,
        on_generated: Callable[[str], None] | None = None,
    ) -> None:
        self._ctx = ctx
        self._idp_url = idp_url
        self.interval = interval
        self.lifetime = crl_lifetime(interval)
        self._ticker = ticker
        self._on_generated = on_generated
        self._held: dict[str, _Held] = {}
        self._lock = threading.Lock()  # one generation at a time per process
        # Serials seen revoked that the held or stored CRL may not list yet.
        self._pending: dict[str, set[int]] = {issuer_id: set() for issuer_id in issuer_ids}
        self._pending_lock = threading.Lock()

    def add_pending(self, issuer_id: str, serial: int) -> None:
        with self._pending_lock:
            if issuer_id in self._pending:
                self._pending[issuer_id].add(serial)

    def current(self, issuer: Issuer) -> PublishedCrl:
        """The CRL to serve: the one held while fresh, else the stored one while current,
        else a new one."""
        held = self._held.get(issuer.id)
        if held is not None and self._fresh(held):
            return held.crl
        return self.refresh(issuer, max_age=None)

    def refresh(
        self, issuer: Issuer, *, max_age: timedelta | None, force: bool = False
    ) -> PublishedCrl:
        """Look at the stored CRL and sign a new one if it is missing, older than
        ``max_age``, past half its validity, for another URL, or lacking a pending
        revocation (``force``: sign in any case)."""
        with self._lock:
            held = self._held.get(issuer.id)
            if not force and max_age is None and held is not None and self._fresh(held):
                return held.crl  # another thread refreshed it while we waited
            # Every pending serial was committed before we saw it, so a CRL that lists
            # them all, or one signed from here on, covers them.
            with self._pending_lock:
                pending = set(self._pending[issuer.id])
            crl = None if force else self._stored(issuer.id, held)
            now = self._ctx.clock()
            if crl is None or not self._is_current(crl, now, max_age) or _lacks(crl, pending):
                crl = self.generate(issuer)
            self._held[issuer.id] = _Held(crl, self._ticker())
            with self._pending_lock:
                self._pending[issuer.id] -= pending
            return crl

    def generate(self, issuer: Issuer) -> PublishedCrl:
        """Sign and store a new CRL now. Its number is one above the stored one, taken in
        the transaction that stores it; if another process stored a higher number
        meanwhile (only possible for the very first CRL on PostgreSQL), that one is
        returned instead: numbers never repeat and never go back (RFC 5280 §5.2.3)."""
        now = self._ctx.clock()
        next_update = now + self.lifetime
        idp = self._idp_url(issuer.id)
        with self._ctx.db.write() as conn:
            number = revocations.next_crl_number(conn, issuer.id)
            rows = revocations.revoked_entries(conn, issuer.id, now - self.lifetime)
            entries = [RevokedEntry(int(s, 16), at, stored_reason(code)) for s, at, code in rows]
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
            stored = revocations.store_crl(conn, CrlState(issuer.id, number, now, next_update, der))
        if not stored:
            with self._ctx.db.read() as conn:
                latest = revocations.get_crl(conn, issuer.id)
            if latest is None:  # pragma: no cover - store_crl refuses only behind a row
                raise RuntimeError("CRL state vanished")
            return _published(latest)
        if self._on_generated is not None:
            self._on_generated(issuer.id)
        return PublishedCrl(issuer.id, number, now, next_update, der, len(entries), idp)

    def _fresh(self, held: _Held) -> bool:
        """May ``held`` be served without looking at the store?"""
        return (
            self._ticker() - held.checked < CRL_RECHECK_SECONDS
            and not self._pending[held.crl.issuer_id]
            and self._is_current(held.crl, self._ctx.clock(), None)
        )

    def _stored(self, issuer_id: str, held: _Held | None) -> PublishedCrl | None:
        """The stored CRL, read in full only when its number moved since ``held``."""
        with self._ctx.db.read() as conn:
            number = revocations.crl_number(conn, issuer_id)
            if held is not None and number == held.crl.number:
                return held.crl
            state = revocations.get_crl(conn, issuer_id)
        return _published(state) if state is not None else None

    def _is_current(self, crl: PublishedCrl, now: datetime, max_age: timedelta | None) -> bool:
        if crl.idp_url != self._idp_url(crl.issuer_id):
            return False  # made with another base URL (a mis-set CLI): leaves name ours
        if max_age is not None and now - crl.this_update >= max_age:
            return False
        return now < crl.this_update + (crl.next_update - crl.this_update) / 2


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
