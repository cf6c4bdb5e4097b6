"""Revocation and renewal with real clients: certbot ``revoke`` by the account key and by
the certificate key, lego ``revoke`` and ``renew``. Each result is read back from the
inventory with ``certctl cert show``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from sqlalchemy import create_engine, text

from tests.support.certs import ECDSA_P256, assert_issued, load_chain, write_pem
from tests.support.clients import (
    certbot_certonly_command,
    certbot_env,
    certbot_log_tail,
    lego_env,
    lego_run_command,
    run_client,
)
from tests.support.ports import free_port
from tests.support.server import ServedCertctl, run_certctl

pytestmark = pytest.mark.e2e

KEY_COMPROMISE = 1
SUPERSEDED = 4
CESSATION_OF_OPERATION = 5
LEGO_EMAIL = "e2e@example.test"


def cert_show(served: ServedCertctl, cert: x509.Certificate) -> dict[str, Any]:
    """``certctl cert show <serial>`` as JSON."""
    serial = format(cert.serial_number, "x")
    args = ["cert", "show", serial, "--data-dir", str(served.data_dir)]
    result = run_certctl(args, served.database_url)
    assert result.returncode == 0, (result.stdout, result.stderr)
    shown: dict[str, Any] = json.loads(result.stdout)
    return shown


def revoked_by(served: ServedCertctl, cert: x509.Certificate) -> str:
    """The actor of the certificate's ``certificate_revoked`` audit event (read only)."""
    certificate_id = cert_show(served, cert)["certificate_id"]
    url = served.database_url or f"sqlite+pysqlite:///{served.data_dir / 'certctl.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            actor: str = conn.execute(
                text(
                    "SELECT actor FROM audit_events WHERE action = 'certificate_revoked' "
                    "AND object_id = :id"
                ),
                {"id": certificate_id},
            ).scalar_one()
    finally:
        engine.dispose()
    return actor


def assert_status(
    served: ServedCertctl, cert: x509.Certificate, status: str, reason: int | None = None
) -> None:
    doc = cert_show(served, cert)
    assert (doc["status"], doc["revocation_reason"]) == (status, reason), doc


# -- certbot ------------------------------------------------------------------------------------


def certbot_dirs(workdir: Path) -> list[str]:
    return [
        "--config-dir",
        str(workdir / "config"),
        "--work-dir",
        str(workdir / "work"),
        "--logs-dir",
        str(workdir / "logs"),
    ]


def certbot_obtain(
    certbot: str, served: ServedCertctl, workdir: Path, name: str
) -> tuple[Path, Path, x509.Certificate]:
    """certbot certonly: (cert.pem, privkey.pem, the leaf)."""
    cmd = certbot_certonly_command(
        certbot=certbot,
        directory_url=served.directory_url,
        workdir=workdir,
        names=[name],
        key_type=ECDSA_P256,
        http01_port=free_port(),
    )
    run_client(
        cmd,
        certbot_env(served.root_pem_path),
        cwd=workdir.parent,
        extra_diagnostics=lambda: certbot_log_tail(workdir),
    )
    live = workdir / "config" / "live" / name
    (leaf,) = load_chain(live / "cert.pem")
    return live / "cert.pem", live / "privkey.pem", leaf


def certbot_revoke(
    certbot: str, served: ServedCertctl, workdir: Path, cert_path: Path, *extra: str
) -> None:
    cmd = [
        certbot,
        "revoke",
        "--non-interactive",
        "--server",
        served.directory_url,
        *certbot_dirs(workdir),
        "--cert-path",
        str(cert_path),
        "--no-delete-after-revoke",
        *extra,
    ]
    run_client(
        cmd,
        certbot_env(served.root_pem_path),
        cwd=workdir.parent,
        extra_diagnostics=lambda: certbot_log_tail(workdir),
    )


def test_certbot_revoke_by_account_key(
    certbot_bin: str, served_certctl: ServedCertctl, tmp_path: Path
) -> None:
    workdir = tmp_path / "certbot"
    cert_path, _, leaf = certbot_obtain(
        certbot_bin, served_certctl, workdir, "certbot-revoke.example.test"
    )
    assert_status(served_certctl, leaf, "active")
    # The same config dir: certbot signs with the account that ordered it (kid).
    certbot_revoke(certbot_bin, served_certctl, workdir, cert_path, "--reason", "superseded")
    assert_status(served_certctl, leaf, "revoked", SUPERSEDED)
    assert revoked_by(served_certctl, leaf).startswith("acme:acct-")


