from __future__ import annotations

import multiprocessing
import queue
import stat
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certctl.ca import FileKeyBackend, LocalCA, issuer_id, load_or_create_ca
from tests.unit.ca.helpers import NOW, bootstrap_worker, fixed_clock

PROCESSES = 4
Outcome = tuple[str, list[str]]  # what a bootstrap worker reports: root PEM, issuer ids
T = TypeVar("T", bound=x509.ExtensionType)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _ext(cert: x509.Certificate, kind: type[T]) -> x509.Extension[T]:
    return cert.extensions.get_extension_for_class(kind)


def test_first_call_creates_the_layout(local_ca: LocalCA, ca_dir: Path) -> None:
    (issuer,) = local_ca.issuers.values()
    ca = ca_dir / "ca"
    assert (ca / "root.pem").read_text() == local_ca.root_pem
    assert (ca / "issuers" / issuer.id / "cert.pem").read_text() == issuer.cert_pem
    keys = sorted(p.name for p in (ca / "keys").glob("*.pem"))
    assert keys == ["issuing-ca-1.pem", "root-ca.pem"]
    for key in (ca / "keys").glob("*.pem"):
        assert _mode(key) == 0o600
    assert _mode(ca / "keys") == 0o700
    assert _mode(ca) == 0o700


def test_second_call_loads_the_same_ca(local_ca: LocalCA, ca_dir: Path) -> None:
    later = lambda: NOW + timedelta(days=3)  # noqa: E731 - a different clock must not matter
    again = load_or_create_ca(ca_dir, clock=later, key_type="rsa-2048")
    assert again.root_pem == local_ca.root_pem
    assert list(again.issuers) == list(local_ca.issuers)
    assert again.default_issuer.cert_pem == local_ca.default_issuer.cert_pem


def test_issuer_id_comes_from_the_ski(local_ca: LocalCA) -> None:
    issuer = local_ca.default_issuer
    assert issuer.id == "iss-" + issuer.ski[:8].hex()
    assert issuer.id == issuer_id(issuer.certificate)
    assert len(issuer.id) == 4 + 16


def test_root_profile(local_ca: LocalCA) -> None:
    root = local_ca.root
    assert root.subject.rfc4514_string() == "CN=certctl Root CA,O=certctl"
    assert root.issuer == root.subject
    basic = _ext(root, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length is None
    usage = _ext(root, x509.KeyUsage)
    assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
    root.verify_directly_issued_by(root)
    lifetime = root.not_valid_after_utc - root.not_valid_before_utc
    assert timedelta(days=3650) <= lifetime <= timedelta(days=3660)


def test_intermediate_profile(local_ca: LocalCA) -> None:
    issuer = local_ca.default_issuer
    cert = issuer.certificate
    assert cert.subject.rfc4514_string() == "CN=certctl Issuing CA 1,O=certctl"
    cert.verify_directly_issued_by(local_ca.root)
    basic = _ext(cert, x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = _ext(cert, x509.KeyUsage)
    assert usage.critical
    assert usage.value.digital_signature and usage.value.key_cert_sign and usage.value.crl_sign
    root_ski = _ext(local_ca.root, x509.SubjectKeyIdentifier).value.digest
    assert issuer.aki == root_ski
    assert issuer.ski == _ext(cert, x509.SubjectKeyIdentifier).value.digest
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert timedelta(days=1820) <= lifetime <= timedelta(days=1830)


def test_issuer_chain_is_intermediate_then_root(local_ca: LocalCA) -> None:
    issuer = local_ca.default_issuer
    assert issuer.chain_pem == issuer.cert_pem + local_ca.root_pem
    certs = x509.load_pem_x509_certificates(issuer.chain_pem.encode())
    assert [c.subject for c in certs] == [issuer.certificate.subject, local_ca.root.subject]


def test_concurrent_bootstrap_yields_one_ca(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results: Queue[Outcome] = ctx.Queue()
    workers = [
        ctx.Process(target=bootstrap_worker, args=(str(tmp_path), barrier, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcomes = _collect(results, workers)
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert len(set(map(str, outcomes))) == 1
    root_pem, issuer_ids = outcomes[0]
    assert len(issuer_ids) == 1
    assert [p.name for p in (tmp_path / "ca" / "issuers").iterdir()] == issuer_ids
    assert load_or_create_ca(tmp_path, clock=fixed_clock).root_pem == root_pem


def _collect(results: Queue[Outcome], workers: Sequence[BaseProcess]) -> list[Outcome]:
    """Every worker's result; stops early once all workers have exited (a crash)."""
    outcomes: list[Outcome] = []
    deadline = time.monotonic() + 120
    while len(outcomes) < len(workers) and time.monotonic() < deadline:
        try:
            outcomes.append(results.get(timeout=0.5))
        except queue.Empty:
            if not any(worker.is_alive() for worker in workers):
                break
    return outcomes


def test_rsa_ca(rsa_ca: LocalCA) -> None:
    issuer = rsa_ca.default_issuer
    assert isinstance(issuer.certificate.public_key(), rsa.RSAPublicKey)
    assert isinstance(rsa_ca.root.public_key(), rsa.RSAPublicKey)
    issuer.certificate.verify_directly_issued_by(rsa_ca.root)


def test_p384_ca_signs_with_sha384(p384_ca: LocalCA) -> None:
    cert = p384_ca.default_issuer.certificate
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size == 384
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha384"


def test_custom_name_prefix(tmp_path: Path) -> None:
    ca = load_or_create_ca(tmp_path, clock=fixed_clock, common_name_prefix="Example")
    assert ca.root.subject.rfc4514_string() == "CN=Example Root CA,O=Example"


def test_injected_key_backend(tmp_path: Path) -> None:
    backend = FileKeyBackend(tmp_path / "elsewhere")
    load_or_create_ca(tmp_path / "data", clock=fixed_clock, key_backend=backend)
    assert (tmp_path / "elsewhere" / "root-ca.pem").exists()
    assert not (tmp_path / "data" / "ca" / "keys").exists()


def test_interrupted_issuer_creation_is_completed(tmp_path: Path) -> None:
    first = load_or_create_ca(tmp_path, clock=fixed_clock)
    (tmp_path / "ca" / "issuers" / first.default_issuer.id / "cert.pem").unlink()
    again = load_or_create_ca(tmp_path, clock=fixed_clock)
    # The issuer key survived, so the re-created issuer has the same key and id.
    assert list(again.issuers) == list(first.issuers)


def test_naive_clock_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        load_or_create_ca(tmp_path, clock=lambda: datetime(2026, 1, 1))


def test_too_long_prefix_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_or_create_ca(tmp_path, clock=fixed_clock, common_name_prefix="x" * 60)
