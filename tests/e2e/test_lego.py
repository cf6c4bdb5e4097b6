"""lego (Debian package ``lego``) against a served instance."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.certs import KEY_TYPES, KeyType, assert_issued, load_chain, write_pem
from tests.support.clients import lego_env, lego_run_command, run_client
from tests.support.ports import free_port
from tests.support.server import ServedCertctl

pytestmark = pytest.mark.e2e

NAME_SETS = [
    pytest.param(("a.example.test",), id="single"),
    pytest.param(("a.example.test", "b.example.test"), id="multi"),
]


@pytest.mark.parametrize("key_type", [pytest.param(k, id=k.id) for k in KEY_TYPES])
@pytest.mark.parametrize("names", NAME_SETS)
def test_lego_run(
    lego_bin: str,
    served_certctl: ServedCertctl,
    tmp_path: Path,
    key_type: KeyType,
    names: tuple[str, ...],
) -> None:
    lego_path = tmp_path / "lego"
    cmd = lego_run_command(
        lego=lego_bin,
        directory_url=served_certctl.directory_url,
        lego_path=lego_path,
        names=names,
        key_type=key_type,
        http_port=free_port(),
    )
    run_client(cmd, lego_env(served_certctl.root_pem_path), cwd=tmp_path)

    certificates = lego_path / "certificates"
    bundle_path = certificates / f"{names[0]}.crt"
    issuer_path = certificates / f"{names[0]}.issuer.crt"
    key_path = certificates / f"{names[0]}.key"
    for path in (bundle_path, issuer_path, key_path):
        assert path.is_file(), f"lego did not write {path}"

    # <domain>.crt is the leaf followed by its issuer(s); <domain>.issuer.crt the issuer(s).
    bundle = load_chain(bundle_path)
    assert len(bundle) >= 2, f"{bundle_path} holds {len(bundle)} certificate(s), not a bundle"
    assert bundle[1:] == load_chain(issuer_path)
    assert_issued(
        leaf_pem=write_pem(tmp_path / "leaf.pem", bundle[:1]),
        chain_pem=issuer_path,
        key_pem=key_path,
        root_pem=served_certctl.root_pem_path,
        names=names,
        key_type=key_type,
    )
