"""ValidationAuthority.validate: request checks, clock, and the never-raise contract."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from certctl.domain.errors import ProblemType
from certctl.domain.model import Identifier
from certctl.va import ValidationAuthority, ValidationRequest, VASettings, dns01_digest
from certctl.va.model import IPAddress
from tests.unit.va.helpers import KEY_AUTH, TOKEN, FakeResolver, async_test, request

FROZEN = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("req", "fragment"),
    [
        (request("tls-sni-01", "a.example"), "unsupported challenge type"),
        (request("http-01", "a.example", ident_type="email"), "unsupported identifier type"),
        (request("http-01", "not-an-ip", ident_type="ip"), "not an IP address"),
        (request("dns-01", "192.0.2.1", ident_type="ip"), "dns-01 cannot validate an ip"),
        (request("http-01", "*.a.example"), "cannot validate a wildcard"),
        (request("tls-alpn-01", "*.a.example"), "cannot validate a wildcard"),
        (request("http-01", "a.example", key_auth="other-token.thumb"), "does not belong"),
        (request("http-01", "a.example", key_auth=f"{TOKEN}.bad thumb"), "does not belong"),
        (
            ValidationRequest("http-01", Identifier("dns", "a.example"), "a/../b", "a/../b.x"),
            "does not belong",
        ),
    ],
)
@async_test
async def test_impossible_requests_are_malformed(req: ValidationRequest, fragment: str) -> None:
    resolver = FakeResolver()
    result = await ValidationAuthority(VASettings(), resolver=resolver).validate(req)
    assert not result.valid and result.error is not None
    assert result.error.type is ProblemType.MALFORMED
    assert fragment in result.error.detail
    assert resolver.calls == []  # refused before any lookup


@async_test
async def test_results_carry_the_injected_clock() -> None:
    resolver = FakeResolver(txt_records={"_acme-challenge.a.example": [dns01_digest(KEY_AUTH)]})
    va = ValidationAuthority(VASettings(), resolver=resolver, clock=lambda: FROZEN)
    ok = await va.validate(request("dns-01", "a.example"))
    bad = await va.validate(request("dns-01", "b.example"))
    assert ok.valid and ok.validated_at == FROZEN
    assert not bad.valid and bad.validated_at == FROZEN


class BrokenResolver(FakeResolver):
    async def resolve_addresses(self, name: str) -> list[IPAddress]:
        raise RuntimeError("a bug, with internal detail")


@async_test
async def test_unexpected_errors_become_server_internal_without_detail() -> None:
    va = ValidationAuthority(VASettings(), resolver=BrokenResolver())
    result = await va.validate(request("http-01", "a.example"))
    assert result.error is not None and result.error.type is ProblemType.SERVER_INTERNAL
    assert "internal detail" not in result.error.detail


def test_default_resolver_is_dnspython_pinned_to_settings() -> None:
    from certctl.va import DnsPythonResolver

    va = ValidationAuthority(VASettings(resolvers=(("127.0.0.1", 5353),)))
    assert isinstance(va.resolver, DnsPythonResolver)
