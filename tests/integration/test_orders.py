"""Orders and authorizations (RFC 8555 §7.1.3, §7.1.4, §7.4, §7.5) on the default profile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography import x509

from tests.integration.acme_lib import acme_client
from tests.integration.cli import create_profile
from tests.integration.wire import (
    Account,
    Key,
    Wire,
    assert_problem,
    csr_der,
    link_targets,
)
from tests.support.server import ServedCertctl

# The default profile's maximum certificate lifetime.
MAX_VALIDITY = timedelta(days=90)

BAD_NAMES = [
    pytest.param("trailing.example.test.", id="trailing-dot"),
    pytest.param(".example.test", id="empty-first-label"),
    pytest.param("a..b", id="empty-inner-label"),
    pytest.param("*.*.x.test", id="double-wildcard"),
    pytest.param("foo*.x.test", id="partial-wildcard"),
    pytest.param("a" * 64 + ".x.test", id="64-char-label"),
    pytest.param("bücher.example.test", id="non-ascii"),
    pytest.param("", id="empty"),
    pytest.param("under_score.example.test", id="underscore"),
]


def _identifiers(*names: str, kind: str = "dns") -> list[dict[str, str]]:
    return [{"type": kind, "value": n} for n in names]


def _orders(wire: Wire, account: Account) -> list[str]:
    url = wire.as_account(account, account.url).json()["orders"]
    response = wire.as_account(account, url)
    assert response.status_code == 200, response.text
    orders: list[str] = response.json()["orders"]
    return orders


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _whole_seconds(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _finalize(
    wire: Wire, account: Account, order: dict[str, Any], *names: str
) -> tuple[str, dict[str, Any], Key]:
    cert_key = Key.ec256()
    response = wire.finalize(account, order, csr_der(cert_key, list(names)))
    assert response.status_code == 200, response.text
    valid: dict[str, Any] = response.json()
    assert valid["status"] == "valid", valid
    return valid["certificate"], valid, cert_key


def _leaf(wire: Wire, account: Account, order: dict[str, Any]) -> x509.Certificate:
    chain = wire.as_account(account, order["certificate"]).content
    return x509.load_pem_x509_certificates(chain)[0]


# -- identifiers -------------------------------------------------------------------------


def test_identifiers_are_normalised(wire: Wire) -> None:
    account = wire.new_account()
    response = wire.new_order(account, "Mixed.Example.TEST", "mixed.example.test", "B.X.Test")
    assert response.status_code == 201, response.text
    order = response.json()
    assert sorted(i["value"] for i in order["identifiers"]) == [
        "b.x.test",
        "mixed.example.test",
    ]
    assert all(i["type"] == "dns" for i in order["identifiers"])
    authz_names = sorted(
        wire.as_account(account, url).json()["identifier"]["value"]
        for url in order["authorizations"]
    )
    assert authz_names == ["b.x.test", "mixed.example.test"]
    # A CSR spelling the names as the client did finalizes it; the certificate has the
    # normalised names.
    csr = csr_der(Key.ec256(), ["MIXED.example.test", "B.X.Test"])
    final = wire.finalize(account, order, csr)
    assert final.status_code == 200, final.text
    chain = wire.as_account(account, final.json()["certificate"]).content
    san = x509.load_pem_x509_certificates(chain)[0].extensions
    names = san.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(names.get_values_for_type(x509.DNSName)) == ["b.x.test", "mixed.example.test"]


def test_new_order_and_finalize_answer_what_a_read_of_the_order_returns(wire: Wire) -> None:
    # Both answer from what their own transaction wrote rather than reading the order back:
    # the answer must still be what a read returns, authorizations in the same order.
    account = wire.new_account()
    names = ("zz.example.test", "aa.example.test", "mm.example.test")
    created = wire.new_order(account, *names)
    assert created.status_code == 201, created.text
    url = created.headers["location"]
    assert created.json() == wire.as_account(account, url).json()
    final = wire.finalize(account, created.json(), csr_der(Key.ec256(), list(names)))
    assert final.status_code == 200, final.text
    assert final.json()["status"] == "valid"
    assert final.json() == wire.as_account(account, url).json()


@pytest.mark.parametrize("name", BAD_NAMES)
def test_bad_name_is_rejected_identifier(wire: Wire, name: str) -> None:
    account = wire.new_account()
    response = wire.as_account(account, wire["newOrder"], {"identifiers": _identifiers(name)})
    doc = assert_problem(response, 400, "rejectedIdentifier", wire.directory_url)
    assert [s["identifier"] for s in doc["subproblems"]] == [{"type": "dns", "value": name}]
    assert doc["subproblems"][0]["type"] == "urn:ietf:params:acme:error:rejectedIdentifier"
    assert _orders(wire, account) == []


def test_mixed_order_lists_only_the_bad_identifiers(wire: Wire) -> None:
    account = wire.new_account()
    bad = [str(p.values[0]) for p in BAD_NAMES]
    good = ["good.example.test", "*.wild.example.test"]
    names = [good[0], *bad[:4], good[1], *bad[4:]]
    response = wire.as_account(account, wire["newOrder"], {"identifiers": _identifiers(*names)})
    doc = assert_problem(response, 400, "rejectedIdentifier", wire.directory_url)
    listed = [s["identifier"]["value"] for s in doc["subproblems"]]
    assert sorted(listed) == sorted(bad), listed
    assert all(s["type"].endswith(":rejectedIdentifier") for s in doc["subproblems"])
    assert _orders(wire, account) == []


@pytest.mark.parametrize(
    ("kind", "value"),
    [("email", "a@example.test"), ("DNS", "a.test"), ("permanent-identifier", "x")],
)
def test_unsupported_identifier_type(wire: Wire, kind: str, value: str) -> None:
    account = wire.new_account()
    identifiers = [*_identifiers("ok.example.test"), {"type": kind, "value": value}]
    response = wire.as_account(account, wire["newOrder"], {"identifiers": identifiers})
    doc = assert_problem(response, 400, "unsupportedIdentifier", wire.directory_url)
    assert [s["identifier"] for s in doc["subproblems"]] == [{"type": kind, "value": value}]
    assert doc["subproblems"][0]["type"].endswith(":unsupportedIdentifier")


@pytest.mark.parametrize("value", ["192.0.2.1", "2001:db8::1"])
def test_ip_identifiers_refused_by_default_profile_policy(wire: Wire, value: str) -> None:
    # RFC 8738 addresses parse, but the default profile's policy does not allow them.
    account = wire.new_account()
    identifiers = [*_identifiers("ok.example.test"), {"type": "ip", "value": value}]
    response = wire.as_account(account, wire["newOrder"], {"identifiers": identifiers})
    doc = assert_problem(response, 400, "rejectedIdentifier", wire.directory_url)
    assert [s["identifier"] for s in doc["subproblems"]] == [{"type": "ip", "value": value}]


# -- requested validity (RFC 8555 §7.1.3, §7.4) -----------------------------------------


@pytest.mark.parametrize(
    ("start_in", "lifetime"),
    [
        pytest.param(timedelta(hours=1), timedelta(days=10), id="both-10d"),
        pytest.param(timedelta(minutes=10), MAX_VALIDITY, id="both-at-max"),
        pytest.param(None, timedelta(days=3), id="not-after-only"),
    ],
)
def test_requested_validity_is_honoured_exactly(
    wire: Wire, start_in: timedelta | None, lifetime: timedelta
) -> None:
    account = wire.new_account()
    now = _whole_seconds(datetime.now(UTC))
    not_before = now + start_in if start_in is not None else None
    not_after = (not_before or now) + lifetime
    extra: dict[str, Any] = {"notAfter": _rfc3339(not_after)}
    if not_before is not None:
        extra["notBefore"] = _rfc3339(not_before)
    response = wire.new_order(account, "validity.example.test", **extra)
    assert response.status_code == 201, response.text
    order = response.json()
    assert order.get("notBefore") == extra.get("notBefore")
    assert order["notAfter"] == extra["notAfter"]

    _, valid, _ = _finalize(wire, account, order, "validity.example.test")
    leaf = _leaf(wire, account, valid)
    assert leaf.not_valid_after_utc == not_after
    if not_before is not None:
        assert leaf.not_valid_before_utc == not_before


@pytest.mark.parametrize(
    ("start_in", "lifetime"),
    [
        pytest.param(timedelta(hours=1), MAX_VALIDITY + timedelta(seconds=1), id="max-plus-1s"),
        pytest.param(timedelta(0), timedelta(days=365), id="a-year"),
        pytest.param(None, MAX_VALIDITY + timedelta(days=1), id="not-after-only"),
        pytest.param(-timedelta(days=1), timedelta(days=2), id="not-before-in-the-past"),
        pytest.param(timedelta(hours=2), -timedelta(hours=1), id="not-after-before-not-before"),
    ],
)
def test_validity_outside_the_profile_is_malformed(
    wire: Wire, start_in: timedelta | None, lifetime: timedelta
) -> None:
    account = wire.new_account()
    now = _whole_seconds(datetime.now(UTC))
    not_before = now + start_in if start_in is not None else None
    extra: dict[str, Any] = {"notAfter": _rfc3339((not_before or now) + lifetime)}
    if not_before is not None:
        extra["notBefore"] = _rfc3339(not_before)
    response = wire.new_order(account, "validity.example.test", **extra)
    assert_problem(response, 400, "malformed", wire.directory_url)
    # Refused, not quietly shortened: no order exists.
    assert _orders(wire, account) == []


LONG_LIVED = "long-lived"


@pytest.fixture(scope="module")
def long_wire(served: ServedCertctl) -> Iterator[Wire]:
    """A profile whose maximum lifetime (10 years) is longer than its issuer's."""
    create_profile(served, LONG_LIVED, "--max-validity-days", "3650")
    client = Wire(served, f"/acme/profile/{LONG_LIVED}/directory")
    yield client
    client.close()


