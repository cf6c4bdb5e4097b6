"""A server whose ``ca/`` lacks the issuer a stored profile is bound to says so at start
(a replica started with a CA of its own against a shared database)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from certctl.bootstrap import initialized
from certctl.config import Settings, load_settings


def _settings(data_dir: Path, database: Path) -> Settings:
    return load_settings(
        {"CERTCTL_DATA_DIR": str(data_dir), "CERTCTL_DATABASE_URL": f"sqlite:///{database}"}
    )


def test_a_profile_bound_to_an_issuer_this_ca_lacks_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    shared = tmp_path / "shared.db"
    with caplog.at_level(logging.ERROR, logger="certctl.bootstrap"):
        with initialized(_settings(tmp_path / "first", shared)):
            pass
        assert caplog.records == []  # its own CA signs its own default profile
        with initialized(_settings(tmp_path / "second", shared)):
            pass
    [record] = caplog.records
    message = record.getMessage()
    assert "'default'" in message and "cannot sign" in message
    assert str(tmp_path / "second" / "ca") in message
