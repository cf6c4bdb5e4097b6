"""Every URL the ACME server hands out, built from one base (scheme://host + prefix).

The prefix is ``/acme/profile/<id>`` or, for the default profile, ``/acme``. An account's
kid is only accepted in exactly the form we issued under the same prefix (RFC 8555 §6.2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from certctl.domain.errors import AcmeError, ProblemType

# Every id this server hands out is a short prefix and base64url (ra.context.new_id, EAB
# kids alike). Text outside that alphabet names nothing, and is answered so without
# asking the store: PostgreSQL refuses a NUL in text (a 500 where SQLite says "no such").
_ISSUED_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_issued_id(text: str) -> bool:
    """``text`` could be an id this server made (it may still name nothing)."""
    return _ISSUED_ID.fullmatch(text) is not None


@dataclass(frozen=True)
class AcmeUrls:
    base: str  # scheme://host[:port]
    prefix: str  # /acme or /acme/profile/<id>

    @property
    def root(self) -> str:
        return self.base + self.prefix

    def directory(self) -> str:
        return f"{self.root}/directory"

    def new_nonce(self) -> str:
        return f"{self.root}/new-nonce"

    def new_account(self) -> str:
        return f"{self.root}/new-account"

    def new_order(self) -> str:
        return f"{self.root}/new-order"

    def revoke_cert(self) -> str:
        return f"{self.root}/revoke-cert"

    def key_change(self) -> str:
        return f"{self.root}/key-change"

    def new_authz(self) -> str:
        return f"{self.root}/new-authz"

    def renewal_info(self) -> str:
        return f"{self.root}/renewal-info"

    def account(self, account_id: str) -> str:
        return f"{self.root}/account/{account_id}"

    def orders(self, account_id: str) -> str:
        return f"{self.root}/account/{account_id}/orders"

    def order(self, order_id: str) -> str:
        return f"{self.root}/order/{order_id}"

    def finalize(self, order_id: str) -> str:
        return f"{self.root}/order/{order_id}/finalize"

    def authz(self, authz_id: str) -> str:
        return f"{self.root}/authz/{authz_id}"

    def challenge(self, challenge_id: str) -> str:
        return f"{self.root}/challenge/{challenge_id}"

    def certificate(self, cert_id: str) -> str:
        return f"{self.root}/cert/{cert_id}"

    def account_id_from_kid(self, kid: str) -> str:
        prefix = f"{self.root}/account/"
        account_id = kid[len(prefix) :] if kid.startswith(prefix) else ""
        if not account_id or "/" in account_id or len(account_id) > 64:
            raise AcmeError(
                ProblemType.ACCOUNT_DOES_NOT_EXIST
                if kid.startswith(prefix)
                else ProblemType.UNAUTHORIZED,
                "kid is not an account URL of this profile",
            )
        if not is_issued_id(account_id):
            # What the store's answer would be (ra.accounts), without asking it.
            raise AcmeError(ProblemType.ACCOUNT_DOES_NOT_EXIST, "no such account")
        return account_id
