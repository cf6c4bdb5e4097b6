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


@pytest.mark.parametrize(
    "segment",
    [
        "\udcff",  # not UTF-8 (%ff, decoded with surrogateescape or replaced)
        "\ufffd",
        "\u20ac",
        "\x00",
        "x\r\nX-Injected: 1",
        "x\n",  # config's "$" also matches before a final newline
        'x>;rel="next",<evil',
        "Default",
        "-x",
        "x" * 64,
    ],
)
def test_profile_segment_that_is_no_profile_id_keeps_the_shorthand_prefix(segment: str) -> None:
    """The prefix goes into every answer's Link header: never one built from the segment.
    The id is kept, for the unknown-profile answer."""
    for rest, op in (("directory", "directory"), ("order/ord-1", "order_read")):
        prefix, profile_id, route, _ = resolve(f"/acme/profile/{segment}/{rest}", DEFAULT)
        assert (prefix, profile_id) == ("/acme", segment)
        assert route is not None and route.op == op
    assert resolve(f"/acme/profile/{segment}/nope", DEFAULT)[:3] == ("/acme", segment, None)


@pytest.mark.parametrize("segment", ["p", "p1", "a_b-c", "0", "x" * 63])
def test_profile_id_keeps_its_url_family(segment: str) -> None:
    assert resolve(f"/acme/profile/{segment}/directory", DEFAULT)[:2] == (
        f"/acme/profile/{segment}",
        segment,
    )