def test_a_leaf_of_a_profile_longer_than_its_issuer_ends_with_the_issuer(long_wire: Wire) -> None:
    """No leaf outlives its issuer (RFC 5280 §6.1.3); asking for nothing, the client gets
    the longest it can. (This was a 500 and an invalid order.)"""
    account = long_wire.new_account()
    _, order = long_wire.ready_order(account, "long.example.test")
    _, valid, _ = _finalize(long_wire, account, order, "long.example.test")
    chain = x509.load_pem_x509_certificates(
        long_wire.as_account(account, valid["certificate"]).content
    )
    leaf, issuer = chain[0], chain[1]
    assert leaf.not_valid_after_utc == issuer.not_valid_after_utc
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc < timedelta(days=3650)


def test_a_requested_validity_past_the_issuers_end_is_malformed(long_wire: Wire) -> None:
    account = long_wire.new_account()
    not_after = _whole_seconds(datetime.now(UTC)) + timedelta(days=3600)
    response = long_wire.new_order(account, "longer.example.test", notAfter=_rfc3339(not_after))
    doc = assert_problem(response, 400, "malformed", long_wire.directory_url)
    assert "issuing CA" in doc["detail"]
    assert _orders(long_wire, account) == []


def test_finalize_once_the_requested_not_after_has_passed_is_malformed(wire: Wire) -> None:
    """The certificate could only be born expired: refused before anything is claimed or
    signed (this was a 500 that left the order invalid)."""
    account = wire.new_account()
    not_after = _whole_seconds(datetime.now(UTC)) + timedelta(seconds=2)
    response = wire.new_order(account, "lapsed.example.test", notAfter=_rfc3339(not_after))
    assert response.status_code == 201, response.text
    order_url, order = response.headers["Location"], response.json()
    time.sleep(max((not_after - datetime.now(UTC)).total_seconds(), 0) + 0.5)
    lapsed = wire.finalize(account, order, csr_der(Key.ec256(), ["lapsed.example.test"]))
    doc = assert_problem(lapsed, 400, "malformed", wire.directory_url)
    assert "notAfter has passed" in doc["detail"]
    assert wire.as_account(account, order_url).json()["status"] == "ready"


