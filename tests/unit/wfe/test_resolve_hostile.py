"""Path resolution of hostile segments: the route table's own "*" placeholder, spelled
out in a path, is an id like any other (a hostile probe got KeyError 500s from it)."""

from __future__ import annotations

import pytest

from certctl.wfe.routes import ROUTES, resolve

DEFAULT = "default"
PARAM_ROUTES = [(suffix, op) for suffix, op, _ in ROUTES if "{" in suffix]


@pytest.mark.parametrize(("suffix", "op"), PARAM_ROUTES)
@pytest.mark.parametrize("prefix", ["/acme", "/acme/profile/p1"])
def test_literal_star_is_the_id_star(prefix: str, suffix: str, op: str) -> None:
    name = suffix.split("{")[1].split("}", maxsplit=1)[0]
    path = prefix + suffix.replace("{" + name + "}", "*")
    _, _, route, params = resolve(path, DEFAULT)
    assert route is not None and route.op == op, path
    assert params == {name: "*"}
