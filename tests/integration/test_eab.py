"""External account binding (RFC 8555 §7.3.4) end to end through certbot's acme library:
keys made with `certctl eab create`, single use and reuse, revocation, profile binding,
per-profile requirement, and the key's own allowed names."""

from __future__ import annotations

import re
from typing import Any

import pytest
from acme import errors as acme_errors
from acme import messages
from josepy.jwk import JWKEC

from tests.integration.acme_lib import AcmeClient, acme_client
from tests.integration.cli import certctl_cli, create_profile
from tests.integration.wire import Key
from tests.support.server import ServedCertctl


def make_key(served: ServedCertctl, *args: str) -> tuple[str, str]:
    out = certctl_cli(served, "eab", "create", *args)
    kid = re.search(r"^kid: (\S+)$", out, re.M)
    key = re.search(r"^hmac_key: (\S+)$", out, re.M)
    assert kid and key, out
    return kid.group(1), key.group(1)


def directory(served: ServedCertctl, profile: str) -> str:
    return f"{served.base_url}/acme/profile/{profile}/directory"


def register_with(client: AcmeClient, kid: str, hmac_key: str) -> messages.RegistrationResource:
    eab = messages.ExternalAccountBinding.from_data(
        account_public_key=JWKEC(key=client.key.private.public_key()),
        kid=kid,
        hmac_key=hmac_key,
        directory=client.acme.directory,
    )
    return client.register(external_account_binding=eab)


def problem_of(exc: pytest.ExceptionInfo[Any]) -> str:
    err = exc.value
    assert isinstance(err, messages.Error), err
    return str(err.typ)


@pytest.fixture(scope="module")
def eab_profile(served: ServedCertctl) -> str:
    create_profile(served, "eabonly", "--eab-required")
    return "eabonly"


def test_profile_requiring_eab_refuses_plain_registration(
    served: ServedCertctl, eab_profile: str
) -> None:
    client = acme_client(directory(served, eab_profile), served.root_pem_path)
    assert client.acme.directory.meta.external_account_required is True
    with pytest.raises(messages.Error) as info:
        client.register()
    assert problem_of(info).endswith(":externalAccountRequired")


def test_single_use_key_binds_one_account(served: ServedCertctl, eab_profile: str) -> None:
    kid, hmac_key = make_key(served, "--profile", eab_profile)
    first = acme_client(directory(served, eab_profile), served.root_pem_path)
    regr = register_with(first, kid, hmac_key)
    assert regr.body.status == "valid"
    first.net.account = regr
    first.issue("eab.example.test")  # the bound account issues normally
    second = acme_client(directory(served, eab_profile), served.root_pem_path)
    with pytest.raises(messages.Error) as info:
        register_with(second, kid, hmac_key)
    assert problem_of(info).endswith(":unauthorized")
    assert f"{kid}" in certctl_cli(served, "eab", "list")


def test_reusable_key_binds_several(served: ServedCertctl, eab_profile: str) -> None:
    kid, hmac_key = make_key(served, "--profile", eab_profile, "--reusable")
    for _ in range(2):
        client = acme_client(directory(served, eab_profile), served.root_pem_path)
        assert register_with(client, kid, hmac_key).body.status == "valid"


def test_wrong_mac_key_and_unknown_kid_are_refused(served: ServedCertctl, eab_profile: str) -> None:
    kid, _ = make_key(served, "--profile", eab_profile)
    _, other_key = make_key(served, "--profile", eab_profile)
    for use_kid, use_key in ((kid, other_key), ("kid-nosuchkey", other_key)):
        client = acme_client(directory(served, eab_profile), served.root_pem_path)
        with pytest.raises(messages.Error) as info:
            register_with(client, use_kid, use_key)
        assert problem_of(info).endswith(":unauthorized")


def test_revoked_key_and_key_of_another_profile_are_refused(
    served: ServedCertctl, eab_profile: str
) -> None:
    kid, hmac_key = make_key(served, "--profile", eab_profile)
    certctl_cli(served, "eab", "revoke", kid)
    client = acme_client(directory(served, eab_profile), served.root_pem_path)
    with pytest.raises(messages.Error) as info:
        register_with(client, kid, hmac_key)
    assert problem_of(info).endswith(":unauthorized")
    kid, hmac_key = make_key(served, "--profile", "default")
    client = acme_client(directory(served, eab_profile), served.root_pem_path)
    with pytest.raises(messages.Error) as info:
        register_with(client, kid, hmac_key)
    assert problem_of(info).endswith(":unauthorized")


def test_key_allowed_names_bind_the_account(served: ServedCertctl, eab_profile: str) -> None:
    kid, hmac_key = make_key(served, "--profile", eab_profile, "--allowed-names", "team.test")
    client = acme_client(directory(served, eab_profile), served.root_pem_path, Key.ec256())
    client.net.account = register_with(client, kid, hmac_key)
    client.issue("api.team.test")
    with pytest.raises((messages.Error, acme_errors.Error)) as info:
        client.order("api.team.test", "evil-team.test")
    assert str(getattr(info.value, "typ", "")).endswith(":rejectedIdentifier")
