"""The SSRF-safe network seam: address policy, resolve-once, pinned connections.

Every outbound connection of the VA goes through ``Network.connect``, which

1. resolves the host ONCE through the injected ``Resolver`` (an IP literal is not looked up),
2. checks EVERY address against the ``AddressPolicy`` and refuses the host if any fails
   (a name that mixes a public and an internal address is refused as a whole), and
3. opens the TCP connection to the checked address object itself: the host handed to
   ``asyncio.open_connection`` is the textual IP, so no second lookup can happen and a
   DNS rebinding answer cannot redirect the socket (cf. CVE-2026-5052 / HCSEC-2026-06,
   the original certctl re-resolving in its dialer).
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from dataclasses import dataclass
from typing import Final

from certctl.domain.errors import AcmeError, ProblemType
from certctl.va.model import IPAddress, IPNetwork
from certctl.va.resolver import Resolver

# Addresses tried per host, in resolver order (AAAA first): Boulder also tries at most one
# fallback, so a name with many addresses cannot multiply our connection attempts.
MAX_ADDRESSES: Final = 2
# Largest response head (status line + headers) or chunk-size line we read.
MAX_LINE_BYTES: Final = 8192

_THIS_NETWORK: Final = ipaddress.IPv4Network("0.0.0.0/8")  # RFC 1122 §3.2.1.3 "this host"
_BROADCAST: Final = ipaddress.IPv4Address("255.255.255.255")
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 §2.1 well-known prefix
_IPV4_TRANSLATED: Final = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 §2.1


@dataclass(frozen=True)
class AddressPolicy:
    """Which addresses the VA may connect to (RFC 1918 and ULA are allowed by default)."""

    allow_loopback: bool = False
    allowed_networks: tuple[IPNetwork, ...] = ()

    def problem(self, ip: IPAddress) -> str | None:
        """Why ``ip`` must not be contacted, or None when it may."""
        effective = _unmapped(ip)
        reason = self._forbidden(effective)
        if reason is not None:
            return reason
        for embedded in _embedded_v4(effective):
            inner = self._forbidden(embedded)
            if inner is not None:
                return f"embeds {embedded}, a {inner}"
        if self.allowed_networks and not any(
            effective.version == net.version and effective in net for net in self.allowed_networks
        ):
            return "address outside the allowed networks"
        return None

    def _forbidden(self, ip: IPAddress) -> str | None:
        if ip.is_loopback:  # 127.0.0.0/8 and ::1
            return None if self.allow_loopback else "loopback address"
        if ip.is_unspecified or (ip.version == 4 and ip in _THIS_NETWORK):
            return "unspecified address"
        if ip.is_link_local:  # 169.254.0.0/16 (cloud metadata) and fe80::/10
            return "link-local address"
        if ip.is_multicast:
            return "multicast address"
        if ip == _BROADCAST:
            return "broadcast address"
        if isinstance(ip, ipaddress.IPv6Address) and (ip.is_site_local or ip in _IPV4_TRANSLATED):
            return "reserved address"
        if isinstance(ip, ipaddress.IPv6Address) and ip in _NAT64:
            return None  # judged by the IPv4 address it embeds (``_embedded_v4``)
        # 240.0.0.0/4; ::/8 (IPv4-compatible, local-use NAT64 64:ff9b:1::/48) and unassigned v6
        if ip.is_reserved:
            return "reserved address"
        return None


def _unmapped(ip: IPAddress) -> IPAddress:
    """``::ffff:a.b.c.d`` is the IPv4 address a.b.c.d on a dual-stack socket (RFC 4291 §2.5.5.2)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def _embedded_v4(ip: IPAddress) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address routes to: 6to4 (RFC 3056), Teredo (RFC 4380), NAT64."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def parse_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address, or None; scoped IPv6 (``fe80::1%eth0``) is not an address."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return None
    return ip


