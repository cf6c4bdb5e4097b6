"""Hostile ids in ACME paths, over real sockets on SQLite and PostgreSQL.

A hostile-input probe found a literal ``*`` path segment (the route table's own
placeholder) reaching the handlers with no id at all: a KeyError, answered 500. It must
get the answer any unknown id gets.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.integration.wire import (
    PROBLEM,
    Account,
    Key,
    Wire,
    assert_acme_headers,
    b64,
    csr_der,
)

UNKNOWN = "nope"  # an id of the right alphabet that names nothing


@pytest.fixture(scope="module")
def account(wire: Wire) -> Account:
    return wire.new_account()


def _answer(response: httpx.Response, directory_url: str) -> tuple[int, str, str]:
    """(status, type, detail) of a problem that is still an ACME response (§6.5, §7.1)."""
    assert response.headers["Content-Type"].split(";")[0] == PROBLEM, response.text
    assert_acme_headers(response, directory_url)
    doc: dict[str, Any] = response.json()
    return response.status_code, doc["type"], doc["detail"]


# -- ids in the path: a literal "*" and a NUL are unknown ids -----------------------------

# (path under /acme/ with {} for the id, payload: None is POST-as-GET, "csr" a finalize)
KID_RESOURCES: list[tuple[str, Any]] = [
    ("order/{}", None),
    ("order/{}/finalize", "csr"),
    ("authz/{}", None),
    ("authz/{}", {"status": "deactivated"}),
    ("challenge/{}", None),
    ("challenge/{}", {}),
    ("cert/{}", None),
    ("account/{}", None),
    ("account/{}/orders", None),
]
# (the id, as the path spells it)
HOSTILE_IDS = [
    pytest.param("*", "*", id="star"),
    pytest.param("*", "%2A", id="star-escaped"),
]


def _at(
    wire: Wire, account: Account, resource: str, payload: Any, spelled: str, decoded: str
) -> httpx.Response:
    """A kid request of ``account`` to ``resource`` with the id as ``spelled`` on the wire;
    the JWS url is the URL the server sees, with the id decoded (RFC 8555 §6.4)."""
    if payload == "csr":
        payload = {"csr": b64(csr_der(Key.ec256(), ["ids.example.test"]))}
    base = wire.served.base_url + "/acme/"
    return wire.signed(
        account.key,
        base + resource.format(decoded),
        payload,
        kid=account.url,
        post_to=base + resource.format(spelled),
    )


@pytest.mark.parametrize(("resource", "payload"), KID_RESOURCES)
@pytest.mark.parametrize(("decoded", "spelled"), HOSTILE_IDS)
def test_hostile_path_id_answers_as_an_unknown_id(
    wire: Wire, account: Account, resource: str, payload: Any, decoded: str, spelled: str
) -> None:
    unknown = _at(wire, account, resource, payload, UNKNOWN, UNKNOWN)
    expected = _answer(unknown, wire.directory_url)
    assert expected[0] in (403, 404), expected  # not found; another's account: unauthorized
    got = _at(wire, account, resource, payload, spelled, decoded)
    assert _answer(got, wire.directory_url) == expected


@pytest.mark.parametrize("prefix", ["/acme", "/acme/profile/default"])
@pytest.mark.parametrize("spelled", ["*", "%2A", "%00"])
def test_hostile_renewal_info_id_answers_as_an_unknown_id(
    wire: Wire, prefix: str, spelled: str
) -> None:
    directory = wire.served.base_url + prefix + "/directory"
    base = wire.served.base_url + prefix + "/renewal-info/"
    expected = _answer(wire.http.get(base + UNKNOWN), directory)
    assert _answer(wire.http.get(base + spelled), directory) == expected
