"""Account contacts (RFC 8555 §7.3): one plain mailto address each, matched in full.

A hostile probe had "mailto:a@b.com\\n" accepted and stored: the address regex ended in
"$", which also matches before a final newline.
"""

from __future__ import annotations

import pytest

from certctl.domain.errors import AcmeError, ProblemType
from certctl.ra.accounts import parse_contacts


@pytest.mark.parametrize(
    "contact",
    [
        "mailto:a@b.com\n",
        "mailto:a@b.com\r\n",
        "mailto:\na@b.com",
        "mailto:a@b.com\nBcc: victim@example.test",
        "mailto:a@b.com\x00",
        "mailto:a@b.com ",
        "mailto:a\n@b.com",
    ],
)
def test_control_characters_around_the_address_are_invalid(contact: str) -> None:
    with pytest.raises(AcmeError) as info:
        parse_contacts([contact])
    assert info.value.type is ProblemType.INVALID_CONTACT


@pytest.mark.parametrize(
    ("contact", "stored"),
    [
        ("mailto:a@b.com", "mailto:a@b.com"),
        ("MAILTO:ops+acme@example.test", "mailto:ops+acme@example.test"),
    ],
)
def test_plain_addresses_are_accepted(contact: str, stored: str) -> None:
    assert parse_contacts([contact]) == (stored,)
