"""Test doubles for the VA: a fake resolver, loopback TCP/HTTP/TLS responders, a DNS server.

Everything listens on 127.0.0.0/8 only.
"""

from __future__ import annotations

import asyncio
import datetime
import functools
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Identifier
from certctl.va import CAARecord, ValidationRequest
from certctl.va.model import IPAddress

P = ParamSpec("P")

TOKEN = "evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA"
THUMBPRINT = "9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI"
OTHER_THUMBPRINT = "nP1qzpXGymHBrUEepNY9HCsQk7K8KhOypzEY1Qv7AhY"
KEY_AUTH = f"{TOKEN}.{THUMBPRINT}"
OTHER_KEY_AUTH = f"{TOKEN}.{OTHER_THUMBPRINT}"  # the same token, another account's key


def async_test(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an ``async def`` test in a fresh event loop."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(fn(*args, **kwargs))

    return wrapper


def request(
    kind: str, value: str, *, ident_type: str = "dns", key_auth: str = KEY_AUTH
) -> ValidationRequest:
    return ValidationRequest(kind, Identifier(ident_type, value), TOKEN, key_auth)


# --- fake resolver --------------------------------------------------------------------


@dataclass
class FakeResolver:
    """Answers from dicts; a list of answer lists is served one per call (DNS rebinding)."""

    addresses: dict[str, list[list[str]]] = field(default_factory=dict)
    txt_records: dict[str, list[str]] = field(default_factory=dict)
    caa_records: dict[str, list[CAARecord]] = field(default_factory=dict)
    failures: dict[str, AcmeError] = field(default_factory=dict)
    delay: float = 0.0
    calls: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def with_hosts(cls, **hosts: str | Sequence[str]) -> FakeResolver:
        """``FakeResolver.with_hosts(**{"a.example": "127.0.0.1"})``: one fixed answer."""
        return cls(
            addresses={k: [[v] if isinstance(v, str) else list(v)] for k, v in hosts.items()}
        )

    async def _call(self, kind: str, name: str) -> None:
        self.calls.append((kind, name))
        if self.delay:
            await asyncio.sleep(self.delay)
        if name in self.failures:
            raise self.failures[name]

    async def resolve_addresses(self, name: str) -> list[IPAddress]:
        await self._call("addr", name)
        answers = self.addresses.get(name)
        if not answers:
            raise AcmeError(ProblemType.DNS, f"NXDOMAIN looking up A for {name}")
        seen = sum(1 for kind, n in self.calls if kind == "addr" and n == name)
        chosen = answers[min(seen, len(answers)) - 1]
        return [ipaddress.ip_address(a) for a in chosen]

    async def txt(self, name: str) -> list[str]:
        await self._call("txt", name)
        if name not in self.txt_records:
            raise AcmeError(ProblemType.DNS, f"NXDOMAIN looking up TXT for {name}")
        return list(self.txt_records[name])

    async def caa(self, name: str) -> list[CAARecord]:
        await self._call("caa", name)
        return list(self.caa_records.get(name, []))


# --- TCP / HTTP responders ------------------------------------------------------------

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class TcpServer:
    """An asyncio server on loopback that records who connected; cleans up every task."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.handler, self.host, self.port, self.tls = handler, host, port, tls
        self.peers: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> TcpServer:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.peers.append(writer.get_extra_info("peername")[0])
        try:
            await self.handler(reader, writer)
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            self._tasks.discard(task)


def http_response(
    status: int = 200, body: bytes = b"", headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    head = [
        f"HTTP/1.1 {status} X",
        f"Content-Length: {len(body)}",
        *(f"{k}: {v}" for k, v in headers),
    ]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class HttpLog:
    requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Host header)


def http_handler(respond: Callable[[str], bytes], log: HttpLog | None = None) -> Handler:
    """Read one request, answer ``respond(path)``, close."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        path = head[0].split(" ")[1]
        host = next(
            (line.split(":", 1)[1].strip() for line in head if line.lower().startswith("host:")), ""
        )
        if log is not None:
            log.requests.append((path, host))
        writer.write(respond(path))
        await writer.drain()

    return handle


def serve_key_auth(key_auth: str = KEY_AUTH, log: HttpLog | None = None) -> Handler:
    return http_handler(lambda path: http_response(200, key_auth.encode()), log)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept and never answer."""
    await asyncio.sleep(3600)


# --- certificates ---------------------------------------------------------------------


def self_signed(
    tmp_path: Path,
    sans: Sequence[x509.GeneralName],
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    name: str = "cert",
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "acme validation")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    cert = builder.sign(key, hashes.SHA256())
    cert_path, key_path = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(cert: tuple[Path, Path], alpn: Sequence[str] = ()) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    return ctx


# --- a tiny authoritative DNS server on loopback ---------------------------------------


@dataclass
class Zone:
    """name -> [(type, rdata text)]; ``cnames`` alias names; special behaviour per name."""

    records: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    cnames: dict[str, str] = field(default_factory=dict)
    servfail: set[str] = field(default_factory=set)
    drop: set[str] = field(default_factory=set)

    def answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        rdtype = dns.rdatatype.to_text(question.rdtype)
        if name in self.drop:
            return None
        response = dns.message.make_response(query)
        if name in self.servfail:
            response.set_rcode(dns.rcode.SERVFAIL)
            return response
        if name in self.cnames:  # RFC 1034 §3.6.2: the alias and the target's records
            target = self.cnames[name]
            response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", "CNAME", target + "."))
            name = target
        if name not in self.records:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        rdatas = [text for kind, text in self.records[name] if kind == rdtype]
        if rdatas:
            response.answer.append(dns.rrset.from_text(name + ".", 60, "IN", rdtype, *rdatas))
        return response


class DnsServer(asyncio.DatagramProtocol):
    """UDP DNS on 127.0.0.1 answering from a ``Zone``; ``queries`` records what was asked."""

    def __init__(self, zone: Zone) -> None:
        self.zone = zone
        self.queries: list[tuple[str, str]] = []
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def __aenter__(self) -> DnsServer:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._transport is not None
        self._transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        self.queries.append(
            (question.name.to_text(omit_final_dot=True), dns.rdatatype.to_text(question.rdtype))
        )
        response = self.zone.answer(query)
        if response is not None and self._transport is not None:
            self._transport.sendto(response.to_wire(), addr)
