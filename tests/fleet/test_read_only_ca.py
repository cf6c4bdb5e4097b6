"""A replica whose CA directory is mounted read-only, as docs/deployment.md sets up a fleet.

The CA is created once (``certctl init``) and its root key taken away (kept offline); the
replica then runs in a mount namespace of its own where ``<data dir>/ca`` is a read-only
bind mount, and must still start, issue, and answer OCSP (its delegated responder then
lives in memory), writing nothing there.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID

from tests.fleet.conftest import fleet_database
from tests.integration.acme_lib import acme_client
from tests.support.gating import require_or_skip
from tests.support.ports import free_port
from tests.support.server import certctl_env, certctl_executable, run_certctl

pytestmark = [pytest.mark.fleet, pytest.mark.postgres]

STARTUP_TIMEOUT_S = 30.0
# $1 the CA directory, $2 certctl, $3 the data directory, $4 HOST:PORT.
MOUNT_AND_SERVE = 'mount --bind -o ro "$1" "$1" && exec "$2" serve --data-dir "$3" --listen "$4"'


def _require_mount_namespaces() -> None:
    tools = all(shutil.which(t) for t in ("unshare", "mount"))
    require_or_skip(tools and os.geteuid() == 0, "needs root with unshare and mount")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, timeout=10, check=False)
    require_or_skip(probe.returncode == 0, "cannot create a mount namespace (unshare -m)")


def _tree(directory: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``directory`` with its size and mtime."""
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
    }


@contextlib.contextmanager
def _served_read_only(data_dir: Path, database_url: str, log: Path) -> Iterator[str]:
    """``certctl serve`` with ``data_dir/ca`` read-only; yields its base URL."""
    listen = f"127.0.0.1:{free_port()}"
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                "unshare",
                "-m",
                "--propagation",
                "private",
                "sh",
                "-c",
                MOUNT_AND_SERVE,
                "sh",
                str(data_dir / "ca"),
                str(certctl_executable()),
                str(data_dir),
                listen,
            ],
            env=certctl_env(database_url),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield f"https://{listen}"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def _wait_healthy(base_url: str, root_pem: Path, log: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(root_pem))
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with httpx.Client(verify=ctx, trust_env=False, timeout=5) as http:
        while True:
            try:
                if http.get(f"{base_url}/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"never healthy:\n{log.read_text(errors='replace')[-4000:]}")
            time.sleep(0.2)


def test_replica_with_a_read_only_ca_issues_and_answers_ocsp(tmp_path: Path) -> None:
    _require_mount_namespaces()
    data_dir = tmp_path / "data"
    log = tmp_path / "server.log"
    with fleet_database() as url:
        init = run_certctl(["init", "--data-dir", str(data_dir)], url)
        assert init.returncode == 0, init.stderr
        root = run_certctl(["ca", "root", "--data-dir", str(data_dir)], url)
        assert root.returncode == 0, root.stderr
        root_pem = tmp_path / "root.pem"
        root_pem.write_text(root.stdout)
        offline = tmp_path / "offline"
        offline.mkdir()
        (data_dir / "ca" / "keys" / "root-ca.pem").rename(offline / "root-ca.pem")
        before = _tree(data_dir / "ca")

        with _served_read_only(data_dir, url, log) as base_url:
            _wait_healthy(base_url, root_pem, log)
            client = acme_client(f"{base_url}/acme/directory", root_pem)
            client.register()
            _, chain_pem, _ = client.issue("ro.fleet.test")
            leaf, issuer = x509.load_pem_x509_certificates(chain_pem.encode())[:2]
            answer = _ocsp(leaf, issuer, root_pem)

        assert answer.response_status is ocsp.OCSPResponseStatus.SUCCESSFUL
        assert answer.certificate_status is ocsp.OCSPCertStatus.GOOD
        # Signed by a responder the issuer delegated (RFC 6960 §4.2.2.2), kept in memory.
        (responder,) = answer.certificates
        responder.verify_directly_issued_by(issuer)
        ekus = responder.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert ExtendedKeyUsageOID.OCSP_SIGNING in ekus
        assert _tree(data_dir / "ca") == before, "the read-only CA directory changed"
    assert "Read-only file system" not in log.read_text(errors="replace")


def _ocsp(leaf: x509.Certificate, issuer: x509.Certificate, root_pem: Path) -> ocsp.OCSPResponse:
    aia = leaf.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    (url,) = [
        d.access_location.value
        for d in aia
        if d.access_method == AuthorityInformationAccessOID.OCSP
    ]
    request = ocsp.OCSPRequestBuilder().add_certificate(leaf, issuer, hashes.SHA256()).build()
    ctx = ssl.create_default_context(cafile=str(root_pem))
    with httpx.Client(verify=ctx, trust_env=False, timeout=15) as http:
        response = http.post(
            url,
            content=request.public_bytes(serialization.Encoding.DER),
            headers={"Content-Type": "application/ocsp-request"},
        )
    assert response.status_code == 200, response.text
    return ocsp.load_der_ocsp_response(response.content)
