"""Value objects of the validation authority: settings, requests, results.

Kept apart from the validators so that every module of ``certctl.va`` (and the RA, which
builds requests) can import them without pulling in sockets or DNS.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from certctl.domain.errors import AcmeError
from certctl.domain.model import Identifier

HTTP_01: Final = "http-01"
DNS_01: Final = "dns-01"
TLS_ALPN_01: Final = "tls-alpn-01"
CHALLENGE_TYPES: Final = (HTTP_01, DNS_01, TLS_ALPN_01)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class VASettings:
    """How the VA reaches validation targets. Every default is the safe one."""

    # CERTCTL_ACME_SERVER_DNS01_RESOLVER as (host, port) pairs; () = the system resolver.
    # Every lookup of the VA (A/AAAA, TXT, CAA) goes there, never to /etc/hosts.
    resolvers: tuple[tuple[str, int], ...] = ()
    # RFC 8555 §8.3 / RFC 8737 §3 fix 80 and 443; labs and tests move them.
    http_port: int = 80
    tls_port: int = 443
    # Test/lab only: permits 127.0.0.0/8 and ::1 (nothing else that is always forbidden).
    allow_loopback: bool = False
    # () = any address that is not always forbidden; else only addresses inside these.
    allowed_networks: tuple[IPNetwork, ...] = ()
    # Upper bound of one validation, DNS included, in seconds.
    timeout: float = 10.0
    http01_concurrency: int = 10
    dns01_concurrency: int = 10
    tlsalpn01_concurrency: int = 10

    def __post_init__(self) -> None:
        if self.timeout <= 0:
            raise ValueError("VA timeout must be positive")
        for cap in self.concurrency.values():
            if cap < 1:
                raise ValueError("VA concurrency caps must be at least 1")
        for port in (self.http_port, self.tls_port, *(p for _, p in self.resolvers)):
            if not 0 < port < 65536:
                raise ValueError(f"port {port} out of range")

    @property
    def concurrency(self) -> dict[str, int]:
        return {
            HTTP_01: self.http01_concurrency,
            DNS_01: self.dns01_concurrency,
            TLS_ALPN_01: self.tlsalpn01_concurrency,
        }


@dataclass(frozen=True)
class ValidationRequest:
    """One challenge to check. ``identifier.value`` is normalised; a wildcard arrives as
    ``*.example.com`` (dns-01 only, RFC 8555 §7.1.3)."""

    challenge_type: str
    identifier: Identifier
    token: str
    key_authorization: str


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of one validation. ``error`` is set exactly when ``valid`` is false.

    ``detail_records`` is the audit trail (addresses resolved, URLs fetched, redirects).
    ``validated_at`` is the VA clock when the check finished (RFC 8555 §7.1.6 "validated").
    """

    valid: bool
    error: AcmeError | None
    detail_records: tuple[str, ...] = ()
    validated_at: datetime | None = None
