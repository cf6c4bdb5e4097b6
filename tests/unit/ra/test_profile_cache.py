"""The request profile cache: a known profile survives a database outage; an unknown one
still fails loudly."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from certctl.acme.nonce import NonceCodec
from certctl.config import AcmeServerSettings
from certctl.ra import RegistrationAuthority, service
from certctl.ra.context import RAContext
from certctl.storage.db import Database
from tests.unit.storage.helpers import NOW, seed_profile


def test_known_profile_is_served_while_the_database_is_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(f"sqlite+pysqlite:///{tmp_path / 'c.db'}")
    db.migrate()
    with db.write() as conn:
        seed_profile(conn)
    ra = RegistrationAuthority(
        RAContext(db, lambda: NOW, AcmeServerSettings()),
        ca=None,  # type: ignore[arg-type]  # profiles need no CA
        nonce_codec=NonceCodec(b"k" * 32, timedelta(minutes=5), lambda: NOW),
    )
    assert ra.acme_profile("default").id == "default"
    monkeypatch.setattr(service, "PROFILE_CACHE_SECONDS", 0.0)
    time.sleep(0.01)

    def down(*_: object, **__: object) -> None:
        raise OperationalError("SELECT", {}, Exception("connection refused"))

    monkeypatch.setattr("certctl.ra.profiles.get_profile", down)
    assert ra.acme_profile("default").id == "default"
    with pytest.raises(OperationalError):
        ra.acme_profile("other")
    db.dispose()