def tls_client_context(alpn: tuple[str, ...] = ()) -> ssl.SSLContext:
    """A client context that does not verify the peer but never speaks below TLS 1.2.

    RFC 8737 §4 and the 2022 Let's Encrypt incident (TLS < 1.2 negotiated): the floor is
    set explicitly, not left to the OpenSSL configuration.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    # RFC 8737 §3: the proof is the acmeIdentifier extension, not the chain; https redirects
    # of http-01 are followed without chain checks as Boulder and Pebble do.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


@dataclass(frozen=True)
class Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    address: IPAddress
    port: int

    def close(self) -> None:
        # Abort: no graceful TLS shutdown that a hostile peer could stall.
        self.writer.transport.abort()


@dataclass(frozen=True)
class Network:
    """Resolver + policy: the only way the validators reach a target."""

    resolver: Resolver
    policy: AddressPolicy
    connect_timeout: float

    async def checked_addresses(self, host: str, records: list[str]) -> list[IPAddress]:
        """Resolve ``host`` once and check every address; IP literals are used as they are."""
        literal = parse_ip(host)
        addresses = (
            [literal] if literal is not None else await self.resolver.resolve_addresses(host)
        )
        if not addresses:  # the protocol says never empty; a custom resolver may disagree
            raise AcmeError(ProblemType.DNS, f"no addresses found for {host}")
        if literal is None:
            records.append(f"resolved {host}: {', '.join(map(str, addresses))}")
        for address in addresses:
            reason = self.policy.problem(address)
            if reason is not None:
                raise AcmeError(
                    ProblemType.CONNECTION,
                    f"refusing to connect to {address} for {host}: {reason}",
                )
        return addresses

    async def connect(
        self,
        host: str,
        port: int,
        records: list[str],
        *,
        tls: ssl.SSLContext | None = None,
        server_hostname: str | None = None,
    ) -> Connection:
        """Connect to a checked address of ``host``; fall back once on connection errors."""
        # An IPv4-mapped address was checked as its IPv4 address: connect to exactly that.
        addresses = [_unmapped(a) for a in await self.checked_addresses(host, records)]
        error: AcmeError | None = None
        for address in addresses[:MAX_ADDRESSES]:
            records.append(f"connecting to {_hostport(address, port)}")
            try:
                return await self._open(address, port, tls, server_hostname)
            except AcmeError as exc:
                if exc.type is not ProblemType.CONNECTION:
                    raise
                error = exc
        assert error is not None  # checked_addresses never returns an empty list
        raise error

    async def _open(
        self, address: IPAddress, port: int, tls: ssl.SSLContext | None, sni: str | None
    ) -> Connection:
        where = _hostport(address, port)
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    str(address),  # the checked address: no name, hence no second lookup
                    port,
                    limit=MAX_LINE_BYTES,
                )
        except TimeoutError:
            raise AcmeError(ProblemType.CONNECTION, f"timeout connecting to {where}") from None
        except ConnectionRefusedError:
            raise AcmeError(ProblemType.CONNECTION, f"connection refused by {where}") from None
        except OSError as exc:
            reason = exc.strerror or exc.__class__.__name__
            raise AcmeError(
                ProblemType.CONNECTION, f"cannot connect to {where}: {reason}"
            ) from None
        connection = Connection(reader, writer, address, port)
        if tls is not None:
            await _start_tls(connection, tls, sni, self.connect_timeout, where)
        return connection


async def _start_tls(
    connection: Connection, tls: ssl.SSLContext, sni: str | None, timeout: float, where: str
) -> None:
    """Upgrade an open TCP connection; any failure from here on is a ``tls`` problem."""
    try:
        async with asyncio.timeout(timeout):
            await connection.writer.start_tls(tls, server_hostname=sni)
    except TimeoutError:
        connection.close()
        raise AcmeError(ProblemType.TLS, f"TLS handshake with {where} timed out") from None
    except (ssl.SSLError, OSError) as exc:
        connection.close()
        reason = getattr(exc, "reason", None) or exc.__class__.__name__
        raise AcmeError(ProblemType.TLS, f"TLS handshake with {where} failed: {reason}") from None


def _hostport(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if address.version == 6 else f"{address}:{port}"


def safe_snippet(data: bytes, limit: int = 32) -> str:
    """At most ``limit`` bytes of what a target sent, quoted and escaped for an error detail."""
    out = "".join(
        chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in data[:limit]
    )
    return f'"{out}"' + ("..." if len(data) > limit else "")
