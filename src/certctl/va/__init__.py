"""Validation authority: http-01, dns-01, tls-alpn-01 and CAA, behind SSRF-safe seams.

Imports only ``certctl.domain``, ``certctl.acme``, the standard library, cryptography and
dnspython. The RA builds one ``ValidationAuthority`` and calls ``submit`` (or ``validate``).
"""

from certctl.va.authority import ValidationAuthority
from certctl.va.caa import check_caa
from certctl.va.dns01 import dns01_digest
from certctl.va.model import (
    CHALLENGE_TYPES,
    DNS_01,
    HTTP_01,
    TLS_ALPN_01,
    ValidationRequest,
    ValidationResult,
    VASettings,
)
from certctl.va.net import AddressPolicy
from certctl.va.pool import PoolStats
from certctl.va.resolver import CAARecord, DnsPythonResolver, Resolver

__all__ = [
    "CHALLENGE_TYPES",
    "DNS_01",
    "HTTP_01",
    "TLS_ALPN_01",
    "AddressPolicy",
    "CAARecord",
    "DnsPythonResolver",
    "PoolStats",
    "Resolver",
    "VASettings",
    "ValidationAuthority",
    "ValidationRequest",
    "ValidationResult",
    "check_caa",
    "dns01_digest",
]
