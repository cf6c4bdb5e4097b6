"""Minimal rows built through the repository functions, and a migration worker process."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from typing import Any

from sqlalchemy import Connection, func, select

from certctl.domain.model import (
    Account,
    AccountStatus,
    AuthMode,
    Authorization,
    AuthzStatus,
    CertificateVersion,
    Challenge,
    ChallengeStatus,
    Identifier,
    Order,
    OrderStatus,
    Profile,
)
from certctl.storage import accounts, inventory, orders
from certctl.storage.db import Database
from certctl.storage.schema import used_nonces

NOW = datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ISSUER_ID = "iss-test"


def seed_profile(conn: Connection, profile_id: str = "default") -> Profile:
    """An issuer row (idempotent) and a profile bound to it: what accounts and orders need."""
    inventory.ensure_issuer(
        conn,
        issuer_id=ISSUER_ID,
        name="CN=Test Issuing CA",
        cert_pem="-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
        chain_pem="",
        key_type="EllipticCurvePublicKey",
        now=NOW,
    )
    profile = Profile(
        id=profile_id,
        name=f"profile {profile_id}",
        issuer_id=ISSUER_ID,
        acme_auth_mode=AuthMode.TRUST_AUTHENTICATED,
    )
    inventory.insert_profile(conn, profile, NOW)
    return profile


def new_account(
    conn: Connection, profile_id: str = "default", thumbprint: str | None = None
) -> Account:
    account = Account(
        id="acct-" + secrets.token_hex(8),
        profile_id=profile_id,
        status=AccountStatus.VALID,
        jwk_json='{"kty":"OKP"}',
        thumbprint=thumbprint or secrets.token_hex(16),
        contact=("mailto:ops@example.com",),
        tos_agreed=True,
        created_at=NOW,
    )
    accounts.insert(conn, account, spki_sha256=secrets.token_hex(32))
    return account


def new_order(
    conn: Connection,
    account: Account,
    names: Sequence[str] = ("a.example",),
    *,
    authz_status: AuthzStatus = AuthzStatus.VALID,
    created_at: datetime = NOW,
    challenge_types: Sequence[str] = ("http-01",),
) -> Order:
    """An order of ``names`` for ``account``, stored with its authorizations."""
    order, authzs = build_order(
        account,
        names,
        authz_status=authz_status,
        created_at=created_at,
        challenge_types=challenge_types,
    )
    orders.insert_order(conn, order, authzs)
    return order


def build_order(
    account: Account,
    names: Sequence[str] = ("a.example",),
    *,
    authz_status: AuthzStatus = AuthzStatus.VALID,
    created_at: datetime = NOW,
    challenge_types: Sequence[str] = ("http-01",),
) -> tuple[Order, list[Authorization]]:
    """An order of ``names`` for ``account`` and its authorizations, not stored."""
    order = Order(
        id="ord-" + secrets.token_hex(8),
        account_id=account.id,
        profile_id=account.profile_id,
        identifiers=tuple(Identifier("dns", n) for n in names),
        stored_status=OrderStatus.PENDING,
        expires_at=created_at + timedelta(hours=24),
        created_at=created_at,
    )
    authzs = []
    for name in names:
        authz_id = "authz-" + secrets.token_hex(8)
        challenges = tuple(
            Challenge(
                "chall-" + secrets.token_hex(8),
                authz_id,
                kind,
                secrets.token_urlsafe(32),
                ChallengeStatus.PENDING,
            )
            for kind in challenge_types
        )
        authzs.append(
            Authorization(
                authz_id,
                order.id,
                account.id,
                Identifier("dns", name),
                authz_status,
                created_at + timedelta(hours=24),
                challenges,
            )
        )
    return order, authzs


def migrate_worker(url: str, barrier: Barrier, results: Any) -> None:
    """Run in a child process: start migrating at the same moment as the others."""
    db = Database(url)
    try:
        barrier.wait(timeout=60)
        db.migrate()
        results.put("ok")
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(f"{type(exc).__name__}: {exc}")
    finally:
        db.dispose()


def new_version(order: Order, account: Account, serial: str | None = None) -> CertificateVersion:
    """A certificate version of ``order`` (not stored), with a random serial unless given."""
    serial = serial or secrets.token_hex(8)
    return CertificateVersion(
        id="cert-" + secrets.token_hex(8),
        certificate_id="mc-" + secrets.token_hex(8),
        serial=serial,
        fingerprint_sha256=secrets.token_hex(32),
        not_before=NOW,
        not_after=NOW + timedelta(days=30),
        pem_chain="-----BEGIN CERTIFICATE-----\n",
        csr_pem="-----BEGIN CERTIFICATE REQUEST-----\n",
        key_algorithm="ECDSA",
        key_size=256,
        source="acme",
        profile_id=account.profile_id,
        issuer_id=ISSUER_ID,
        acme_account_id=account.id,
        acme_order_id=order.id,
        created_at=NOW,
    )


NONCE_EXPIRES = NOW + timedelta(minutes=5)


def spend_of(account: Account, nonce: str, jwk_json: str | None = None) -> dict[str, Any]:
    """The keywords of ``nonces.consume_for_account`` for ``account`` (its stored key
    unless ``jwk_json``), spending ``nonce``."""
    return {
        "nonce": nonce,
        "expires_at": NONCE_EXPIRES,
        "account_id": account.id,
        "profile_id": account.profile_id,
        "jwk_json": account.jwk_json if jwk_json is None else jwk_json,
    }


def nonce_spent(db: Database, nonce: str) -> bool:
    """Whether ``nonce`` is recorded as used."""
    with db.read() as conn:
        count = conn.execute(
            select(func.count()).select_from(used_nonces).where(used_nonces.c.nonce == nonce)
        ).scalar_one()
    return bool(count)
