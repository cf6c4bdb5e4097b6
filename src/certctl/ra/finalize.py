"""Finalize (RFC 8555 §7.4) and certificate download (§7.4.2).

Order of work: every check that can fail on client input runs first and leaves the order
ready; then one compare-and-set moves it to processing and records the serial before
anything is signed, so N concurrent finalizes sign exactly once and a crash never leaves a
signed certificate without its record.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import NameOID
from sqlalchemy import Connection

from certctl.acme.b64 import b64url_decode
from certctl.acme.jwk import spki_sha256
from certctl.acme.problems import problem_document
from certctl.ca import (
    IssuedCertificate,
    Issuer,
    IssueRequest,
    LocalCA,
    csr_public_key,
    csr_signature_valid,
)
from certctl.domain.errors import AcmeError, ProblemType, malformed, not_found
from certctl.domain.identifiers import identifier_set
from certctl.domain.model import Account, CertificateVersion, Order, OrderStatus, Profile
from certctl.domain.serials import canonical_serial, new_serial
from certctl.policy.keys import check_subscriber_key
from certctl.ra.challenges import Validator, check_caa_at_finalize
from certctl.ra.context import RAContext, actor_for, new_id
from certctl.ra.orders import OrderView, order_view, visible_order
from certctl.ra.pki import crl_url, ocsp_url
from certctl.ra.replay import PendingSpend, pending, read_spending, settle_spent
from certctl.storage import audit_log, inventory, issuance, revocations, spending
from certctl.storage import orders as order_store

log = logging.getLogger(__name__)


def _bad_csr(detail: str) -> AcmeError:
    return AcmeError(ProblemType.BAD_CSR, detail)


def parse_csr(payload: dict[str, Any]) -> x509.CertificateSigningRequest:
    return verified_csr(load_csr(payload))


def load_csr(payload: dict[str, Any]) -> x509.CertificateSigningRequest:
    """The finalize payload's CSR, decoded and parsed, its signature not yet checked."""
    raw = payload.get("csr")
    if not isinstance(raw, str):
        raise malformed("finalize payload needs a csr string")
    try:
        return x509.load_der_x509_csr(b64url_decode(raw))
    except AcmeError:
        raise _bad_csr("csr is not strict base64url") from None
    except ValueError:
        raise _bad_csr("csr is not a DER PKCS#10 request") from None


def verified_csr(csr: x509.CertificateSigningRequest) -> x509.CertificateSigningRequest:
    """``csr`` once its self-signature verifies (RFC 2986 §3)."""
    try:
        if not csr_signature_valid(csr):
            raise _bad_csr("csr signature does not verify")
    except UnsupportedAlgorithm:
        # A key or signature algorithm the library does not implement: the client's CSR.
        raise _bad_csr("csr uses an unsupported key or signature algorithm") from None
    except (ValueError, TypeError):
        raise _bad_csr("csr signature cannot be checked") from None
    return csr


def csr_names(csr: x509.CertificateSigningRequest) -> set[tuple[str, str]]:
    """What a CSR asks for as (type, value): SAN dNSNames and iPAddresses (RFC 8738 §4)
    plus the CN, lower-cased; anything else is refused."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    except (ValueError, x509.DuplicateExtension):
        raise _bad_csr("csr extensions cannot be parsed") from None
    if any(not isinstance(n, x509.DNSName | x509.IPAddress) for n in san):
        raise _bad_csr("csr may only request DNS names and IP addresses")
    names = {("dns", n.lower()) for n in san.get_values_for_type(x509.DNSName)}
    for ip in san.get_values_for_type(x509.IPAddress):
        if not isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
            raise _bad_csr("csr iPAddress entries must be addresses, not networks")
        names.add(("ip", str(ip)))
    ips = {value for kind, value in names if kind == "ip"}
    for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        cn = str(attr.value).lower()
        names.add(("ip", cn) if cn in ips else ("dns", cn))
    return names


def finalize(
    ctx: RAContext,
    ca: LocalCA,
    validator: Validator | None,
    profile: Profile,
    account: Account,
    order_id: str,
    payload: dict[str, Any],
    spend: PendingSpend | None = None,
) -> OrderView:
    """``spend``: the request's nonce, spent with the processing claim (ra.replay)."""
    # The CSR's key is looked up with the order, in one statement; the CSR's own errors
    # are reported after the order's, as when it is parsed after the read.
    loaded: x509.CertificateSigningRequest | AcmeError
    try:
        loaded = load_csr(payload)
    except AcmeError as exc:
        loaded = exc
    known = _csr_key(loaded)
    # Every check reads from one connection; CAA lookups (network) come after it.
    with ctx.db.read() as conn:
        refusals: tuple[bool, bool] | None = None
        if known is None:
            view = order_view(ctx, conn, account, order_id)
        else:
            found, refusals = issuance.order_and_key_refusals(conn, order_id, known[1])
            view = visible_order(ctx, conn, account, found)
        if view.status is not OrderStatus.READY:
            raise AcmeError(ProblemType.ORDER_NOT_READY, f"order is {view.status.value}, not ready")
        if isinstance(loaded, AcmeError):
            raise loaded
        csr = verified_csr(loaded)
        if known is None:  # the signature verified, so the key parses
            public_key = csr_public_key(csr)
            known = public_key, spki_sha256(public_key)
        _check_csr(conn, ca, profile, view, csr, known, refusals)
        authzs = (
            [a for i in view.order.authz_ids if (a := order_store.get_authz(conn, i))]
            if profile.caa_check
            else []
        )
    if profile.caa_check:
        check_caa_at_finalize(ctx, validator, profile, account, authzs)
    now = ctx.clock()
    issuer = _issuer(ca, profile)
    validity = leaf_validity(issuer, profile, view.order, now)
    serial = new_serial()
    audit = audit_log.event(
        at=now,
        actor=actor_for(account.id),
        action="acme_order_processing",
        object_type="acme_order",
        object_id=order_id,
        details={"serial": canonical_serial(serial)},
    )
    unspent = pending(spend)
    # Durable before anything is signed: the serial is recorded first (promised).
    with ctx.db.statement() as conn:
        spent, claimed = issuance.claim(
            conn,
            order_id,
            canonical_serial(serial),
            now,
            audit=audit,
            spend=unspent.keywords() if unspent is not None else None,
        )
    settle_spent(unspent, spent)
    if not claimed:
        raise AcmeError(
            ProblemType.ORDER_NOT_READY,
            "order is no longer ready: another finalize claimed it, or it changed meanwhile",
        )
    issued = _sign(ctx, issuer, profile, account, view, csr, serial, validity)
    return _record(ctx, profile, account, view, csr, issued)


