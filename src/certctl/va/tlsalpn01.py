"""tls-alpn-01 (RFC 8737, IP identifiers RFC 8738 §6).

Lessons of the 2022 Let's Encrypt TLS-ALPN-01 incident are enforced here: TLS 1.2 or
newer only, only the final ``id-pe-acmeIdentifier`` OID (1.3.6.1.5.5.7.1.31, never the
draft 1.3.6.1.5.5.7.1.30.1), the extension critical, and exactly one SAN. The chain is not
verified: the proof is the extension (RFC 8737 §3).
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from typing import Final

from cryptography import x509

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import Identifier
from certctl.va.model import ValidationRequest, VASettings
from certctl.va.net import Network, parse_ip, tls_client_context

ALPN_PROTOCOL: Final = "acme-tls/1"  # RFC 8737 §6.2
ACME_IDENTIFIER_OID: Final = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.31")  # RFC 8737 §6.1
LEGACY_ACME_IDENTIFIER_OID: Final = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.30.1")
_TLS_VERSIONS: Final = frozenset({"TLSv1.2", "TLSv1.3"})


def sni_name(identifier: Identifier) -> str:
    """SNI to send: the name, or for an IP the reverse-mapping name (RFC 8738 §6)."""
    if identifier.type == "ip":
        return ipaddress.ip_address(identifier.value).reverse_pointer
    return identifier.value


async def validate_tlsalpn01(
    req: ValidationRequest, net: Network, settings: VASettings, records: list[str]
) -> None:
    """Raise a typed ``AcmeError`` unless the target proves the key authorization."""
    tls = tls_client_context((ALPN_PROTOCOL,))
    conn = await net.connect(
        req.identifier.value,
        settings.tls_port,
        records,
        tls=tls,
        server_hostname=sni_name(req.identifier),
    )
    try:
        ssl_object = conn.writer.get_extra_info("ssl_object")
        if not isinstance(ssl_object, ssl.SSLObject):  # pragma: no cover - start_tls succeeded
            raise AcmeError(ProblemType.TLS, "no TLS session")
        version, alpn = ssl_object.version(), ssl_object.selected_alpn_protocol()
        der = ssl_object.getpeercert(binary_form=True)
    finally:
        conn.close()
    records.append(f"TLS {version}, ALPN {alpn!r}")
    if version not in _TLS_VERSIONS:  # belt and braces: the context floor is TLS 1.2
        raise AcmeError(ProblemType.TLS, f"negotiated {version}; TLS 1.2 or newer is required")
    if alpn != ALPN_PROTOCOL:
        # RFC 8737 §3: the server must negotiate acme-tls/1, or the validation fails.
        raise AcmeError(ProblemType.TLS, f"the server did not negotiate ALPN {ALPN_PROTOCOL!r}")
    if not der:
        raise AcmeError(ProblemType.TLS, "the server sent no certificate")
    check_certificate(der, req.identifier, req.key_authorization)


def check_certificate(der: bytes, identifier: Identifier, key_authorization: str) -> None:
    """RFC 8737 §3: one SAN equal to the identifier, a critical acmeIdentifier with the digest."""
    try:
        cert = x509.load_der_x509_certificate(der)
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension):
        raise _incorrect("the validation certificate cannot be parsed") from None
    _check_san(extensions, identifier)
    try:
        ext = extensions.get_extension_for_oid(ACME_IDENTIFIER_OID)
    except x509.ExtensionNotFound:
        try:
            extensions.get_extension_for_oid(LEGACY_ACME_IDENTIFIER_OID)
        except x509.ExtensionNotFound:
            raise _incorrect("the certificate has no acmeIdentifier extension") from None
        raise _incorrect(
            "the certificate uses the obsolete acmeIdentifier OID 1.3.6.1.5.5.7.1.30.1; "
            "1.3.6.1.5.5.7.1.31 is required (RFC 8737)"
        ) from None
    if not ext.critical:
        raise _incorrect("the acmeIdentifier extension must be critical (RFC 8737 §3)")
    # RFC 8737 §3: extnValue is the DER of Authorization ::= OCTET STRING (SIZE (32)).
    digest = hashlib.sha256(key_authorization.encode("ascii")).digest()
    value = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
    if value != b"\x04\x20" + digest:
        raise _incorrect("the acmeIdentifier extension does not match the key authorization")


def _check_san(extensions: x509.Extensions, identifier: Identifier) -> None:
    try:
        names = list(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        raise _incorrect("the certificate has no subjectAltName extension") from None
    # RFC 8737 §3: "a single dNSName entry"; RFC 8738 §6: a single iPAddress entry.
    if len(names) != 1:
        raise _incorrect(f"the certificate must have exactly one SAN entry, not {len(names)}")
    (name,) = names
    if identifier.type == "ip":
        ok = isinstance(name, x509.IPAddress) and name.value == parse_ip(identifier.value)
    else:
        ok = isinstance(name, x509.DNSName) and name.value.lower() == identifier.value
    if not ok:
        raise _incorrect(f"the certificate's SAN does not name {identifier.value}")


def _incorrect(detail: str) -> AcmeError:
    return AcmeError(ProblemType.INCORRECT_RESPONSE, detail)
