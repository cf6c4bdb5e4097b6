"""CRL and OCSP for relying parties, over real sockets, checked with openssl and pkilint.

Certificates come from the ACME surface (certbot's ``acme`` library); revocation goes
through revoke-cert; relying parties are played by ``openssl ocsp``, ``openssl crl`` and
``openssl verify -crl_check``. Every check runs on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import base64
import contextlib
import re
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from tests.integration.acme_lib import AcmeClient, acme_client
from tests.integration.cli import create_profile
from tests.integration.servers import serve
from tests.integration.wire import http_client
from tests.support.postgres import fresh_database
from tests.support.server import ServedCertctl
from tests.unit.revocation.support import openssl, openssl_result, pkilint

KEY_COMPROMISE = 1


@dataclass(frozen=True)
class Leaf:
    """An issued certificate and the files openssl wants, in one directory."""

    cert: x509.Certificate
    issuer: x509.Certificate
    client: AcmeClient
    directory: Path

    @property
    def pem(self) -> Path:
        return self.directory / "leaf.pem"

    @property
    def issuer_pem(self) -> Path:
        return self.directory / "issuer.pem"

    @property
    def cafile(self) -> Path:
        """Root and issuing CA: the trust anchors for ``-CAfile``."""
        return self.directory / "cafile.pem"

    @property
    def crl_url(self) -> str:
        cdp = self.cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        names = cdp[0].full_name
        assert names is not None
        return str(names[0].value)

    @property
    def ocsp_url(self) -> str:
        aia = self.cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
        return next(
            str(d.access_location.value)
            for d in aia.value
            if d.access_method == AuthorityInformationAccessOID.OCSP
        )


def issue(served: ServedCertctl, directory: Path, name: str, directory_url: str = "") -> Leaf:
    client = acme_client(directory_url or served.directory_url, served.root_pem_path)
    client.register()
    _, chain, _ = client.issue(name)
    leaf, issuer = x509.load_pem_x509_certificates(chain.encode())
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    issuer_pem = issuer.public_bytes(serialization.Encoding.PEM)
    (directory / "issuer.pem").write_bytes(issuer_pem)
    (directory / "cafile.pem").write_bytes(served.root_pem_path.read_bytes() + issuer_pem)
    return Leaf(leaf, issuer, client, directory)


def issuer_id(issuer: x509.Certificate) -> str:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return "iss-" + ski.digest.hex()[:16]


def openssl_ocsp(leaf: Leaf, *extra: str) -> str:
    return openssl(
        "ocsp",
        "-issuer",
        leaf.issuer_pem,
        "-cert",
        leaf.pem,
        "-url",
        leaf.ocsp_url,
        "-CAfile",
        leaf.cafile,
        "-resp_text",
        *extra,
    )


@pytest.fixture(scope="module")
def http(served: ServedCertctl) -> Iterator[httpx.Client]:
    client = http_client(served)
    yield client
    client.close()


def fetch_crl(http: httpx.Client, leaf: Leaf) -> bytes:
    response = http.get(leaf.crl_url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pkix-crl"
    return response.content


def write_crl_pem(leaf: Leaf, der: bytes) -> Path:
    (leaf.directory / "crl.der").write_bytes(der)
    openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        leaf.directory / "crl.der",
        "-out",
        leaf.directory / "crl.pem",
    )
    return leaf.directory / "crl.pem"


def test_leaf_points_at_this_servers_crl_and_ocsp(served: ServedCertctl, tmp_path: Path) -> None:
    leaf = issue(served, tmp_path, "pointers.pki.example.test")
    base = f"{served.base_url}/.well-known/pki"
    assert leaf.crl_url == f"{base}/crl/{issuer_id(leaf.issuer)}"
    assert leaf.ocsp_url == f"{base}/ocsp/{issuer_id(leaf.issuer)}"
    text = openssl("x509", "-in", leaf.pem, "-noout", "-text")
    assert f"URI:{leaf.crl_url}" in text
    assert f"OCSP - URI:{leaf.ocsp_url}" in text


def test_revocation_seen_by_openssl_ocsp_crl_and_verify(
    served: ServedCertctl, http: httpx.Client, tmp_path: Path
) -> None:
    leaf = issue(served, tmp_path, "revoke.pki.example.test")
    good = openssl_ocsp(leaf)
    assert f"{leaf.pem}: good" in good and "Response verify OK" in good
    assert "WARNING: no nonce" not in good  # openssl sends one; it is echoed
    crl_pem = write_crl_pem(leaf, fetch_crl(http, leaf))
    verified = openssl(
        "verify", "-crl_check", "-CRLfile", crl_pem, "-CAfile", leaf.cafile, leaf.pem
    )
    assert f"{leaf.pem}: OK" in verified

    leaf.client.acme.revoke(leaf.cert, KEY_COMPROMISE)

    revoked = openssl_ocsp(leaf)
    assert f"{leaf.pem}: revoked" in revoked and "Response verify OK" in revoked
    assert "Reason: keyCompromise" in revoked
    der = fetch_crl(http, leaf)
    (leaf.directory / "crl.der").write_bytes(der)
    listed = openssl(
        "crl",
        "-inform",
        "DER",
        "-in",
        leaf.directory / "crl.der",
        "-CAfile",
        leaf.cafile,
        "-noout",
        "-text",
    )
    assert "verify OK" in listed
    serial = f"{leaf.cert.serial_number:X}"
    serial = serial.rjust(len(serial) + len(serial) % 2, "0")  # openssl prints whole octets
    assert f"SERIAL NUMBER: {serial}" in listed.upper()
    assert "Key Compromise" in listed
    assert f"URI:{leaf.crl_url}" in listed  # the IDP: same scope as the leaf's CDP
    crl_pem = write_crl_pem(leaf, der)
    code, output = openssl_result(
        "verify", "-crl_check", "-CRLfile", crl_pem, "-CAfile", leaf.cafile, leaf.pem
    )
    assert code != 0 and "certificate revoked" in output, output


def test_ocsp_by_get_base64_and_serial(
    served: ServedCertctl, http: httpx.Client, tmp_path: Path
) -> None:
    leaf = issue(served, tmp_path, "get.pki.example.test")
    request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate(leaf.cert, leaf.issuer, hashes.SHA1())  # noqa: S303 - RFC 5019
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    encoded = urllib.parse.quote(base64.b64encode(request).decode(), safe="")
    for url in (
        f"{leaf.ocsp_url}/{encoded}",  # RFC 6960 Appendix A.1
        f"{leaf.ocsp_url}/{leaf.cert.serial_number:x}",  # by serial
    ):
        response = http.get(url)
        assert response.status_code == 200, url
        assert response.headers["content-type"] == "application/ocsp-response"
        assert re.fullmatch(
            r"public, max-age=\d+, no-transform, must-revalidate", response.headers["cache-control"]
        )
        parsed = ocsp.load_der_ocsp_response(response.content)
        assert parsed.certificate_status is ocsp.OCSPCertStatus.GOOD
        assert parsed.serial_number == leaf.cert.serial_number
    unknown = ocsp.load_der_ocsp_response(http.get(f"{leaf.ocsp_url}/abcdef0123456789").content)
    assert unknown.response_status is ocsp.OCSPResponseStatus.UNAUTHORIZED
    assert (
        http.get(f"{served.base_url}/.well-known/pki/ocsp/iss-0000000000000000/1").status_code
        == 404
    )


def test_crl_etag_and_not_modified(
    served: ServedCertctl, http: httpx.Client, tmp_path: Path
) -> None:
    leaf = issue(served, tmp_path, "etag.pki.example.test")
    first = http.get(leaf.crl_url)
    etag = first.headers["etag"]
    assert re.fullmatch(r"public, max-age=\d+, no-transform", first.headers["cache-control"])
    again = http.get(leaf.crl_url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    leaf.client.acme.revoke(leaf.cert, KEY_COMPROMISE)
    changed = http.get(leaf.crl_url, headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


def test_pkilint_clean_on_leaf_crl_and_ocsp_response(
    served: ServedCertctl, http: httpx.Client, tmp_path: Path
) -> None:
    leaf = issue(served, tmp_path, "lint.pki.example.test")
    assert pkilint("lint_pkix_cert", leaf.pem) == []
    leaf.client.acme.revoke(leaf.cert, KEY_COMPROMISE)
    crl = leaf.directory / "crl.der"
    crl.write_bytes(fetch_crl(http, leaf))
    assert pkilint("lint_crl", "-t", "CRL", "-p", "PKIX", crl) == []
    response = leaf.directory / "ocsp.der"
    response.write_bytes(http.get(f"{leaf.ocsp_url}/{leaf.cert.serial_number:x}").content)
    assert pkilint("lint_ocsp_response", response) == []


def test_must_staple_profile(served: ServedCertctl, tmp_path: Path) -> None:
    create_profile(served, "staple", "--must-staple")
    leaf = issue(
        served,
        tmp_path,
        "staple.pki.example.test",
        directory_url=f"{served.base_url}/acme/profile/staple/directory",
    )
    feature = leaf.cert.extensions.get_extension_for_class(x509.TLSFeature)
    assert list(feature.value) == [x509.TLSFeatureType.status_request]  # RFC 7633
    text = openssl("x509", "-in", leaf.pem, "-noout", "-text")
    assert re.search(r"TLS Feature:\s*\n\s*status_request", text), text


def test_metrics(
    served: ServedCertctl, http: httpx.Client, tmp_path: Path, database_url: str | None
) -> None:
    leaf = issue(served, tmp_path, "metrics.pki.example.test")
    http.get(leaf.crl_url)
    http.get(f"{leaf.ocsp_url}/{leaf.cert.serial_number:x}")
    text = http.get(f"{served.base_url}/metrics").text
    assert re.search(r'^certctl_pki_ocsp_requests_total\{status="good"\} [1-9]', text, re.M)
    assert re.search(r"^certctl_pki_crl_requests_total [1-9]", text, re.M)
    assert re.search(r"^certctl_pki_crl_generations_total [1-9]", text, re.M)
    if database_url is None:  # SQLite, one worker: group commit
        commits = re.search(r"^certctl_sqlite_commits_total (\S+)", text, re.M)
        syncs = re.search(r"^certctl_sqlite_wal_syncs_total (\S+)", text, re.M)
        assert commits and syncs, text
        # The issuance committed, and no commit was answered without a sync.
        assert float(commits[1]) >= float(syncs[1]) >= 1
        assert re.search(r"^certctl_sqlite_wal_sync_failures_total 0\.0$", text, re.M)
    else:
        assert "certctl_sqlite_wal_syncs_total" not in text


# -- a tiny rate limit, and several workers ---------------------------------------------


@contextlib.contextmanager
def own_database(database_url: str | None) -> Iterator[str | None]:
    """A database of its own for another instance (it has its own CA): on PostgreSQL a
    fresh one; with SQLite the instance's data directory already holds one."""
    if database_url is None:
        yield None
        return
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def limited(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> Iterator[ServedCertctl]:
    env = {"CERTCTL_PKI_RATE_LIMIT_PER_SECOND": "1", "CERTCTL_PKI_RATE_LIMIT_BURST": "3"}
    with own_database(database_url) as url, serve(request, tmp_path_factory, url, env) as server:
        yield server


def test_rate_limit(limited: ServedCertctl, tmp_path: Path) -> None:
    leaf = issue(limited, tmp_path, "limited.pki.example.test")
    with http_client(limited) as http:
        codes = [http.get(leaf.crl_url).status_code for _ in range(6)]
        assert codes[:3] == [200, 200, 200] and 429 in codes[3:], codes
        refused = http.get(f"{leaf.ocsp_url}/{leaf.cert.serial_number:x}")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        time.sleep(1.1)
        assert http.get(leaf.crl_url).status_code == 200
        # The ACME surface is not affected.
        assert http.get(limited.directory_url).status_code == 200


@pytest.fixture(scope="module")
def workers(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> Iterator[ServedCertctl]:
    env = {"CERTCTL_WORKERS": "3"}
    with own_database(database_url) as url, serve(request, tmp_path_factory, url, env) as server:
        yield server


def test_group_commit_is_counted_across_workers(
    workers: ServedCertctl, tmp_path: Path, database_url: str | None
) -> None:
    issue(workers, tmp_path, "counted.pki.example.test")
    # A new connection per request spreads them over the workers: each shows the sum.
    for _ in range(6):
        with http_client(workers) as http:
            text = http.get(f"{workers.base_url}/metrics").text
        if database_url is not None:
            assert "certctl_sqlite_wal_syncs_total" not in text
            continue
        commits = re.search(r"^certctl_sqlite_commits_total (\S+)", text, re.M)
        syncs = re.search(r"^certctl_sqlite_wal_syncs_total (\S+)", text, re.M)
        assert commits and syncs, text
        # The issuance committed, and its answers waited for syncs. (With several
        # workers a read-only answer waits for a sync too: syncs may outnumber commits.)
        assert float(commits[1]) >= 1 and float(syncs[1]) >= 1
        assert re.search(r"^certctl_sqlite_wal_sync_failures_total 0\.0$", text, re.M)


def test_revocation_reaches_every_worker_within_a_second(
    workers: ServedCertctl, tmp_path: Path
) -> None:
    leaf = issue(workers, tmp_path, "workers.pki.example.test")
    url = f"{leaf.ocsp_url}/{leaf.cert.serial_number:x}"

    def status(http: httpx.Client) -> ocsp.OCSPCertStatus:
        return ocsp.load_der_ocsp_response(http.get(url).content).certificate_status

    # A new connection per request spreads them over the workers; all cache "good".
    for _ in range(12):
        with http_client(workers) as http:
            assert status(http) is ocsp.OCSPCertStatus.GOOD
    leaf.client.acme.revoke(leaf.cert, KEY_COMPROMISE)
    time.sleep(1.5)  # every worker looks at the feed at least once a second
    for _ in range(12):
        with http_client(workers) as http:
            assert status(http) is ocsp.OCSPCertStatus.REVOKED