def test_requested_validity_with_an_offset_is_honoured(wire: Wire) -> None:
    account = wire.new_account()
    plus_0530 = timezone(timedelta(hours=5, minutes=30))
    not_before = _whole_seconds(datetime.now(plus_0530) + timedelta(hours=1))
    not_after = not_before + timedelta(days=7)
    response = wire.new_order(
        account,
        "offset.example.test",
        notBefore=not_before.isoformat(),
        notAfter=not_after.isoformat(),
    )
    assert response.status_code == 201, response.text
    assert response.json()["notBefore"] == _rfc3339(not_before)
    _, valid, _ = _finalize(wire, account, response.json(), "offset.example.test")
    leaf = _leaf(wire, account, valid)
    assert (leaf.not_valid_before_utc, leaf.not_valid_after_utc) == (not_before, not_after)


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param("{date}T{time}.250Z", id="fractional-seconds"),
        pytest.param("{date}T{time}.000000001Z", id="nanosecond"),
        pytest.param("{date}T{time}", id="no-offset"),
        pytest.param("{date}", id="date-only"),
        pytest.param("{date} {time}Z", id="space-for-T"),
        pytest.param("{basic_date}T{basic_time}Z", id="iso-basic-format"),
    ],
)
def test_validity_that_cannot_be_honoured_exactly_is_malformed(wire: Wire, spelling: str) -> None:
    """A whole-second certificate cannot honour a fraction; other spellings are not
    RFC 3339. Either way: refused, never rounded or guessed."""
    account = wire.new_account()
    when = _whole_seconds(datetime.now(UTC) + timedelta(days=1))
    text = spelling.format(
        date=when.strftime("%Y-%m-%d"),
        time=when.strftime("%H:%M:%S"),
        basic_date=when.strftime("%Y%m%d"),
        basic_time=when.strftime("%H%M%S"),
    )
    for field in ("notBefore", "notAfter"):
        response = wire.new_order(account, "spelling.example.test", **{field: text})
        assert_problem(response, 400, "malformed", wire.directory_url)
    assert _orders(wire, account) == []


