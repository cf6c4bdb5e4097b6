"""Caddy (Debian package ``caddy``) with the Caddyfile of docs/walkthroughs/caddy.md.

The Caddyfile is the walkthrough's template (``interop.walkthroughs.CADDYFILE``) with
loopback ports and temporary paths substituted; tests/unit/test_walkthroughs.py checks
that the document shows the same template. Caddy obtains its certificate on start from a
``trust_authenticated`` profile; the test then checks the site Caddy serves: its chain
verifies against ``certctl ca root``, and it is the certificate Caddy stored.
"""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from interop.clients.caddy import CaddyProcess, served_leaf, storage_file
from interop.walkthroughs import caddyfile

from tests.support.certs import ECDSA_P256, assert_issued, load_chain, write_pem
from tests.support.gating import require_executable
from tests.support.ports import free_port
from tests.support.server import ServedCertctl, run_certctl

pytestmark = pytest.mark.e2e

PROFILE = "web"
SITE = "www.example.test"
PROFILE_VISIBLE_TIMEOUT_S = 10.0


@pytest.fixture
def caddy_bin() -> str:
    """Path of caddy; skips (fails under CERTCTL_TEST_REQUIRE_ALL=1) when missing."""
    return require_executable("caddy", "apt-get install caddy")


def wait_for_directory(server: ServedCertctl, url: str) -> None:
    """A new profile reaches the running server within about a second."""
    ctx = ssl.create_default_context(cafile=str(server.root_pem_path))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    deadline = time.monotonic() + PROFILE_VISIBLE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            with opener.open(url, timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            exc.close()
        time.sleep(0.2)
    pytest.fail(f"{url} did not answer 200 within {PROFILE_VISIBLE_TIMEOUT_S:.0f}s")


def test_caddy_obtains_and_serves_a_certificate(
    caddy_bin: str, served_certctl: ServedCertctl, database_url: str | None, tmp_path: Path
) -> None:
    created = run_certctl(
        [
            "profile",
            "create",
            PROFILE,
            "--acme-auth-mode",
            "trust_authenticated",
            "--allowed-names",
            SITE,
            "--data-dir",
            str(served_certctl.data_dir),
        ],
        database_url,
    )
    assert created.returncode == 0, created.stderr
    directory_url = f"{served_certctl.base_url}/acme/profile/{PROFILE}/directory"
    wait_for_directory(served_certctl, directory_url)

    https_port = free_port()
    storage = tmp_path / "storage"
    caddy = CaddyProcess(
        tmp_path / "caddy",
        caddyfile(
            directory_url=directory_url,
            root_pem=str(served_certctl.root_pem_path),
            email="e2e@example.test",
            http_port=str(free_port()),
            https_port=str(https_port),
            storage=str(storage),
            admin="off",
            site=SITE,
        ),
    )
    caddy.start(caddy_bin)
    try:
        try:
            caddy.wait_for(storage, [SITE])
        except Exception as exc:
            log = caddy.log_path.read_text(errors="replace")[-4000:]
            pytest.fail(f"{exc}\n--- caddy log ---\n{log}", pytrace=False)
        served = served_leaf(https_port, SITE, served_certctl.root_pem_path)
    finally:
        caddy.stop()

    stored = storage_file(storage, SITE, ".crt")
    key = storage_file(storage, SITE, ".key")
    assert stored is not None and key is not None
    bundle = load_chain(stored)
    assert len(bundle) >= 2, f"{stored} holds no chain"
    leaf = assert_issued(
        leaf_pem=write_pem(tmp_path / "leaf.pem", bundle[:1]),
        chain_pem=write_pem(tmp_path / "chain.pem", bundle[1:]),
        key_pem=key,
        root_pem=served_certctl.root_pem_path,
        names=(SITE,),
        key_type=ECDSA_P256,
    )
    assert served.serial_number == leaf.serial_number, "Caddy serves another certificate"

    shown = run_certctl(
        [
            "cert",
            "show",
            format(leaf.serial_number, "x"),
            "--data-dir",
            str(served_certctl.data_dir),
        ],
        database_url,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["profile_id"] == PROFILE
