"""tls-alpn-01 against loopback TLS responders built with cryptography + ssl."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import ssl
import warnings
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Identifier
from certctl.va import ValidationAuthority, ValidationResult, VASettings
from certctl.va.tlsalpn01 import (
    ACME_IDENTIFIER_OID,
    LEGACY_ACME_IDENTIFIER_OID,
    check_certificate,
    sni_name,
)
from tests.unit.va.helpers import (
    KEY_AUTH,
    OTHER_KEY_AUTH,
    FakeResolver,
    TcpServer,
    async_test,
    request,
    self_signed,
    server_context,
    silent,
)

NAME = "alpn.example"
ALPN = "acme-tls/1"


def acme_extension(
    key_auth: str = KEY_AUTH,
    oid: x509.ObjectIdentifier = ACME_IDENTIFIER_OID,
    critical: bool = True,
) -> tuple[x509.ExtensionType, bool]:
    # RFC 8737 §3: extnValue = DER OCTET STRING (04 20) of SHA-256(key authorization).
    value = b"\x04\x20" + hashlib.sha256(key_auth.encode()).digest()
    return x509.UnrecognizedExtension(oid, value), critical


async def read_until_closed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.read()


async def validate_with(
    tls: ssl.SSLContext,
    ident: str = NAME,
    ident_type: str = "dns",
    sni: list[str | None] | None = None,
) -> ValidationResult:
    if sni is not None:
        tls.sni_callback = lambda sock, name, ctx: sni.append(name)
    async with TcpServer(read_until_closed, tls=tls) as server:
        va = ValidationAuthority(
            VASettings(tls_port=server.port, allow_loopback=True, timeout=3.0),
            resolver=FakeResolver.with_hosts(**{NAME: "127.0.0.1"}),
        )
        return await va.validate(request("tls-alpn-01", ident, ident_type=ident_type))


def context_for(
    tmp_path: Path,
    sans: Sequence[x509.GeneralName] = (x509.DNSName(NAME),),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] | None = None,
    alpn: Sequence[str] = (ALPN,),
) -> ssl.SSLContext:
    exts = [acme_extension()] if extensions is None else list(extensions)
    return server_context(self_signed(tmp_path, sans, exts), alpn)


def assert_error(result: ValidationResult, kind: ProblemType, fragment: str) -> None:
    assert not result.valid and result.error is not None
    assert result.error.type is kind, result.error
    assert fragment in result.error.detail, result.error.detail


@async_test
async def test_valid(tmp_path: Path) -> None:
    seen: list[str | None] = []
    result = await validate_with(context_for(tmp_path), sni=seen)
    assert result.valid, result.error
    assert seen == [NAME]  # SNI is the name being validated
    assert any(r.startswith("TLS TLSv1.") and "'acme-tls/1'" in r for r in result.detail_records)


@async_test
async def test_valid_ip_identifier_uses_reverse_dns_sni(tmp_path: Path) -> None:
    seen: list[str | None] = []
    ip = ipaddress.ip_address("127.0.0.1")
    ctx = context_for(tmp_path, sans=[x509.IPAddress(ip)])
    result = await validate_with(ctx, "127.0.0.1", "ip", sni=seen)
    assert result.valid, result.error
    assert seen == ["1.0.0.127.in-addr.arpa"]  # RFC 8738 §6


@async_test
async def test_legacy_oid_is_refused(tmp_path: Path) -> None:
    ctx = context_for(tmp_path, extensions=[acme_extension(oid=LEGACY_ACME_IDENTIFIER_OID)])
    assert_error(await validate_with(ctx), ProblemType.INCORRECT_RESPONSE, "obsolete")


@async_test
async def test_non_critical_extension_is_refused(tmp_path: Path) -> None:
    ctx = context_for(tmp_path, extensions=[acme_extension(critical=False)])
    assert_error(await validate_with(ctx), ProblemType.INCORRECT_RESPONSE, "must be critical")


@async_test
async def test_two_sans_are_refused(tmp_path: Path) -> None:
    ctx = context_for(tmp_path, sans=[x509.DNSName(NAME), x509.DNSName("other.example")])
    assert_error(await validate_with(ctx), ProblemType.INCORRECT_RESPONSE, "exactly one SAN")


@async_test
async def test_wrong_san_is_refused(tmp_path: Path) -> None:
    ctx = context_for(tmp_path, sans=[x509.DNSName("other.example")])
    assert_error(await validate_with(ctx), ProblemType.INCORRECT_RESPONSE, "does not name")


@async_test
async def test_wrong_digest_is_refused(tmp_path: Path) -> None:
    ctx = context_for(tmp_path, extensions=[acme_extension(OTHER_KEY_AUTH)])
    assert_error(await validate_with(ctx), ProblemType.INCORRECT_RESPONSE, "does not match")


@async_test
async def test_no_alpn_is_a_tls_problem(tmp_path: Path) -> None:
    assert_error(await validate_with(context_for(tmp_path, alpn=())), ProblemType.TLS, "ALPN")


@async_test
async def test_other_alpn_is_a_tls_problem(tmp_path: Path) -> None:
    result = await validate_with(context_for(tmp_path, alpn=("http/1.1",)))
    assert_error(result, ProblemType.TLS, "")


@async_test
async def test_server_limited_to_tls_1_1_is_refused(tmp_path: Path) -> None:
    """V3: the validator must not negotiate below TLS 1.2."""
    ctx = context_for(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1/TLSv1_1 are deprecated
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let OpenSSL 3 really offer TLS 1.0/1.1
    assert await _old_tls_is_reachable(ctx), "local OpenSSL cannot speak TLS 1.1"
    assert_error(await validate_with(ctx), ProblemType.TLS, "TLS handshake")


async def _old_tls_is_reachable(server_ctx: ssl.SSLContext) -> bool:
    """Sanity check: a permissive client does handshake with this server at TLS 1.1."""
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.minimum_version = ssl.TLSVersion.TLSv1
    client.set_ciphers("DEFAULT:@SECLEVEL=0")
    async with TcpServer(read_until_closed, tls=server_ctx) as server:
        _, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=client, server_hostname=NAME
        )
        version = writer.get_extra_info("ssl_object").version()
        writer.transport.abort()
    return bool(version == "TLSv1.1")


@async_test
async def test_plain_tcp_responder_is_a_tls_problem() -> None:
    async def not_tls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        await writer.drain()

    async with TcpServer(not_tls) as server:
        va = ValidationAuthority(
            VASettings(tls_port=server.port, allow_loopback=True, timeout=3.0),
            resolver=FakeResolver.with_hosts(**{NAME: "127.0.0.1"}),
        )
        result = await va.validate(request("tls-alpn-01", NAME))
    assert_error(result, ProblemType.TLS, "TLS handshake")


# --- check_certificate directly ---------------------------------------------------------


def cert_der(
    tmp_path: Path,
    sans: Sequence[x509.GeneralName],
    exts: Sequence[tuple[x509.ExtensionType, bool]],
) -> bytes:
    cert_path, _ = self_signed(tmp_path, sans, exts)
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("sans", "exts", "fragment"),
    [
        ([], [acme_extension()], "no subjectAltName"),
        ([x509.DNSName(NAME)], [], "no acmeIdentifier"),
        ([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], [acme_extension()], "does not name"),
        (
            [x509.DNSName(NAME)],
            [(x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x01x"), True)],
            "does not match",
        ),
    ],
)
def test_check_certificate_refusals(
    tmp_path: Path,
    sans: list[x509.GeneralName],
    exts: list[tuple[x509.ExtensionType, bool]],
    fragment: str,
) -> None:
    with pytest.raises(AcmeError) as info:
        check_certificate(cert_der(tmp_path, sans, exts), Identifier("dns", NAME), KEY_AUTH)
    assert info.value.type is ProblemType.INCORRECT_RESPONSE
    assert fragment in info.value.detail


def test_check_certificate_accepts_upper_case_san(tmp_path: Path) -> None:
    der = cert_der(tmp_path, [x509.DNSName(NAME.upper())], [acme_extension()])
    check_certificate(der, Identifier("dns", NAME), KEY_AUTH)


def test_check_certificate_refuses_garbage() -> None:
    with pytest.raises(AcmeError) as info:
        check_certificate(b"\x30\x03\x02\x01\x00", Identifier("dns", NAME), KEY_AUTH)
    assert info.value.type is ProblemType.INCORRECT_RESPONSE


def test_sni_names() -> None:
    assert sni_name(Identifier("dns", NAME)) == NAME
    assert sni_name(Identifier("ip", "192.0.2.1")) == "1.2.0.192.in-addr.arpa"
    assert sni_name(Identifier("ip", "2001:db8::1")).endswith(".8.b.d.0.1.0.0.2.ip6.arpa")


@async_test
async def test_silent_responder_is_a_tls_timeout() -> None:
    async with TcpServer(silent) as server:
        va = ValidationAuthority(
            VASettings(tls_port=server.port, allow_loopback=True, timeout=0.5),
            resolver=FakeResolver.with_hosts(**{NAME: "127.0.0.1"}),
        )
        result = await va.validate(request("tls-alpn-01", NAME))
    assert_error(result, ProblemType.TLS, "timed out")
