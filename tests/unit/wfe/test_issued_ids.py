"""Ids from paths and kids that no id of ours can be (ra.context.new_id: a prefix and
base64url) are unknown ids, answered without asking the store: PostgreSQL refuses a NUL
in text, which a hostile probe turned into 500s."""

from __future__ import annotations

import pytest

from certctl.domain.errors import AcmeError, ProblemType
from certctl.ra.context import new_id
from certctl.wfe.urls import AcmeUrls, is_issued_id

URLS = AcmeUrls("https://ca.test", "/acme")
PREFIX = "https://ca.test/acme/account/"


@pytest.mark.parametrize("prefix", ["acct-", "ord-", "authz-", "chall-", "cert-", "mc-"])
def test_every_id_we_make_is_an_issued_id(prefix: str) -> None:
    assert all(is_issued_id(new_id(prefix)) for _ in range(200))


@pytest.mark.parametrize(
    "text", ["", "\x00", "acct-\x00", "acct-x\x00", "*", "a.b", "a b", "é", "a\n", "x" * 65]
)
def test_other_text_is_not(text: str) -> None:
    assert not is_issued_id(text)


@pytest.mark.parametrize("account_id", ["\x00", "acct-\x00", "acct-AAAA\x00", "*", "a\n"])
def test_kid_naming_no_possible_account_is_account_does_not_exist(account_id: str) -> None:
    with pytest.raises(AcmeError) as info:
        URLS.account_id_from_kid(PREFIX + account_id)
    # As the store's answer for an unknown account (ra.accounts), word for word.
    assert (info.value.type, info.value.detail) == (
        ProblemType.ACCOUNT_DOES_NOT_EXIST,
        "no such account",
    )


def test_kid_of_an_issued_id_is_that_id() -> None:
    account_id = new_id("acct-")
    assert URLS.account_id_from_kid(PREFIX + account_id) == account_id
