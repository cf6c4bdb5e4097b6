"""Domain objects -> RFC 8555 §7.1 resource JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from certctl.domain.model import Account, Authorization, Challenge, OrderStatus, Profile
from certctl.ra import OrderView
from certctl.wfe.urls import AcmeUrls


def rfc3339(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def directory(
    urls: AcmeUrls, profile: Profile, meta: dict[str, Any], *, ari: bool
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "newNonce": urls.new_nonce(),
        "newAccount": urls.new_account(),
        "newOrder": urls.new_order(),
        "revokeCert": urls.revoke_cert(),
        "keyChange": urls.key_change(),
    }
    if profile.allow_preauthorization:
        doc["newAuthz"] = urls.new_authz()  # RFC 8555 §7.4.1: only when offered
    if ari:
        doc["renewalInfo"] = urls.renewal_info()  # RFC 9773 §3
    if meta:
        doc["meta"] = meta
    return doc


def account(urls: AcmeUrls, acct: Account) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": acct.status.value,
        "contact": list(acct.contact),
        "orders": urls.orders(acct.id),
        "createdAt": rfc3339(acct.created_at),
    }
    if acct.tos_agreed:
        doc["termsOfServiceAgreed"] = True
    return doc


def order(urls: AcmeUrls, view: OrderView) -> dict[str, Any]:
    o = view.order
    doc: dict[str, Any] = {
        "status": view.status.value,
        "expires": rfc3339(o.expires_at),
        "identifiers": [i.to_wire() for i in o.identifiers],
        # draft-ietf-acme-profiles §4: the order carries the profile it is issued under.
        "profile": o.profile_id,
        "authorizations": [urls.authz(a) for a in o.authz_ids],
        "finalize": urls.finalize(o.id),
    }
    if o.not_before is not None:
        doc["notBefore"] = rfc3339(o.not_before)
    if o.not_after is not None:
        doc["notAfter"] = rfc3339(o.not_after)
    if view.replaces is not None:
        doc["replaces"] = view.replaces  # RFC 9773 §5: MUST be reflected
    if view.status is OrderStatus.VALID and o.certificate_id:
        doc["certificate"] = urls.certificate(o.certificate_id)
    if view.status is OrderStatus.INVALID and o.error:
        doc["error"] = json.loads(o.error)
    return doc


def challenge(urls: AcmeUrls, chall: Challenge) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": chall.type,
        "url": urls.challenge(chall.id),
        "status": chall.status.value,
        "token": chall.token,
    }
    if chall.validated_at is not None:
        doc["validated"] = rfc3339(chall.validated_at)
    if chall.error:
        doc["error"] = json.loads(chall.error)
    return doc


def authorization(urls: AcmeUrls, authz: Authorization) -> dict[str, Any]:
    ident = authz.identifier
    # RFC 8555 §7.1.4: the wildcard prefix is not part of the authorization identifier.
    value = ident.value[2:] if authz.wildcard else ident.value
    doc: dict[str, Any] = {
        "identifier": {"type": ident.type, "value": value},
        "status": authz.status.value,
        "expires": rfc3339(authz.expires_at),
        "challenges": [challenge(urls, c) for c in authz.challenges],
    }
    if authz.wildcard:
        doc["wildcard"] = True
    return doc
