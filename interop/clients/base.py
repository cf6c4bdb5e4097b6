"""What every client of the matrix provides, and small shared helpers."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Protocol

from cryptography import x509
from tests.support.certs import load_chain

from interop.lab import Lab
from interop.model import Mode, Session, StepError


class Client(Protocol):
    name: str  # the row label
    source: str  # where it comes from: "PyPI (certbot)", "Debian (lego)", ...
    trust: str  # how the client is given `certctl ca root`
    notes: tuple[str, ...]  # what running it showed (listed under the matrix)
    install_hint: str
    # (mode, scenario) -> why it is expected to fail (a client limitation found by running it)
    known_failures: dict[tuple[Mode, str], str]

    def version(self) -> str | None:
        """The installed version, None when the client is not installed."""

    def run(self, lab: Lab, session: Session) -> None:
        """Run every scenario of ``session.mode`` in order, recording each cell."""


def debian_version(package: str) -> str | None:
    """The installed version of a Debian package, None when it is not installed."""
    try:
        result = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Status}|${Version}", package],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    status, _, version = result.stdout.partition("|")
    if result.returncode != 0 or not status.endswith(" installed"):
        return None
    return version.strip() or None


def leaf_of(path: Path) -> x509.Certificate:
    return load_chain(path)[0]


def expect_new_serial(old: x509.Certificate, new: x509.Certificate) -> None:
    if old.serial_number == new.serial_number:
        raise StepError("no new certificate: the serial did not change")
