"""The certctl command line, and direct reads, against a served instance's store."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import create_engine, text

from tests.support.server import ServedCertctl, run_certctl


def certctl_cli(served: ServedCertctl, *args: str) -> str:
    """Run ``certctl <args> --data-dir <data dir>`` with the instance's database URL."""
    result = run_certctl([*args, "--data-dir", str(served.data_dir)], served.database_url)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def create_profile(served: ServedCertctl, profile_id: str, *options: str) -> dict[str, Any]:
    """``certctl profile create``: the running server reads profiles per request."""
    shown: dict[str, Any] = json.loads(
        certctl_cli(served, "profile", "create", profile_id, *options)
    )
    return shown


def cert_show(served: ServedCertctl, key: str) -> dict[str, Any]:
    """``certctl cert show <id or serial>`` as JSON."""
    shown: dict[str, Any] = json.loads(certctl_cli(served, "cert", "show", key))
    return shown


def count_rows(served: ServedCertctl, sql: str, **params: object) -> int:
    """``SELECT count(*) ...`` straight from the instance's database (read only)."""
    url = served.database_url or f"sqlite+pysqlite:///{served.data_dir / 'certctl.db'}"
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            count: int = conn.execute(text(sql), params).scalar_one()
    finally:
        engine.dispose()
    return count
