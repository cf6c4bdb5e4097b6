"""ACME Renewal Information (RFC 9773): windows, `replaces`, and operator shifts."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from certctl.acme.ari import Window, encode_cert_id, parse_cert_id, renewal_window
from certctl.domain.errors import AcmeError, ProblemType, malformed, not_found, unauthorized
from certctl.domain.lifecycle import authz_effective_status, order_status
from certctl.domain.model import Account, CertificateVersion, Identifier, Order, OrderStatus
from certctl.domain.serials import canonical_serial
from certctl.ra.context import RAContext
from certctl.storage import audit_log, inventory
from certctl.storage import orders as order_store


def _version(ctx: RAContext, cert_id: str) -> CertificateVersion:
    parsed = parse_cert_id(cert_id)
    with ctx.db.read() as conn:
        version = inventory.find_by_serial(conn, canonical_serial(parsed.serial))
    # The AKI must match too: a serial alone could name another issuer's certificate.
    if version is None or version.aki != parsed.aki.hex():
        raise not_found("no certificate with that renewalInfo identifier")
    return version


def renewal_info(ctx: RAContext, cert_id: str) -> Window:
    return _window(ctx, _version(ctx, cert_id), ctx.clock())


def _window(ctx: RAContext, version: CertificateVersion, now: datetime) -> Window:
    with ctx.db.read() as conn:
        profile = inventory.get_profile(conn, version.profile_id)
    days = profile.renewal_window_days if profile else None
    if days is not None and version.not_after - timedelta(days=days) / 2 <= version.not_before:
        # A certificate shorter than half the policy (a requested notAfter): the policy
        # window would end before the certificate begins, an inverted window (RFC 9773
        # §4.2). The default, the last third of the validity, applies instead.
        days = None
    return renewal_window(
        not_before=version.not_before,
        not_after=version.not_after,
        now=now,
        policy_days=days,
        revoked=version.status == "revoked",
        shifted_end=version.ari_window_end,
    )


def renewal_due(ctx: RAContext, version: CertificateVersion, now: datetime) -> bool:
    """The certificate's suggested window (what renewalInfo answers) has begun."""
    return now >= _window(ctx, version, now).start


def replaced_version(
    ctx: RAContext, account: Account, payload: dict[str, Any], identifiers: tuple[Identifier, ...]
) -> CertificateVersion | None:
    """RFC 9773 §5: ``replaces`` must name a certificate of this account that shares an
    identifier with the new order and has not been replaced already."""
    raw = payload.get("replaces")
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise malformed("replaces must be a renewalInfo identifier string")
    version = _version(ctx, raw)
    if version.acme_account_id != account.id:
        raise unauthorized("replaces names a certificate of another account")
    with ctx.db.read() as conn:
        names = set(inventory.certificate_names(conn, version.certificate_id))
    if not names & {i.value for i in identifiers}:
        raise malformed("replaces names a certificate that shares no identifier with the order")
    if version.replaced_by_order_id is not None and _replacement_alive(
        ctx, version.replaced_by_order_id
    ):
        raise AcmeError(ProblemType.ALREADY_REPLACED, "that certificate was already replaced")
    return version


def _replacement_alive(ctx: RAContext, order_id: str) -> bool:
    """RFC 9773 §5: only a replacing order that is not invalid blocks another one."""
    with ctx.db.read() as conn:
        found = order_store.get_order(conn, order_id)
    if found is None:
        return False
    order, authz_rows = found
    now = ctx.clock()
    effective = [authz_effective_status(s, exp, now) for s, exp in authz_rows]
    status = order_status(order.stored_status, effective, order.expires_at, now)
    return status is not OrderStatus.INVALID


def replaces_id_on(conn: Connection, version_id: str) -> str | None:
    """The renewalInfo identifier of the version an order replaces: what the client sent
    (parse_cert_id accepts only the canonical spelling, so encoding gives it back)."""
    version = inventory.get_version(conn, version_id)
    if version is None or not version.aki:
        return None
    return encode_cert_id(bytes.fromhex(version.aki), int(version.serial, 16))


def claim_replacement(conn: Connection, version: CertificateVersion, order: Order) -> None:
    """Inside the order's transaction, compare-and-set on the replacement seen when the
    request was checked (none, or an invalid one): one live order replaces a certificate."""
    if not inventory.claim_replacement(
        conn, version.id, order.id, previous=version.replaced_by_order_id
    ):
        raise AcmeError(ProblemType.ALREADY_REPLACED, "that certificate was already replaced")


def shift(
    ctx: RAContext,
    *,
    end: datetime,
    profile_id: str | None,
    issuer_id: str | None,
    serials: tuple[str, ...],
    actor: str,
) -> int:
    """`certctl ari shift`: pull the renewal window of matching active certificates so it
    ends by ``end``; ARI answers change at once."""
    if not (profile_id or issuer_id or serials):
        raise malformed("say which certificates: a profile, an issuer or serials")
    with ctx.db.write() as conn:
        count = inventory.shift_ari_window(
            conn, end, profile_id=profile_id, issuer_id=issuer_id, serials=serials
        )
        audit_log.record(
            conn,
            at=ctx.clock(),
            actor=actor,
            action="ari_window_shifted",
            object_type="certificate",
            object_id=profile_id or issuer_id or "serials",
            details={"end": end.isoformat(), "count": count, "serials": list(serials)[:100]},
        )
    return count
