"""certbot's `acme` library as a test client against a served certctl."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from acme import client, crypto_util, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwa import ES256
from josepy.jwk import JWKEC


def ec_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def new_client(directory_url: str, root_pem: Path) -> client.ClientV2:
    """A registered account (fresh P-256 key) on the directory's profile."""
    account_key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(account_key, alg=ES256, user_agent="certctl-tests")
    # requests takes a CA bundle path where acme's annotation says bool.
    net.verify_ssl = str(root_pem)  # type: ignore[assignment]
    directory = client.ClientV2.get_directory(directory_url, net)
    acme = client.ClientV2(directory, net)
    regr = acme.new_account(
        messages.NewRegistration.from_data(email="tests@example.test", terms_of_service_agreed=True)
    )
    net.account = regr
    return acme


def csr_for(names: list[str]) -> bytes:
    return crypto_util.make_csr(ec_key_pem(), names)


def deadline(seconds: int = 30) -> dt.datetime:
    return dt.datetime.now() + dt.timedelta(seconds=seconds)
