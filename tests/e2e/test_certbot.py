"""certbot (from PyPI, installed with the dev dependencies) against a served instance."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.certs import KEY_TYPES, KeyType, assert_issued, load_chain
from tests.support.clients import (
    certbot_certonly_command,
    certbot_env,
    certbot_log_tail,
    run_client,
)
from tests.support.ports import free_port
from tests.support.server import ServedCertctl

pytestmark = pytest.mark.e2e

NAME_SETS = [
    pytest.param(("a.example.test",), id="single"),
    pytest.param(("a.example.test", "b.example.test"), id="multi"),
]


@pytest.mark.parametrize("key_type", [pytest.param(k, id=k.id) for k in KEY_TYPES])
@pytest.mark.parametrize("names", NAME_SETS)
def test_certbot_certonly(
    certbot_bin: str,
    served_certctl: ServedCertctl,
    tmp_path: Path,
    key_type: KeyType,
    names: tuple[str, ...],
) -> None:
    workdir = tmp_path / "certbot"
    cmd = certbot_certonly_command(
        certbot=certbot_bin,
        directory_url=served_certctl.directory_url,
        workdir=workdir,
        names=names,
        key_type=key_type,
        http01_port=free_port(),
    )
    run_client(
        cmd,
        certbot_env(served_certctl.root_pem_path),
        cwd=tmp_path,
        extra_diagnostics=lambda: certbot_log_tail(workdir),
    )

    live = workdir / "config" / "live" / names[0]
    for name in ("cert.pem", "chain.pem", "fullchain.pem", "privkey.pem"):
        assert (live / name).is_file(), f"certbot did not write {live / name}"
    assert_issued(
        leaf_pem=live / "cert.pem",
        chain_pem=live / "chain.pem",
        key_pem=live / "privkey.pem",
        root_pem=served_certctl.root_pem_path,
        names=names,
        key_type=key_type,
    )
    assert load_chain(live / "fullchain.pem") == [
        *load_chain(live / "cert.pem"),
        *load_chain(live / "chain.pem"),
    ]