def _csr_key(
    csr: x509.CertificateSigningRequest | AcmeError,
) -> tuple[CertificatePublicKeyTypes, str] | None:
    """The CSR's key and the SHA-256 of its SPKI, or None when there is none to read (the
    CSR's checks say why, in their turn)."""
    if isinstance(csr, AcmeError):
        return None
    try:
        key = csr_public_key(csr)
        return key, spki_sha256(key)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return None


def _check_csr(
    conn: Connection,
    ca: LocalCA,
    profile: Profile,
    view: OrderView,
    csr: x509.CertificateSigningRequest,
    known: tuple[CertificatePublicKeyTypes, str],
    refusals: tuple[bool, bool] | None,
) -> None:
    """``known``: the CSR's key and its SPKI's SHA-256; ``refusals``: its (blocked, an
    account's key) if read with the order."""
    key, digest = known
    check_subscriber_key(profile, key)
    if digest in ca.ca_key_digests:
        # The root's or an issuer's key in a leaf: refused here, before the claim, like
        # every other refusal of client input, so the order stays ready (the signer's
        # own check, after the claim, stays as the last line).
        raise AcmeError(ProblemType.BAD_PUBLIC_KEY, "csr key is one of this CA's keys")
    if refusals is None:
        refusals = revocations.key_refusals(conn, digest)
    blocked, account_key = refusals
    if blocked:
        # RFC 8555 §7.6: a key revoked for keyCompromise is never certified again.
        raise _bad_csr("csr key is blocked: it was reported compromised")
    if account_key:
        # RFC 8555 §11.1: the certificate key must not be an account key.
        raise _bad_csr("csr key is an ACME account key; use a separate key")
    wanted = identifier_set(view.order.identifiers)
    got = csr_names(csr)
    if got != wanted:
        extra = sorted(v for _, v in got - wanted)
        missing = sorted(v for _, v in wanted - got)
        raise _bad_csr(
            "csr names must equal the order's identifiers"
            + (f"; not in order: {', '.join(extra)[:200]}" if extra else "")
            + (f"; missing: {', '.join(missing)[:200]}" if missing else "")
        )


def _issuer(ca: LocalCA, profile: Profile) -> Issuer:
    issuer = ca.issuers.get(profile.issuer_id)
    if issuer is None:
        # An operator's fix: the profile names an issuer this CA does not hold. The log
        # says which; the client's problem says nothing of the configuration.
        log.error("profile %s names issuer %s, which is not loaded", profile.id, profile.issuer_id)
        raise AcmeError(ProblemType.SERVER_INTERNAL, "the CA could not sign this certificate")
    return issuer


def leaf_validity(
    issuer: Issuer, profile: Profile, order: Order, now: datetime
) -> tuple[datetime, datetime]:
    """The leaf's (notBefore, notAfter): what the order asked for (RFC 8555 §7.4, checked
    at newOrder), else from now for the profile's maximum, ending no later than the issuer
    does. Refused (malformed, before the order is claimed, so nothing is spent on it) when
    it would already have ended: an order whose requested notAfter has passed."""
    not_before = order.not_before or now
    not_after = order.not_after or min(
        not_before + timedelta(days=profile.max_validity_days), issuer.not_after
    )
    if not_after <= max(not_before, now):
        raise malformed(
            f"the certificate would end ({not_after:%Y-%m-%dT%H:%M:%SZ}) before it starts;"
            " its order's notAfter has passed or its issuer has expired"
        )
    return not_before, not_after


