"""certbot's ``acme`` library, set up against a served instance: the well-behaved client."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from acme import client, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC

from tests.integration.wire import Key, csr_der

PEM_CHAIN = "application/pem-certificate-chain"


@dataclass
class AcmeClient:
    """One account key and its ``ClientV2`` on one directory."""

    acme: client.ClientV2
    key: Key

    @property
    def net(self) -> client.ClientNetwork:
        net: client.ClientNetwork = self.acme.net
        return net

    def register(self, **fields: Any) -> messages.RegistrationResource:
        """newAccount with ``NewRegistration.from_data(**fields)``; ToS agreed by default."""
        fields.setdefault("terms_of_service_agreed", True)
        regr: messages.RegistrationResource = self.acme.new_account(
            messages.NewRegistration.from_data(**fields)
        )
        return regr

    def post_as_get(self, url: str) -> requests.Response:
        """RFC 8555 §6.3 through the library's signer (nonce handling included)."""
        response: requests.Response = self.net.post(
            url, None, new_nonce_url=self.acme.directory["newNonce"]
        )
        return response

    def order(self, *names: str) -> tuple[messages.OrderResource, Key]:
        """newOrder from a CSR for ``names`` (the library derives the identifiers)."""
        cert_key = Key.ec256()
        csr = x509.load_der_x509_csr(csr_der(cert_key, list(names)))
        order: messages.OrderResource = self.acme.new_order(
            csr.public_bytes(serialization.Encoding.PEM)
        )
        return order, cert_key

    def issue(self, *names: str) -> tuple[messages.OrderResource, str, Key]:
        """Order, finalize and download: (the valid order, the PEM chain, the leaf key).

        ``begin_finalization`` rather than ``finalize_order``: this server finalizes
        synchronously, and the library's poll loop would sleep a second first.
        """
        order, cert_key = self.order(*names)
        order = self.acme.begin_finalization(order)
        assert order.body.status == messages.STATUS_VALID, order.body
        assert order.body.certificate is not None
        response = self.post_as_get(order.body.certificate)
        assert response.headers["Content-Type"] == PEM_CHAIN, response.headers
        return order, response.text, cert_key


def acme_client(directory_url: str, root_pem: Path, key: Key | None = None) -> AcmeClient:
    """A ``ClientV2`` on ``directory_url`` that trusts only the served root."""
    key = key or Key.ec256()
    assert isinstance(key.private, ec.EllipticCurvePrivateKey)
    # verify_ssl is passed on to requests, which takes a CA bundle path as well as a bool.
    net = client.ClientNetwork(
        JWKEC(key=key.private),
        alg=ES256,
        verify_ssl=str(root_pem),  # type: ignore[arg-type]
        user_agent="certctl-integration-tests",
    )
    net.session.trust_env = False  # loopback: never through a proxy from the environment
    directory = client.ClientV2.get_directory(directory_url, net)
    return AcmeClient(client.ClientV2(directory, net), key)
