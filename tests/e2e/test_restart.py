"""State survives a restart: an order made before it is finalized after it (SQLite file and
PostgreSQL), through certbot's acme library over real sockets."""

from __future__ import annotations

import pytest
from cryptography import x509

from tests.support.acme_client import csr_for, deadline, new_client
from tests.support.server import ServedCertctl

pytestmark = pytest.mark.e2e


def test_order_created_before_restart_is_finalized_after(served_certctl: ServedCertctl) -> None:
    acme = new_client(served_certctl.directory_url, served_certctl.root_pem_path)
    names = ["restart.example.test", "www.restart.example.test"]
    order = acme.new_order(csr_for(names))
    assert order.body.status.name == "ready"

    served_certctl.restart()

    done = acme.finalize_order(order, deadline())
    leaf = x509.load_pem_x509_certificate(done.fullchain_pem.encode())
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == sorted(names)
