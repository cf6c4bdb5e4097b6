"""The DNS seam of the VA: a ``Resolver`` protocol and its dnspython implementation.

Every lookup the VA makes (addresses for http-01 and tls-alpn-01, TXT for dns-01, CAA)
goes through one ``Resolver``. The dnspython one sends each query to the configured
servers (CERTCTL_ACME_SERVER_DNS01_RESOLVER) or, when none are configured, to the servers
of /etc/resolv.conf; it never consults /etc/hosts, so a validation target cannot be
redirected by local host files. Tests inject a fake ``Resolver`` instead.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from typing import Any, Protocol

import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from certctl.domain.errors import AcmeError, ProblemType
from certctl.va.model import IPAddress


@dataclass(frozen=True)
class CAARecord:
    """One CAA resource record (RFC 8659 §4.1): flags, tag, value."""

    flags: int
    tag: str
    value: str

    @property
    def critical(self) -> bool:
        # RFC 8659 §4.1: bit 0 (0x80) of the flags octet is the Issuer Critical Flag.
        return bool(self.flags & 0x80)


class Resolver(Protocol):
    """Asynchronous DNS lookups; failures are ``AcmeError(ProblemType.DNS, ...)``."""

    async def resolve_addresses(self, name: str) -> list[IPAddress]:
        """AAAA then A addresses of ``name``, in answer order; never empty."""
        ...

    async def txt(self, name: str) -> list[str]:
        """TXT records of ``name`` (CNAMEs followed), each record's strings concatenated."""
        ...

    async def caa(self, name: str) -> list[CAARecord]:
        """CAA records at ``name`` (CNAMEs followed); ``[]`` when there are none."""
        ...


class DnsPythonResolver:
    """``Resolver`` over dnspython, pinned to ``servers`` (or the system configuration)."""

    def __init__(self, servers: tuple[tuple[str, int], ...] = (), *, lifetime: float = 5.0):
        try:
            resolver = dns.asyncresolver.Resolver(configure=not servers)
        except dns.resolver.NoResolverConfiguration:
            # No /etc/resolv.conf: every lookup fails as a DNS problem rather than at start-up.
            resolver = dns.asyncresolver.Resolver(configure=False)
        if servers:
            # Do53Nameserver carries the port per server, so "host:port" lists work.
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(str(ipaddress.ip_address(host)), port)
                for host, port in servers
            ]
        resolver.cache = None  # each validation sees the DNS as it is now
        resolver.lifetime = lifetime
        resolver.timeout = min(resolver.timeout, lifetime)
        self._resolver = resolver

    async def resolve_addresses(self, name: str) -> list[IPAddress]:
        results = await asyncio.gather(
            self._query(name, "AAAA", missing_ok=True),
            self._query(name, "A", missing_ok=True),
            return_exceptions=True,
        )
        addresses: list[IPAddress] = []
        errors: list[AcmeError] = []
        for result in results:
            if isinstance(result, AcmeError):
                errors.append(result)
            elif isinstance(result, BaseException):
                raise result
            else:
                addresses.extend(ipaddress.ip_address(rdata.to_text()) for rdata in result)
        # One family failing while the other answers is common (broken AAAA); use what came.
        if addresses:
            return addresses
        if errors:
            raise errors[0]
        raise _dns_error(f"no A or AAAA records found for {name}")

    async def txt(self, name: str) -> list[str]:
        answer = await self._query(name, "TXT", missing_ok=False)
        # RFC 1035 §3.3.14 / RFC 8555 §8.4: one record may hold several character-strings;
        # they form one value when concatenated.
        return [b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer]

    async def caa(self, name: str) -> list[CAARecord]:
        answer = await self._query(name, "CAA", missing_ok=True)
        return [
            CAARecord(
                flags=int(rdata.flags),
                tag=rdata.tag.decode("ascii", "replace"),
                value=rdata.value.decode("utf-8", "replace"),
            )
            for rdata in answer
        ]

    async def _query(self, name: str, rdtype: str, *, missing_ok: bool) -> list[Any]:
        """Resolve one RRset; absence is ``[]`` when ``missing_ok``, else a DNS error."""
        if not self._resolver.nameservers:
            raise _dns_error("no DNS resolver is configured")
        try:
            qname = dns.name.from_text(name)  # absolute: no search list (RFC 8555 §8.4)
            answer = await self._resolver.resolve(qname, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer) as exc:
            if missing_ok:
                return []
            what = "NXDOMAIN" if isinstance(exc, dns.resolver.NXDOMAIN) else "no records"
            raise _dns_error(f"{what} looking up {rdtype} for {name}") from None
        except dns.resolver.NoNameservers:
            raise _dns_error(f"SERVFAIL looking up {rdtype} for {name}") from None
        except dns.exception.Timeout:
            raise _dns_error(f"query timed out looking up {rdtype} for {name}") from None
        except dns.exception.DNSException as exc:
            kind = exc.__class__.__name__
            raise _dns_error(f"DNS problem ({kind}) looking up {rdtype} for {name}") from None
        return list(answer)


def _dns_error(detail: str) -> AcmeError:
    return AcmeError(ProblemType.DNS, detail)
