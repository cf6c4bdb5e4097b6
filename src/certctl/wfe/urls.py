"""Every URL the ACME server hands out, built from one base (scheme://host + prefix).

The prefix is ``/acme/profile/<id>`` or, for the default profile, ``/acme``. An account's
kid is only accepted in exactly the form we issued under the same prefix (RFC 8555 §6.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from certctl.domain.errors import AcmeError, ProblemType


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
        return account_id
