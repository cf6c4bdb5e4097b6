"""``ValidationAuthority``: the VA's one entry point for the RA.

``validate`` checks one challenge and always returns a ``ValidationResult``: every failure
of the target (DNS, connection, TLS, wrong content) and every malformed request becomes a
typed ``AcmeError`` with a short, user-safe detail; the whole check is bounded by
``VASettings.timeout``. ``submit`` runs ``validate`` in the bounded per-type pool.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Identifier
from certctl.va.caa import check_caa
from certctl.va.dns01 import validate_dns01
from certctl.va.http01 import validate_http01
from certctl.va.model import (
    DNS_01,
    HTTP_01,
    TLS_ALPN_01,
    ValidationRequest,
    ValidationResult,
    VASettings,
)
from certctl.va.net import AddressPolicy, Network, parse_ip
from certctl.va.pool import Callback, PoolStats, ValidationPool
from certctl.va.resolver import DnsPythonResolver, Resolver
from certctl.va.tlsalpn01 import validate_tlsalpn01

log = logging.getLogger(__name__)

# RFC 8555 §8.1: token "." base64url(thumbprint); checked so nothing odd reaches a wire.
_KEY_AUTHORIZATION: Final = re.compile(r"[A-Za-z0-9_-]{1,128}\.[A-Za-z0-9_-]{1,128}")
# What a validation that ran out of time is reported as.
_TIMEOUT_TYPE: Final = {
    HTTP_01: ProblemType.CONNECTION,
    DNS_01: ProblemType.DNS,
    TLS_ALPN_01: ProblemType.CONNECTION,
}


def _utcnow() -> datetime:
    return datetime.now(UTC)


class ValidationAuthority:
    def __init__(
        self,
        settings: VASettings,
        *,
        resolver: Resolver | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        self.settings = settings
        # DNS gives up at half the budget, so a slow resolver is reported as a DNS problem.
        self.resolver: Resolver = resolver or DnsPythonResolver(
            settings.resolvers, lifetime=settings.timeout / 2
        )
        policy = AddressPolicy(settings.allow_loopback, settings.allowed_networks)
        # Each connection attempt gets 40% of the budget, so a black-holed first address
        # (often a broken AAAA) still leaves time for the fallback address.
        self._net = Network(self.resolver, policy, connect_timeout=settings.timeout * 0.4)
        self._clock = clock
        self._pool = ValidationPool(self.validate, settings.concurrency)

    async def validate(self, req: ValidationRequest) -> ValidationResult:
        """Check one challenge; never raises for anything the target or request does."""
        records: list[str] = []
        try:
            async with asyncio.timeout(self.settings.timeout):
                await self._dispatch(req, records)
        except AcmeError as exc:
            error = exc
        except TimeoutError:
            kind = _TIMEOUT_TYPE.get(req.challenge_type, ProblemType.CONNECTION)
            error = AcmeError(kind, f"validation timed out after {self.settings.timeout:g} s")
        except Exception:
            log.exception("unexpected error validating %s", req.challenge_type)
            error = AcmeError(ProblemType.SERVER_INTERNAL, "internal error during validation")
        else:
            return ValidationResult(True, None, tuple(records), self._clock())
        return ValidationResult(False, error, tuple(records), self._clock())

    def submit(self, req: ValidationRequest, callback: Callback) -> bool:
        """Validate in the background (thread-safe); False once shutting down."""
        return self._pool.submit(req, callback)

    async def drain(self, timeout: float) -> bool:
        """Stop accepting work and wait for running validations (see ``ValidationPool``)."""
        return await self._pool.drain(timeout)

    def close(self, timeout: float = 5.0) -> bool:
        return self._pool.close(timeout)

    @property
    def stats(self) -> PoolStats:
        return self._pool.stats

    async def check_caa(
        self,
        identifier: Identifier,
        *,
        ca_identities: tuple[str, ...],
        account_uris: tuple[str, ...],
        method: str,
    ) -> AcmeError | None:
        """RFC 8659/8657 CAA for one identifier through the VA's resolver, time-bounded."""
        if identifier.type != "dns":
            return None
        try:
            async with asyncio.timeout(self.settings.timeout):
                return await check_caa(
                    self.resolver,
                    identifier.value,
                    ca_identities=ca_identities,
                    account_uris=account_uris,
                    method=method,
                    wildcard=identifier.is_wildcard,
                )
        except TimeoutError:
            return AcmeError(ProblemType.CAA, "CAA lookup timed out, so issuance is refused")

    async def _dispatch(self, req: ValidationRequest, records: list[str]) -> None:
        _check_request(req)
        if req.challenge_type == HTTP_01:
            await validate_http01(req, self._net, self.settings, records)
        elif req.challenge_type == DNS_01:
            await validate_dns01(req, self.resolver, records)
        else:
            await validate_tlsalpn01(req, self._net, self.settings, records)


def _check_request(req: ValidationRequest) -> None:
    """Refuse requests no challenge could satisfy (the RA should never send them)."""
    kind, ident = req.challenge_type, req.identifier
    if kind not in _TIMEOUT_TYPE:
        raise _malformed(f"unsupported challenge type {kind[:32]!r}")
    if ident.type not in ("dns", "ip"):
        raise _malformed(f"unsupported identifier type {ident.type[:16]!r}")
    if ident.type == "ip" and parse_ip(ident.value) is None:
        raise _malformed("the ip identifier is not an IP address")
    # RFC 8738 §7: dns-01 cannot prove an IP; RFC 8555 §7.1.3: wildcards need dns-01.
    if ident.type == "ip" and kind == DNS_01:
        raise _malformed("dns-01 cannot validate an ip identifier")
    if ident.is_wildcard and kind != DNS_01:
        raise _malformed(f"{kind} cannot validate a wildcard name")
    if _KEY_AUTHORIZATION.fullmatch(req.key_authorization) is None or not (
        req.key_authorization.startswith(req.token + ".")
    ):
        raise _malformed("the key authorization does not belong to the token")


def _malformed(detail: str) -> AcmeError:
    return AcmeError(ProblemType.MALFORMED, detail)
