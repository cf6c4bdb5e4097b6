"""Revocation status for relying parties: one CRL per issuer and the delegated OCSP responder.

The HTTP front (``certctl.pki``) makes one call here per request. ``PkiService`` reads
certificate status from storage, signs through ``certctl.revocation`` with keys it gets
from ``certctl.ca`` and keeps two caches per process: each issuer's current CRL
(``pki_crl``) and pre-signed OCSP answers (``pki_ocsp``). Both follow the revocation feed,
so a revocation anywhere (another worker, another replica, the command line) shows here
within about ``FEED_POLL_SECONDS``; the revoking process itself calls ``on_revoked`` after
commit and shows it at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta

from certctl.ca import Issuer, LocalCA
from certctl.domain.errors import AcmeError
from certctl.domain.serials import parse_serial_hex
from certctl.ra.context import RAContext
from certctl.ra.pki_crl import CrlPublisher, PublishedCrl, crl_lifetime
from certctl.ra.pki_ocsp import (
    MALFORMED,
    MAX_OCSP_REQUEST_BYTES,
    OCSP_LIFETIME,
    OcspAnswer,
    OcspResponder,
    ocsp_error,
)
from certctl.ra.revocation_feed import FeedFollower
from certctl.revocation import OCSPCache, OCSPRequestError, parse_request, query_for_serial

__all__ = [
    "CRL_PATH",
    "MAX_OCSP_REQUEST_BYTES",
    "OCSP_LIFETIME",
    "OCSP_PATH",
    "OcspAnswer",
    "PkiService",
    "PublishedCrl",
    "UnknownIssuerError",
    "crl_lifetime",
    "crl_url",
    "ocsp_error",
    "ocsp_url",
    "refresh_tick",
]

CRL_PATH = "/.well-known/pki/crl/{issuer_id}"
OCSP_PATH = "/.well-known/pki/ocsp/{issuer_id}"
# How stale a process may be about revocations made elsewhere.
FEED_POLL_SECONDS = 1.0
# Revocations from before a process started that its first CRL must be seen to list.
STARTUP_RECHECK = 100


class UnknownIssuerError(LookupError):
    """No issuing CA with this id: the front end answers 404."""


def crl_url(base_url: str, issuer_id: str) -> str:
    return base_url.rstrip("/") + CRL_PATH.format(issuer_id=issuer_id)


def ocsp_url(base_url: str, issuer_id: str) -> str:
    return base_url.rstrip("/") + OCSP_PATH.format(issuer_id=issuer_id)


def refresh_tick(interval: timedelta) -> float:
    """Seconds between looks of the periodic CRL job: a tenth of the interval, 1 s to
    1 min, so a CRL is re-signed at most a minute after it is due."""
    return min(max(interval.total_seconds() / 10, 1.0), 60.0)


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
        self._ca = ca
        self.base_url = base_url.rstrip("/")
        self._ticker = ticker
        self.crls = CrlPublisher(
            ctx,
            issuer_ids=ca.issuers,
            idp_url=self.crl_url,
            interval=crl_interval,
            ticker=ticker,
            on_generated=on_crl_generated,
        )
        self.ocsp = OcspResponder(ctx, ca, cache if cache is not None else OCSPCache())
        self._feed = FeedFollower(ctx.db, ticker=ticker)
        self._polled = float("-inf")
        # A revocation made while no server ran (the command line) must not be missed
        # by the first CRL served after a start.
        for row in self._feed.recent(STARTUP_RECHECK):
            self.crls.add_pending(row.issuer_id, int(row.serial, 16))

    @property
    def crl_interval(self) -> timedelta:
        return self.crls.interval

    @property
    def crl_lifetime(self) -> timedelta:
        return self.crls.lifetime

    @property
    def cache(self) -> OCSPCache:
        return self.ocsp.cache

    def crl_url(self, issuer_id: str) -> str | None:
        """The URL in leaves and in the CRL's IDP; None without a base URL."""
        return crl_url(self.base_url, issuer_id) if self.base_url else None

    def check_issuer(self, issuer_id: str) -> None:
        """``UnknownIssuerError`` unless ``issuer_id`` is one of ours."""
        self._issuer(issuer_id)

    # -- CRLs (RFC 5280 §5) ---------------------------------------------------------------
    def current_crl(self, issuer_id: str) -> PublishedCrl:
        """The CRL to serve: the stored one while it is current, else a new one."""
        issuer = self._issuer(issuer_id)
        self.poll_feed()
        return self.crls.current(issuer)

    def generate_crl(self, issuer_id: str) -> PublishedCrl:
        """Sign and store a new CRL now (``certctl crl generate``)."""
        return self.crls.generate(self._issuer(issuer_id))

    def refresh_crls(self) -> list[PublishedCrl]:
        """The periodic job: re-sign each issuer's CRL that is a generation interval old
        (whoever signed it) or otherwise due. With several processes the first to look
        signs; the others find it fresh."""
        self.poll_feed()
        interval = self.crls.interval
        return [self.crls.refresh(i, max_age=interval) for i in self._ca.issuers.values()]

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
        self.poll_feed()
        return self.ocsp.answer(issuer, query)

    def cached_answer(self, issuer_id: str, request: bytes | str) -> OcspAnswer | None:
        """The pre-signed answer to a GET (a DER request, or a serial in hex), when this
        process holds one and has looked at the revocation feed within FEED_POLL_SECONDS;
        never reads the store, so the event loop may ask. None: ask ``answer`` or
        ``answer_serial``, which also give every error answer."""
        issuer = self._ca.issuers.get(issuer_id)
        if issuer is None or self._ticker() - self._polled >= FEED_POLL_SECONDS:
            return None
        try:
            if isinstance(request, str):
                query = query_for_serial(issuer.certificate, parse_serial_hex(request))
            else:
                query = replace(parse_request(request), nonce=None)
        except (AcmeError, OCSPRequestError):
            return None
        return self.ocsp.cached(issuer, query)

    def answer_serial(self, issuer_id: str, serial_hex: str) -> OcspAnswer:
        """The answer for a serial given in hex (``GET .../ocsp/<issuer>/<serial>``), as to
        a SHA-1 CertID request without nonce."""
        issuer = self._issuer(issuer_id)
        try:
            serial = parse_serial_hex(serial_hex)
        except AcmeError:
            return ocsp_error(MALFORMED)
        self.poll_feed()
        return self.ocsp.answer(issuer, query_for_serial(issuer.certificate, serial))

    # -- revocations ----------------------------------------------------------------------
    def on_revoked(self, issuer_id: str, serial_hex: str) -> None:
        """The RevocationHook of this process (after commit): forget the serial's OCSP
        answers and publish a CRL that lists it, now."""
        issuer = self._ca.issuers.get(issuer_id)
        if issuer is None:
            return
        self.ocsp.forget(issuer_id, int(serial_hex, 16))
        self.crls.refresh(issuer, max_age=None, force=True)

    def poll_feed(self, *, force: bool = False) -> int:
        """Apply revocations made elsewhere: at most once per FEED_POLL_SECONDS."""
        tick = self._ticker()
        if not force and tick - self._polled < FEED_POLL_SECONDS:
            return 0
        self._polled = tick
        rows = self._feed.poll()
        for row in rows:
            serial = int(row.serial, 16)
            self.ocsp.forget(row.issuer_id, serial)
            self.crls.add_pending(row.issuer_id, serial)
        return len(rows)

    def _issuer(self, issuer_id: str) -> Issuer:
        try:
            return self._ca.issuers[issuer_id]
        except KeyError:
            raise UnknownIssuerError(issuer_id) from None
