"""Thin ACME handlers: guard clauses in spec order, one RA call, render.

Each runs synchronously in a worker thread (one hop per request); ``Call`` carries what
the dispatcher already resolved: the profile, its URL family, the raw body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.responses import Response

from certctl.config import AcmeServerSettings
from certctl.domain.errors import AcmeError, ProblemType, malformed, not_found, unauthorized
from certctl.domain.model import Authorization, Profile
from certctl.observability.metrics import Metrics
from certctl.ra import OrderView, RegistrationAuthority
from certctl.wfe import views
from certctl.wfe.auth import (
    Authenticated,
    KeyKind,
    authenticate,
    deferred,
    require_post_as_get,
)
from certctl.wfe.render import common_headers, json_response
from certctl.wfe.urls import AcmeUrls, is_issued_id

PEM_CHAIN = "application/pem-certificate-chain"
T = TypeVar("T")


@dataclass(frozen=True)
class Call:
    ra: RegistrationAuthority
    settings: AcmeServerSettings
    metrics: Metrics
    profile: Profile
    urls: AcmeUrls
    request_url: str
    method: str
    body: bytes
    params: dict[str, str]
    query: dict[str, str]
    client_address: str | None = None  # the peer (request.client.host), for per-IP limits

    def auth(self, kind: KeyKind = KeyKind.KID) -> Authenticated:
        return authenticate(self.ra, self.profile, self.urls, self.request_url, self.body, kind)

    def deferred(self, operation: Callable[[Authenticated], T]) -> tuple[Authenticated, T]:
        """A kid request whose operation spends the nonce in its own first transaction."""
        return deferred(self.ra, self.profile, self.urls, self.request_url, self.body, operation)

    def respond(self, doc: Any, **kwargs: Any) -> Response:
        return json_response(
            doc, nonce=self.ra.new_nonce(), directory_url=self.urls.directory(), **kwargs
        )


Handler = Callable[[Call], Response]


def _retry_after(call: Call, status: str) -> dict[str, str] | None:
    """RFC 8555 §7.5.1 / §7.4: tell pollers when to come back while work is under way."""
    if status not in ("pending", "processing"):
        return None
    seconds = max(1, int(call.settings.validation.retry_after.total_seconds()))
    return {"Retry-After": str(seconds)}


# Directory responses may be cached briefly by clients; nonces in them may not.
DIRECTORY_CACHE_CONTROL = "public, max-age=0, no-cache"


def directory_doc(s: AcmeServerSettings, profile: Profile, urls: AcmeUrls) -> dict[str, Any]:
    """The directory object of ``profile`` (shared with the quick path, wfe.quick)."""
    meta: dict[str, Any] = {}
    if s.tos_url:
        meta["termsOfService"] = s.tos_url
    if s.website:
        meta["website"] = s.website
    if s.caa_identities:
        meta["caaIdentities"] = list(s.caa_identities)
    # RFC 8555 §7.1.1: tell the truth about this profile, not only the server default.
    meta["externalAccountRequired"] = s.eab_required or profile.eab_required
    # draft-aaron-acme-profiles: the profiles an account of this directory may choose.
    meta["profiles"] = {profile.id: profile.description or profile.name}
    return views.directory(urls, profile, meta, ari=s.ari_enabled)


def directory(call: Call) -> Response:
    doc = directory_doc(call.settings, call.profile, call.urls)
    return call.respond(doc, extra={"Cache-Control": DIRECTORY_CACHE_CONTROL})


def nonce_status(method: str) -> int:
    """RFC 8555 §7.2: HEAD answers 200, GET 204; both no-store."""
    return 200 if method == "HEAD" else 204


def new_nonce(call: Call) -> Response:
    headers = common_headers(call.ra.new_nonce(), call.urls.directory())
    return Response(status_code=nonce_status(call.method), headers=headers)


def new_account(call: Call) -> Response:
    auth = call.auth(KeyKind.JWK)
    account, created = call.ra.new_account(
        call.profile,
        auth.key,
        auth.jws.payload_json(),
        call.request_url,
        client_address=call.client_address,
    )
    if not created:
        call.metrics.event("new_account_idempotent")
    return call.respond(
        views.account(call.urls, account),
        status=201 if created else 200,
        location=call.urls.account(account.id),
    )


def _path_id(call: Call, name: str, unknown: str) -> str:
    """The path's ``name`` id. One that no id of ours can be (a NUL, "*", ...) is
    answered as an unknown one (``unknown``: the RA's detail) without asking the store."""
    value = call.params[name]
    if not is_issued_id(value):
        raise not_found(unknown)
    return value


def _own_account(call: Call, auth: Authenticated) -> None:
    assert auth.account is not None
    if auth.account.id != call.params["account_id"]:
        raise unauthorized("the kid does not name this account")


def account(call: Call) -> Response:
    auth = call.auth()
    _own_account(call, auth)
    assert auth.account is not None
    acct = auth.account
    if auth.jws.is_post_as_get:
        # Authentication confirmed key and status only; contacts are shown as stored.
        acct = call.ra.account_for_kid(call.profile, acct.id)
    else:
        acct = call.ra.update_account(acct, auth.jws.payload_json())
        if acct.status.value == "deactivated":
            call.metrics.event("deactivate_account")
    return call.respond(views.account(call.urls, acct), location=call.urls.account(acct.id))


def orders(call: Call) -> Response:
    auth = call.auth()
    require_post_as_get(auth)
    _own_account(call, auth)
    assert auth.account is not None
    cursor = call.query.get("cursor")
    # Our cursors end in an order id (ra.orders.list_orders): another one is not ours,
    # and its id part must not reach the store's query (see is_issued_id).
    if cursor and not is_issued_id(cursor.partition("~")[2]):
        raise malformed("bad orders cursor")
    ids, cursor = call.ra.list_orders(auth.account, cursor)
    links = {"next": f"{call.urls.orders(auth.account.id)}?cursor={cursor}"} if cursor else None
    return call.respond({"orders": [call.urls.order(i) for i in ids]}, links=links)


def new_order(call: Call) -> Response:
    refused: list[AcmeError] = []

    def run(auth: Authenticated) -> OrderView:
        assert auth.account is not None
        try:
            return call.ra.new_order(
                call.profile, auth.account, auth.jws.payload_json(), auth.spend
            )
        except AcmeError as error:
            refused.append(error)
            raise

    try:
        _, view = call.deferred(run)
    except AcmeError as error:
        # Refused by the order's checks, not for its nonce or account (those answer first).
        if refused and error is refused[-1]:
            call.metrics.event("new_order_rejected")
        raise
    return call.respond(
        views.order(call.urls, view), status=201, location=call.urls.order(view.order.id)
    )


def order(call: Call) -> Response:
    def read(auth: Authenticated) -> OrderView:
        require_post_as_get(auth)
        assert auth.account is not None
        order_id = _path_id(call, "order_id", "no such order")
        return call.ra.order(auth.account, order_id, auth.spend)

    _, view = call.deferred(read)
    return call.respond(
        views.order(call.urls, view),
        location=call.urls.order(view.order.id),
        extra=_retry_after(call, view.status.value),
    )


def finalize(call: Call) -> Response:
    def run(auth: Authenticated) -> OrderView:
        assert auth.account is not None
        if auth.jws.is_post_as_get:
            raise malformed("finalize needs a payload with a csr")
        payload = auth.jws.payload_json()
        order_id = _path_id(call, "order_id", "no such order")
        return call.ra.finalize(call.profile, auth.account, order_id, payload, auth.spend)

    _, view = call.deferred(run)
    call.metrics.event("certificates_issued")
    return call.respond(
        views.order(call.urls, view),
        location=call.urls.order(view.order.id),
        extra=_retry_after(call, view.status.value),
    )


def authz(call: Call) -> Response:
    def run(auth: Authenticated) -> Authorization:
        assert auth.account is not None
        if auth.jws.is_post_as_get:
            authz_id = _path_id(call, "authz_id", "no such authorization")
            return call.ra.authz(auth.account, authz_id, auth.spend)
        # RFC 8555 §7.5.2 deactivation: a change, so the nonce is spent before it.
        auth = auth.settle()
        assert auth.account is not None
        payload = auth.jws.payload_json()
        authz_id = _path_id(call, "authz_id", "no such authorization")
        return call.ra.update_authz(auth.account, authz_id, payload)

    _, found = call.deferred(run)
    return call.respond(
        views.authorization(call.urls, found),
        links={"up": call.urls.order(found.order_id)} if found.order_id else None,
        extra=_retry_after(call, found.status.value),
    )


def challenge(call: Call) -> Response:
    auth = call.auth()
    assert auth.account is not None
    # RFC 8555 §7.5.1: the client responds with an empty JSON object.
    if not auth.jws.is_post_as_get and auth.jws.payload_json():
        raise malformed("a challenge response is an empty JSON object")
    challenge_id = _path_id(call, "challenge_id", "no such challenge")
    chall, parent = call.ra.respond_challenge(
        auth.account, challenge_id, poll=auth.jws.is_post_as_get
    )
    return call.respond(
        views.challenge(call.urls, chall),
        links={"up": call.urls.authz(parent.id)},
        extra=_retry_after(call, chall.status.value),
    )


def certificate(call: Call) -> Response:
    def read(auth: Authenticated) -> str:
        require_post_as_get(auth)
        assert auth.account is not None
        cert_id = _path_id(call, "cert_id", "no such certificate")
        return call.ra.certificate_chain(auth.account, cert_id, auth.spend)

    _, chain = call.deferred(read)
    headers = common_headers(call.ra.new_nonce(), call.urls.directory())
    return Response(chain.encode(), headers=headers, media_type=PEM_CHAIN)


def new_authz(call: Call) -> Response:
    auth = call.auth()
    assert auth.account is not None
    found = call.ra.new_authz(call.profile, auth.account, auth.jws.payload_json())
    return call.respond(
        views.authorization(call.urls, found),
        status=201,
        location=call.urls.authz(found.id),
        extra=_retry_after(call, found.status.value),
    )


def key_change(call: Call) -> Response:
    auth = call.auth()
    assert auth.account is not None
    # RFC 8555 §7.3.5: the outer payload is the inner JWS, itself a flattened JSON object.
    account = call.ra.key_change(
        auth.account,
        call.urls.account(auth.account.id),
        call.request_url,
        auth.jws.payload,
        call.urls.account,
    )
    return call.respond(views.account(call.urls, account), location=call.urls.account(account.id))


def revoke_cert(call: Call) -> Response:
    auth = call.auth(KeyKind.EITHER)
    call.ra.revoke_cert(auth.account, auth.key, auth.jws.payload_json())
    # RFC 8555 §7.6: 200 with an empty body.
    headers = common_headers(call.ra.new_nonce(), call.urls.directory())
    return Response(b"", status_code=200, headers=headers)


def renewal_info(call: Call) -> Response:
    """RFC 9773 §4: unauthenticated GET; Retry-After says when to ask again."""
    if not call.settings.ari_enabled:
        raise AcmeError(ProblemType.NOT_FOUND, "renewal information is not offered")
    window = call.ra.renewal_info(call.params["cert_id"])
    doc = {
        "suggestedWindow": {"start": views.rfc3339(window.start), "end": views.rfc3339(window.end)}
    }
    seconds = int(call.settings.ari_poll_interval.total_seconds())
    return call.respond(doc, extra={"Retry-After": str(seconds)})