def test_certbot_revoke_by_certificate_key(
    certbot_bin: str, served_certctl: ServedCertctl, tmp_path: Path
) -> None:
    cert_path, key_path, leaf = certbot_obtain(
        certbot_bin, served_certctl, tmp_path / "owner", "certbot-keyrevoke.example.test"
    )
    # A fresh config dir has no account: certbot signs with the certificate key (jwk).
    fresh = tmp_path / "stranger"
    certbot_revoke(
        certbot_bin,
        served_certctl,
        fresh,
        cert_path,
        "--key-path",
        str(key_path),
        "--reason",
        "keycompromise",
    )
    assert_status(served_certctl, leaf, "revoked", KEY_COMPROMISE)
    assert (
        revoked_by(served_certctl, leaf)
        == f"acme-cert-key:{cert_show(served_certctl, leaf)['serial']}"
    )


# -- lego ---------------------------------------------------------------------------------------


def lego_common(served: ServedCertctl, lego_path: Path, name: str) -> list[str]:
    return [
        "--server",
        served.directory_url,
        "--email",
        LEGO_EMAIL,
        "--accept-tos",
        "--path",
        str(lego_path),
        "-d",
        name,
    ]


def lego_obtain(
    lego: str, served: ServedCertctl, lego_path: Path, name: str
) -> tuple[list[str], x509.Certificate]:
    """lego run; returns (the command without its action, the leaf)."""
    run = lego_run_command(
        lego=lego,
        directory_url=served.directory_url,
        lego_path=lego_path,
        names=[name],
        key_type=ECDSA_P256,
        http_port=free_port(),
        email=LEGO_EMAIL,
    )
    run_client(run, lego_env(served.root_pem_path), cwd=lego_path.parent)
    return run[:-1], lego_leaf(lego_path, name)


def lego_leaf(lego_path: Path, name: str) -> x509.Certificate:
    return load_chain(lego_path / "certificates" / f"{name}.crt")[0]


def test_lego_revoke(lego_bin: str, served_certctl: ServedCertctl, tmp_path: Path) -> None:
    lego_path = tmp_path / "lego"
    name = "lego-revoke.example.test"
    _, leaf = lego_obtain(lego_bin, served_certctl, lego_path, name)
    assert_status(served_certctl, leaf, "active")
    cmd = [lego_bin, *lego_common(served_certctl, lego_path, name), "revoke"]
    run_client(
        [*cmd, "--keep", "--reason", str(CESSATION_OF_OPERATION)],
        lego_env(served_certctl.root_pem_path),
        cwd=tmp_path,
    )
    assert_status(served_certctl, leaf, "revoked", CESSATION_OF_OPERATION)
    assert revoked_by(served_certctl, leaf).startswith("acme:acct-")


def test_lego_renew_forced(lego_bin: str, served_certctl: ServedCertctl, tmp_path: Path) -> None:
    lego_path = tmp_path / "lego"
    name = "lego-renew.example.test"
    base, old = lego_obtain(lego_bin, served_certctl, lego_path, name)
    # --days 3650: every certificate of this CA is "due", so lego renews now.
    run_client(
        [*base, "renew", "--days", "3650", "--no-random-sleep"],
        lego_env(served_certctl.root_pem_path),
        cwd=tmp_path,
    )
    certificates = lego_path / "certificates"
    bundle = load_chain(certificates / f"{name}.crt")
    new = bundle[0]
    assert new.serial_number != old.serial_number
    assert new.not_valid_after_utc >= old.not_valid_after_utc
    assert_issued(
        leaf_pem=write_pem(tmp_path / "leaf.pem", bundle[:1]),
        chain_pem=certificates / f"{name}.issuer.crt",
        key_pem=certificates / f"{name}.key",
        root_pem=served_certctl.root_pem_path,  # written from `certctl ca root`
        names=(name,),
        key_type=ECDSA_P256,
    )
    # Renewal does not revoke: both certificates are in the inventory, both active.
    assert_status(served_certctl, old, "active")
    assert_status(served_certctl, new, "active")
