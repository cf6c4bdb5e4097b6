"""One CA per key type for the whole session: creating RSA CAs is slow."""

from __future__ import annotations

from pathlib import Path

import pytest

from certctl.ca import LocalCA, load_or_create_ca
from tests.unit.ca.helpers import fixed_clock


@pytest.fixture(scope="session")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ca-p256")


@pytest.fixture(scope="session")
def local_ca(ca_dir: Path) -> LocalCA:
    return load_or_create_ca(ca_dir, clock=fixed_clock)


@pytest.fixture(scope="session")
def rsa_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return load_or_create_ca(
        tmp_path_factory.mktemp("ca-rsa"), key_type="rsa-2048", clock=fixed_clock
    )


@pytest.fixture(scope="session")
def p384_ca(tmp_path_factory: pytest.TempPathFactory) -> LocalCA:
    return load_or_create_ca(
        tmp_path_factory.mktemp("ca-p384"), key_type="ecdsa-p384", clock=fixed_clock
    )
