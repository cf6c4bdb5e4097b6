"""`certctl crl generate`, in-process, against a tmp data dir (SQLite) and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cryptography import x509

from certctl.cli.main import main
from certctl.storage import revocations
from certctl.storage.db import Database


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("CERTCTL_"):
            monkeypatch.delenv(name)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_prints_number_and_entries_and_stores_the_crl(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    store_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CERTCTL_PKI_BASE_URL", "http://pki.example/")
    data = ["--data-dir", str(tmp_path / "data"), "--database-url", store_url]
    code, out, err = run(capsys, "crl", "generate", *data)
    assert code == 0, err
    header, row = out.strip().splitlines()
    assert header.split() == ["ISSUER", "NUMBER", "ENTRIES", "NEXT_UPDATE", "URL"]
    issuer_id, number, entries, _, url = row.split()
    assert (number, entries) == ("1", "0")
    assert url == f"http://pki.example/.well-known/pki/crl/{issuer_id}"

    code, out, _ = run(capsys, "crl", "generate", "--issuer", issuer_id, *data)
    assert code == 0 and out.strip().splitlines()[1].split()[1] == "2"
    db = Database(store_url)
    try:
        with db.read() as conn:
            stored = revocations.get_crl(conn, issuer_id)
    finally:
        db.dispose()
    assert stored is not None and stored.crl_number == 2
    crl = x509.load_der_x509_crl(stored.der)
    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 2


def test_unknown_issuer_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "crl", "generate", "--issuer", "iss-nope", "--data-dir", str(tmp_path / "d")
    )
    assert code == 1
    assert "no issuer 'iss-nope'" in err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "crl", "generate", "--help")
    assert code == 0 and "--issuer" in out and "CERTCTL_PKI_BASE_URL" in out
