"""Issuers, certificate profiles, and the certificate inventory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from certctl.domain.model import AuthMode, CertificateVersion, Profile
from certctl.domain.policy import IdentifierPolicy
from certctl.storage import _json
from certctl.storage._fast import FastStatement
from certctl.storage.schema import (
    certificate_versions,
    issuers,
    managed_certificates,
    profiles,
)


def _insert_ignore(conn: Connection, table: Any, values: dict[str, Any], key: str) -> bool:
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[key])
        .returning(table.c[key])
    )
    return conn.execute(stmt).first() is not None


def ensure_issuer(
    conn: Connection,
    *,
    issuer_id: str,
    name: str,
    cert_pem: str,
    chain_pem: str,
    key_type: str,
    now: datetime,
) -> None:
    _insert_ignore(
        conn,
        issuers,
        {
            "id": issuer_id,
            "name": name,
            "cert_pem": cert_pem,
            "chain_pem": chain_pem,
            "key_type": key_type,
            "created_at": now,
        },
        "id",
    )


def issuer_ids(conn: Connection) -> list[str]:
    return [r.id for r in conn.execute(select(issuers.c.id).order_by(issuers.c.created_at))]


def _profile_values(p: Profile) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "description": p.description,
        "issuer_id": p.issuer_id,
        "acme_auth_mode": p.acme_auth_mode.value,
        "key_algorithms": _json.dumps(list(p.key_algorithms)),
        "max_validity_days": p.max_validity_days,
        "ekus": _json.dumps(list(p.ekus)),
        "must_staple": p.must_staple,
        "enabled": p.enabled,
        "allowed_names": _json.dumps(list(p.identifier_policy.allowed_names)),
        "denied_names": _json.dumps(list(p.identifier_policy.denied_names)),
        "allow_wildcards": p.identifier_policy.allow_wildcards,
        "allow_ip": p.identifier_policy.allow_ip,
        "ip_networks": _json.dumps(list(p.identifier_policy.ip_networks)),
        "max_identifiers": p.identifier_policy.max_identifiers,
        "caa_check": p.caa_check,
        "eab_required": p.eab_required,
        "allow_preauthorization": p.allow_preauthorization,
        "renewal_window_days": p.renewal_window_days,
    }


def _profile(row: RowMapping) -> Profile:
    return Profile(
        id=row["id"],
        name=row["name"],
        description=row["description"],
        issuer_id=row["issuer_id"],
        acme_auth_mode=AuthMode(row["acme_auth_mode"]),
        key_algorithms=tuple(_json.loads(row["key_algorithms"])),
        max_validity_days=row["max_validity_days"],
        ekus=tuple(_json.loads(row["ekus"])),
        must_staple=row["must_staple"],
        enabled=row["enabled"],
        identifier_policy=IdentifierPolicy(
            allowed_names=tuple(_json.loads(row["allowed_names"])),
            denied_names=tuple(_json.loads(row["denied_names"])),
            allow_wildcards=row["allow_wildcards"],
            allow_ip=row["allow_ip"],
            ip_networks=tuple(_json.loads(row["ip_networks"])),
            max_identifiers=row["max_identifiers"],
        ),
        caa_check=row["caa_check"],
        eab_required=row["eab_required"],
        allow_preauthorization=row["allow_preauthorization"],
        renewal_window_days=row["renewal_window_days"],
    )


def insert_profile(conn: Connection, profile: Profile, now: datetime) -> bool:
    """Insert unless a profile with that id exists; True when this call created it."""
    values = _profile_values(profile) | {"created_at": now, "updated_at": now}
    return _insert_ignore(conn, profiles, values, "id")


def update_profile(conn: Connection, profile: Profile, now: datetime) -> bool:
    values = _profile_values(profile) | {"updated_at": now}
    values.pop("id")
    result = conn.execute(update(profiles).where(profiles.c.id == profile.id).values(**values))
    return result.rowcount == 1


def get_profile(conn: Connection, profile_id: str) -> Profile | None:
    row = conn.execute(select(profiles).where(profiles.c.id == profile_id)).first()
    return _profile(row._mapping) if row else None


def list_profiles(conn: Connection) -> list[Profile]:
    return [_profile(r._mapping) for r in conn.execute(select(profiles).order_by(profiles.c.id))]


# Every issuance runs these: built once, values as parameters.
CERTIFICATE_KEYS = (
    "id",
    "name",
    "common_name",
    "sans",
    "profile_id",
    "issuer_id",
    "source",
    "status",
    "expires_at",
    "created_at",
    "updated_at",
)
VERSION_KEYS = (
    "id",
    "certificate_id",
    "serial",
    "fingerprint_sha256",
    "not_before",
    "not_after",
    "pem_chain",
    "csr_pem",
    "key_algorithm",
    "key_size",
    "source",
    "profile_id",
    "issuer_id",
    "acme_account_id",
    "acme_order_id",
    "status",
    "created_at",
    "aki",
)
_INSERT_CERTIFICATE = FastStatement(managed_certificates.insert(), keys=CERTIFICATE_KEYS)
_INSERT_VERSION = FastStatement(certificate_versions.insert(), keys=VERSION_KEYS)
_GET_VERSION = FastStatement(
    select(certificate_versions).where(certificate_versions.c.id == bindparam("b_id"))
)


def insert_certificate(
    conn: Connection,
    version: CertificateVersion,
    *,
    name: str,
    common_name: str,
    sans: Sequence[str],
    now: datetime,
) -> None:
    insert_rows(
        conn,
        *certificate_rows(version, name=name, common_name=common_name, sans=sans, now=now),
    )


def insert_rows(
    conn: Connection, certificate: Mapping[str, Any], version: Mapping[str, Any]
) -> None:
    """The rows of ``certificate_rows``."""
    _INSERT_CERTIFICATE.rowcount(conn, certificate)
    _INSERT_VERSION.rowcount(conn, version)


def certificate_rows(
    version: CertificateVersion,
    *,
    name: str,
    common_name: str,
    sans: Sequence[str],
    now: datetime,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The managed certificate's row (CERTIFICATE_KEYS) and its version's (VERSION_KEYS)
    for a new certificate of one version."""
    certificate = {
        "id": version.certificate_id,
        "name": name,
        "common_name": common_name,
        "sans": _json.dumps(list(sans)),
        "profile_id": version.profile_id,
        "issuer_id": version.issuer_id,
        "source": version.source,
        "status": "active",
        "expires_at": version.not_after,
        "created_at": now,
        "updated_at": now,
    }
    version_row = {
        "id": version.id,
        "certificate_id": version.certificate_id,
        "serial": version.serial,
        "fingerprint_sha256": version.fingerprint_sha256,
        "not_before": version.not_before,
        "not_after": version.not_after,
        "pem_chain": version.pem_chain,
        "csr_pem": version.csr_pem,
        "key_algorithm": version.key_algorithm,
        "key_size": version.key_size,
        "source": version.source,
        "profile_id": version.profile_id,
        "issuer_id": version.issuer_id,
        "acme_account_id": version.acme_account_id,
        "acme_order_id": version.acme_order_id,
        "status": version.status,
        "created_at": now,
        "aki": version.aki,
    }
    return certificate, version_row


