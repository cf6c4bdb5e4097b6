"""The ACME dispatcher's path resolution: every route of the table in both URL families,
one non-empty segment per parameter, and everything else unknown (a 404 problem)."""

from __future__ import annotations

import pytest

from certctl.wfe.routes import ROUTES, resolve

DEFAULT = "default"


@pytest.mark.parametrize(("suffix", "op"), [(s, op) for s, op, _ in ROUTES])
def test_every_route_resolves_in_both_families(suffix: str, op: str) -> None:
    concrete = suffix.replace("{account_id}", "acct-1").replace("{order_id}", "ord-1")
    for name in ("authz_id", "challenge_id", "cert_id"):
        concrete = concrete.replace("{" + name + "}", "x-1.y_2")
    for path, prefix, profile in (
        ("/acme" + concrete, "/acme", DEFAULT),
        ("/acme/profile/p1" + concrete, "/acme/profile/p1", "p1"),
    ):
        got_prefix, got_profile, route, params = resolve(path, DEFAULT)
        assert route is not None and route.op == op, path
        assert (got_prefix, got_profile) == (prefix, profile)
        if "{" in suffix:
            name = suffix.split("{")[1].split("}", maxsplit=1)[0]
            assert params == {name: concrete.split("/")[2]}
        else:
            assert params == {}


@pytest.mark.parametrize(
    "path",
    [
        "/acme/",
        "/acme/nope",
        "/acme/directory/",  # no trailing-slash aliases
        "/acme/order/",  # a parameter is never empty
        "/acme/order//finalize",
        "/acme/order/a/b",
        "/acme/order/a/finalize/x",
        "/acme/account/a/orders/x",
        "/acme/profile/p1",
        "/acme/profile/p1/",
        "/acme/profile//directory",
        "/acme/profile/p1/profile/p2/directory",
        "/acme/new-nonce/x",
    ],
)
def test_other_paths_are_unknown(path: str) -> None:
    _, _, route, params = resolve(path, DEFAULT)
    assert route is None and params == {}


def test_unknown_path_keeps_its_url_family() -> None:
    """The 404 problem links the directory of the family the client used."""
    assert resolve("/acme/profile/p1/nope", DEFAULT)[:2] == ("/acme/profile/p1", "p1")
    assert resolve("/acme/nope", DEFAULT)[:2] == ("/acme", DEFAULT)
