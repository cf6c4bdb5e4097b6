"""ACME revoke-cert (RFC 8555 §7.6): who may revoke, then the shared pipeline.

Three ways to be allowed: the account that ordered the certificate (kid), an account that
holds valid authorizations for every identifier in it (kid), or the certificate's own key
(jwk). Anything else is unauthorized, and a certificate we did not issue is refused before
any of that.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from certctl.acme.b64 import b64url_decode
from certctl.acme.jwk import PublicJWK, spki_sha256
from certctl.domain.errors import AcmeError, ProblemType, malformed, unauthorized
from certctl.domain.model import Account, AuthzStatus, CertificateVersion, Identifier
from certctl.domain.serials import canonical_serial
from certctl.ra.context import RAContext, actor_for
from certctl.ra.revocation import RevocationHook, revoke
from certctl.revocation import RevocationReason, parse_reason
from certctl.storage import inventory
from certctl.storage import orders as order_store


def _certificate(payload: dict[str, Any]) -> x509.Certificate:
    raw = payload.get("certificate")
    if not isinstance(raw, str):
        raise malformed("revoke-cert needs a certificate (base64url DER)")
    try:
        return x509.load_der_x509_certificate(b64url_decode(raw))
    except ValueError:
        raise malformed("certificate is not DER") from None


def _find(ctx: RAContext, cert: x509.Certificate) -> CertificateVersion:
    der = cert.public_bytes(serialization.Encoding.DER)
    with ctx.db.read() as conn:
        version = (
            inventory.find_by_serial(conn, canonical_serial(cert.serial_number))
            if cert.serial_number > 0
            else None
        )
    fingerprint = hashlib.sha256(der).hexdigest()
    # Compare the whole certificate, not only the serial: a forged one with our serial is
    # not ours.
    if version is None or not hmac.compare_digest(version.fingerprint_sha256, fingerprint):
        raise AcmeError(ProblemType.NOT_FOUND, "this CA did not issue that certificate")
    return version


def _identifiers(cert: x509.Certificate) -> list[Identifier]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    idents = [Identifier("dns", n.lower()) for n in san.get_values_for_type(x509.DNSName)]
    idents += [
        Identifier("ip", str(a))
        for a in san.get_values_for_type(x509.IPAddress)
        if isinstance(a, ipaddress.IPv4Address | ipaddress.IPv6Address)
    ]
    return idents


def _account_may_revoke(
    ctx: RAContext, account: Account, version: CertificateVersion, cert: x509.Certificate
) -> bool:
    if version.acme_account_id == account.id:
        return True
    idents = _identifiers(cert)
    now = ctx.clock()
    with ctx.db.read() as conn:
        for ident in idents:
            authz = order_store.reusable_authz(conn, account.id, ident, now)
            if authz is None or authz.status is not AuthzStatus.VALID:
                return False
    return bool(idents)


def revoke_cert(
    ctx: RAContext,
    account: Account | None,
    jwk: PublicJWK,
    payload: dict[str, Any],
    hooks: Sequence[RevocationHook],
) -> None:
    cert = _certificate(payload)
    reason = parse_reason(payload.get("reason", 0))
    version = _find(ctx, cert)
    if account is not None:
        if not _account_may_revoke(ctx, account, version, cert):
            raise unauthorized("this account may not revoke that certificate")
        actor = actor_for(account.id)
    else:
        if spki_sha256(jwk.key) != spki_sha256(cert.public_key()):
            raise unauthorized("the JWS must be signed by the certificate's key")
        actor = f"acme-cert-key:{version.serial}"
    # keyCompromise blocks the key only when the requester proved control of it: by signing
    # with it now (jwk) or with the CSR it signed when it ordered this certificate. A third
    # account holding authorizations for the names revokes, but bans no key.
    proven = account is None or version.acme_account_id == account.id
    revoke(ctx, version, RevocationReason(reason), actor, hooks, key_proven=proven)