def version_of(row: Mapping[Any, Any]) -> CertificateVersion:
    """A ``certificate_versions`` row as the domain's value."""
    return CertificateVersion(
        id=row["id"],
        certificate_id=row["certificate_id"],
        serial=row["serial"],
        fingerprint_sha256=row["fingerprint_sha256"],
        not_before=row["not_before"],
        not_after=row["not_after"],
        pem_chain=row["pem_chain"],
        csr_pem=row["csr_pem"],
        key_algorithm=row["key_algorithm"],
        key_size=row["key_size"],
        source=row["source"],
        profile_id=row["profile_id"],
        issuer_id=row["issuer_id"],
        acme_account_id=row["acme_account_id"],
        acme_order_id=row["acme_order_id"],
        created_at=row["created_at"],
        status=row["status"],
        revoked_at=row["revoked_at"],
        revocation_reason=row["revocation_reason"],
        replaced_by_order_id=row["replaced_by_order_id"],
        ari_window_end=row["ari_window_end"],
        aki=row["aki"],
    )


def get_version(conn: Connection, version_id: str) -> CertificateVersion | None:
    row = _GET_VERSION.first(conn, {"b_id": version_id})
    return version_of(row) if row else None


def find_version(conn: Connection, key: str) -> CertificateVersion | None:
    """By version id, certificate id or canonical serial (CLI lookups)."""
    row = conn.execute(
        select(certificate_versions).where(
            (certificate_versions.c.id == key)
            | (certificate_versions.c.certificate_id == key)
            | (certificate_versions.c.serial == key)
        )
    ).first()
    return version_of(row._mapping) if row else None


def list_versions(conn: Connection, *, limit: int = 1000) -> list[CertificateVersion]:
    rows = conn.execute(
        select(certificate_versions).order_by(certificate_versions.c.created_at).limit(limit)
    )
    return [version_of(r._mapping) for r in rows]


def count_versions_for_order(conn: Connection, order_id: str) -> int:
    rows = conn.execute(
        select(certificate_versions.c.id).where(certificate_versions.c.acme_order_id == order_id)
    )
    return len(rows.all())


def find_by_serial(conn: Connection, serial: str) -> CertificateVersion | None:
    row = conn.execute(
        select(certificate_versions).where(certificate_versions.c.serial == serial)
    ).first()
    return version_of(row._mapping) if row else None


def certificate_names(conn: Connection, certificate_id: str) -> list[str]:
    row = conn.execute(
        select(managed_certificates.c.sans).where(managed_certificates.c.id == certificate_id)
    ).first()
    return list(_json.loads(row.sans)) if row else []


def claim_replacement(
    conn: Connection, version_id: str, order_id: str, *, previous: str | None
) -> bool:
    """RFC 9773 §5, compare-and-set on the replacement the caller saw (None, or an order
    it found invalid): of two concurrent replacing orders exactly one lands."""
    current = certificate_versions.c.replaced_by_order_id
    result = conn.execute(
        update(certificate_versions)
        .where(
            certificate_versions.c.id == version_id,
            current.is_(None) if previous is None else current == previous,
        )
        .values(replaced_by_order_id=order_id)
    )
    return result.rowcount == 1


def shift_ari_window(
    conn: Connection,
    end: datetime,
    *,
    profile_id: str | None,
    issuer_id: str | None,
    serials: Sequence[str],
) -> int:
    stmt = update(certificate_versions).where(certificate_versions.c.status == "active")
    if profile_id:
        stmt = stmt.where(certificate_versions.c.profile_id == profile_id)
    if issuer_id:
        stmt = stmt.where(certificate_versions.c.issuer_id == issuer_id)
    if serials:
        stmt = stmt.where(certificate_versions.c.serial.in_(list(serials)))
    return int(conn.execute(stmt.values(ari_window_end=end)).rowcount)