def _sign(
    ctx: RAContext,
    issuer: Issuer,
    profile: Profile,
    account: Account,
    view: OrderView,
    csr: x509.CertificateSigningRequest,
    serial: int,
    validity: tuple[datetime, datetime],
) -> IssuedCertificate:
    not_before, not_after = validity
    idents = view.order.identifiers
    try:
        return issuer.issue(
            IssueRequest(
                csr=csr,
                dns_names=tuple(sorted(i.value for i in idents if i.type == "dns")),
                ip_addresses=tuple(ipaddress.ip_address(i.value) for i in idents if i.type == "ip"),
                not_before=not_before,
                not_after=not_after,
                ekus=profile.ekus,
                must_staple=profile.must_staple,
                serial=serial,
                crl_url=crl_url(ctx.pki_base_url, issuer.id) if ctx.pki_base_url else None,
                ocsp_url=ocsp_url(ctx.pki_base_url, issuer.id) if ctx.pki_base_url else None,
            )
        )
    except Exception as exc:
        log.exception("signing failed for order %s", view.order.id)
        error = (
            exc
            if isinstance(exc, AcmeError)
            else AcmeError(ProblemType.SERVER_INTERNAL, "the CA could not sign this certificate")
        )
        _fail(ctx, account, view.order.id, error)
        raise error from None


def _fail(ctx: RAContext, account: Account, order_id: str, error: AcmeError) -> None:
    now = ctx.clock()
    with ctx.db.write() as conn:
        order_store.finish_processing(
            conn,
            order_id,
            new=OrderStatus.INVALID,
            now=now,
            error=json.dumps(problem_document(error)),
        )
        audit_log.record(
            conn,
            at=now,
            actor=actor_for(account.id),
            action="acme_order_invalid",
            object_type="acme_order",
            object_id=order_id,
            details={"error": error.detail},
        )


def _common_name(cert: x509.Certificate) -> str | None:
    """The leaf's CN (ca.profile.leaf_subject picks it), or None when its subject is empty."""
    for attribute in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
        return str(attribute.value)
    return None


def _record(
    ctx: RAContext,
    profile: Profile,
    account: Account,
    view: OrderView,
    csr: x509.CertificateSigningRequest,
    issued: IssuedCertificate,
) -> OrderView:
    """Record the certificate and finish the order in one transaction. The order as it
    now stands is the one read at the start with what this transaction changed: the
    processing claim (``begin_processing``) kept every other writer away from it."""
    now = ctx.clock()
    names = sorted(i.value for i in view.order.identifiers)
    version = CertificateVersion(
        id=new_id("cert-"),
        certificate_id=new_id("mc-"),
        serial=issued.serial_hex,
        fingerprint_sha256=issued.fingerprint_sha256,
        not_before=issued.not_before,
        not_after=issued.not_after,
        pem_chain=issued.chain_pem,
        csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
        key_algorithm=issued.key_algorithm,
        key_size=issued.key_size,
        source="acme",
        profile_id=profile.id,
        issuer_id=profile.issuer_id,
        acme_account_id=account.id,
        acme_order_id=view.order.id,
        created_at=now,
        aki=_aki_hex(issued.certificate),
    )
    actor = actor_for(account.id)
    certificate, version_row = inventory.certificate_rows(
        version,
        name=f"acme-{view.order.id}",
        common_name=_common_name(issued.certificate) or names[0],
        sans=names,
        now=now,
    )
    events = (
        audit_log.event(
            at=now,
            actor=actor,
            action="certificate_created",
            object_type="certificate",
            object_id=version.certificate_id,
            details={"serial": version.serial, "source": "acme", "profile_id": profile.id},
        ),
        audit_log.event(
            at=now,
            actor=actor,
            action="acme_order_finalized",
            object_type="acme_order",
            object_id=view.order.id,
            details={"certificate_id": version.id, "serial": version.serial},
        ),
    )
    with ctx.db.statement() as conn:
        recorded = issuance.record(
            conn, view.order.id, now, certificate=certificate, version=version_row, audit=events
        )
    if not recorded:  # pragma: no cover - the claim's compare-and-set makes this unreachable
        raise AcmeError(ProblemType.SERVER_INTERNAL, "order changed while issuing")
    done = replace(view.order, stored_status=OrderStatus.VALID, certificate_id=version.id)
    return OrderView(done, OrderStatus.VALID, view.replaces)


def _aki_hex(cert: x509.Certificate) -> str:
    """The authority key identifier, for RFC 9773 renewalInfo lookups."""
    try:
        aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    except x509.ExtensionNotFound:
        return ""
    return aki.key_identifier.hex() if aki.key_identifier else ""


def certificate_chain(
    ctx: RAContext, account: Account, cert_id: str, spend: PendingSpend | None = None
) -> str:
    """RFC 8555 §7.4.2: the PEM chain, to the account that ordered it only."""
    version = read_spending(
        ctx,
        spend,
        lambda conn: inventory.get_version(conn, cert_id),
        lambda conn, keywords: spending.get_version(conn, cert_id, keywords),
    )
    if version is None or version.acme_account_id != account.id:
        raise not_found("no such certificate")
    return version.pem_chain
