"""``CERTCTL_ACME_SERVER_*`` settings as a client sees them, one configured instance each.

Settings that only change routing (enabled, default profile) run on SQLite alone; the
ones whose effect goes through the store run on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.integration.acme_lib import acme_client
from tests.integration.servers import serve
from tests.integration.wire import Key, Wire, assert_problem, http_client, link_targets
from tests.support.server import ServedCertctl

TOS_URL = "https://example.test/tos"
WEBSITE = "https://example.test/about"
CAA_IDENTITIES = ("ca.example.test", "pki.example.test")
ORDER_TTL = timedelta(hours=1)
AUTHZ_TTL = timedelta(minutes=30)
PAGE_SIZE = 2
# Slack for the time between the server's clock reading and ours.
CLOCK_SLACK = timedelta(seconds=30)

ACME = "CERTCTL_ACME_SERVER_"


# -- instances ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tos_wire(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> Iterator[Wire]:
    """Terms of service, short order/authz lifetimes and small order-list pages."""
    env = {
        ACME + "TOS_URL": TOS_URL,
        ACME + "ORDER_TTL": "1h",
        ACME + "AUTHZ_TTL": "30m",
        ACME + "ORDERS_PAGE_SIZE": str(PAGE_SIZE),
    }
    with serve(request, tmp_path_factory, database_url, env) as server:
        client = Wire(server)
        yield client
        client.close()


@pytest.fixture(scope="module")
def meta_wire(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
) -> Iterator[Wire]:
    env = {
        ACME + "WEBSITE": WEBSITE,
        ACME + "CAA_IDENTITIES": ",".join(CAA_IDENTITIES),
        ACME + "EAB_REQUIRED": "true",
    }
    with serve(request, tmp_path_factory, database_url, env) as server:
        client = Wire(server)
        yield client
        client.close()


@pytest.fixture(scope="module")
def no_default_profile(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedCertctl]:
    env = {ACME + "DEFAULT_PROFILE_ID": ""}
    ready = "/acme/profile/default/directory"
    with serve(request, tmp_path_factory, None, env, ready_path=ready) as server:
        yield server


@pytest.fixture(scope="module")
def acme_disabled(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedCertctl]:
    env = {ACME + "ENABLED": "false"}
    with serve(request, tmp_path_factory, None, env, ready_path="/health") as server:
        yield server


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


# -- terms of service (RFC 8555 §7.1.1, §7.3) -------------------------------------------


def test_terms_of_service_in_directory_meta(tos_wire: Wire) -> None:
    assert tos_wire.directory["meta"]["termsOfService"] == TOS_URL


@pytest.mark.parametrize("agreement", [None, False], ids=["absent", "false"])
def test_registration_without_agreement_is_refused(tos_wire: Wire, agreement: bool | None) -> None:
    key = Key.ec256()
    body: dict[str, Any] = {"contact": ["mailto:a@example.test"]}
    if agreement is not None:
        body["termsOfServiceAgreed"] = agreement
    response = tos_wire.signed(key, tos_wire["newAccount"], body)
    assert_problem(response, 400, "malformed", tos_wire.directory_url)
    missing = tos_wire.signed(key, tos_wire["newAccount"], {"onlyReturnExisting": True})
    assert_problem(missing, 400, "accountDoesNotExist", tos_wire.directory_url)


def test_registration_with_agreement(tos_wire: Wire) -> None:
    client = acme_client(tos_wire.directory_url, tos_wire.served.root_pem_path)
    assert client.acme.directory.meta.terms_of_service == TOS_URL
    regr = client.register(terms_of_service_agreed=True)
    assert regr.body.terms_of_service_agreed is True
    assert regr.body.status == "valid"


# -- lifetimes -------------------------------------------------------------------------


def test_order_and_authz_ttl_reflected_in_expires(tos_wire: Wire) -> None:
    account = tos_wire.new_account()
    before = datetime.now(UTC).replace(microsecond=0)
    response = tos_wire.new_order(account, "ttl.example.test")
    after = datetime.now(UTC)
    assert response.status_code == 201, response.text
    order = response.json()
    order_expires = _parse_time(order["expires"])
    assert before + ORDER_TTL - CLOCK_SLACK <= order_expires <= after + ORDER_TTL
    authz = tos_wire.as_account(account, order["authorizations"][0]).json()
    authz_expires = _parse_time(authz["expires"])
    assert before + AUTHZ_TTL - CLOCK_SLACK <= authz_expires <= after + AUTHZ_TTL


# -- orders list pagination (RFC 8555 §7.1.2.1) ------------------------------------------


def test_orders_list_paginates(tos_wire: Wire) -> None:
    account = tos_wire.new_account()
    created = [
        tos_wire.new_order(account, f"page{i}.example.test").headers["Location"] for i in range(5)
    ]
    orders_url = tos_wire.as_account(account, account.url).json()["orders"]
    seen: list[str] = []
    pages: list[int] = []
    url: str | None = orders_url
    while url is not None:
        response = tos_wire.as_account(account, url)
        assert response.status_code == 200, response.text
        page = response.json()["orders"]
        assert len(page) <= PAGE_SIZE
        seen += page
        pages.append(len(page))
        nexts = link_targets(response, "next")
        assert len(nexts) <= 1, nexts
        url = nexts[0] if nexts else None
        assert len(pages) <= 5, "pagination does not end"
    assert pages == [2, 2, 1]
    assert sorted(seen) == sorted(created)
    assert len(set(seen)) == 5


# -- directory meta and external account binding (RFC 8555 §7.1.1, §7.3.4) -------------


def test_website_caa_and_eab_in_directory_meta(meta_wire: Wire) -> None:
    meta = meta_wire.directory["meta"]
    assert meta["website"] == WEBSITE
    assert meta["caaIdentities"] == list(CAA_IDENTITIES)
    assert meta["externalAccountRequired"] is True
    assert "termsOfService" not in meta


def test_eab_required_refuses_new_account_without_binding(meta_wire: Wire) -> None:
    key = Key.ec256()
    response = meta_wire.signed(key, meta_wire["newAccount"], {"termsOfServiceAgreed": True})
    assert_problem(response, 403, "externalAccountRequired", meta_wire.directory_url)
    missing = meta_wire.signed(key, meta_wire["newAccount"], {"onlyReturnExisting": True})
    assert_problem(missing, 400, "accountDoesNotExist", meta_wire.directory_url)


# -- routing -------------------------------------------------------------------------------


def test_no_default_profile(no_default_profile: ServedCertctl) -> None:
    base = no_default_profile.base_url
    wire = Wire(no_default_profile, "/acme/profile/default/directory")
    try:
        assert wire["newAccount"] == f"{base}/acme/profile/default/new-account"
        for path in ("/acme/directory", "/acme/new-nonce"):
            response = wire.http.get(base + path)
            assert_problem(response, 403, "userActionRequired", f"{base}/acme/directory")
        # The profile's own URLs work end to end.
        account = wire.new_account()
        assert wire.new_order(account, "a.example.test").status_code == 201
    finally:
        wire.close()


def test_acme_disabled_is_404(acme_disabled: ServedCertctl) -> None:
    base = acme_disabled.base_url
    with http_client(acme_disabled) as http:
        for path in (
            "/acme/directory",
            "/acme/new-nonce",
            "/acme/profile/default/directory",
            "/acme/new-account",
        ):
            response = http.get(base + path)
            assert response.status_code == 404, (path, response.status_code)
            assert "Replay-Nonce" not in response.headers
        assert http.post(base + "/acme/new-account", content=b"{}").status_code == 404
        assert http.get(base + "/health").status_code == 200