# -- ownership and links ---------------------------------------------------------------


def test_other_accounts_order_and_authz_are_404(wire: Wire) -> None:
    owner, intruder = wire.new_account(), wire.new_account()
    order_url, order = wire.ready_order(owner, "owned.example.test")
    authz_url = order["authorizations"][0]
    for url in (order_url, authz_url):
        assert wire.as_account(owner, url).status_code == 200
        assert_problem(wire.as_account(intruder, url), 404, "malformed", wire.directory_url)
    csr = csr_der(Key.ec256(), ["owned.example.test"])
    stolen = wire.finalize(intruder, order, csr)
    assert_problem(stolen, 404, "malformed", wire.directory_url)
    assert wire.as_account(owner, order_url).json()["status"] == "ready"
    # Nor may it read the owner's orders list.
    orders_url = wire.as_account(owner, owner.url).json()["orders"]
    assert_problem(wire.as_account(intruder, orders_url), 403, "unauthorized", wire.directory_url)


def test_authz_links_up_to_its_order(served: ServedCertctl, wire: Wire) -> None:
    client = acme_client(wire.directory_url, served.root_pem_path)
    client.register()
    order, _ = client.order("up.example.test", "up2.example.test")
    assert len(order.authorizations) == 2
    for authzr in order.authorizations:
        assert authzr.body.status.name == "valid"
        response = client.post_as_get(authzr.uri)
        assert link_targets(response, "up") == [order.uri]
        assert link_targets(response, "index") == [wire.directory_url]
