"""An EAB kid that no kid of ours can be (create_key: "kid-" and base64url) is an unknown
kid (RFC 8555 §7.3.4), answered without asking the store: on PostgreSQL a NUL in it was
a DataError, a 500 where SQLite answered unauthorized."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from acme import messages
from cryptography.hazmat.primitives.asymmetric import ec
from josepy.jwk import JWKEC

from certctl.acme.jwk import PublicJWK
from certctl.config import AcmeServerSettings
from certctl.domain.errors import AcmeError, ProblemType
from certctl.ra.context import RAContext
from certctl.ra.eab import check_binding
from certctl.storage.db import Database
from tests.unit.storage.helpers import NOW, seed_profile

URL = "https://ca.test/acme/new-account"


def _binding(key: ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    eab = messages.ExternalAccountBinding.from_data(
        account_public_key=JWKEC(key=key.public_key()),
        kid=kid,
        hmac_key=base64.urlsafe_b64encode(b"k" * 32).decode().rstrip("="),
        directory=messages.Directory({"newAccount": URL}),
    )
    result: dict[str, Any] = json.loads(json.dumps(eab))
    return result


@pytest.mark.parametrize("kid", ["kid-nope", "kid-\x00", "\x00", "kid-*", "kid-a b"])
def test_kid_no_key_has_is_an_unknown_kid(db: Database, kid: str) -> None:
    with db.write() as conn:
        profile = seed_profile(conn)
    ctx = RAContext(db, lambda: NOW, AcmeServerSettings())
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = PublicJWK.from_public_key(key.public_key())
    with pytest.raises(AcmeError) as info:
        check_binding(ctx, profile, jwk, _binding(key, kid), URL)
    assert (info.value.type, info.value.detail) == (
        ProblemType.UNAUTHORIZED,
        "unknown external account binding key id",
    )
