"""Which POSTs the ACME quick path takes (certctl.wfe.quick): only the issuance requests
it can answer on the event loop exactly as the dispatcher would, and only when the
dispatcher's state allows POSTs there."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import pytest

from certctl.config import load_settings
from certctl.domain.model import AuthMode, Profile
from certctl.fastpath import QuickRequest
from certctl.wfe.quick import QuickAcme
from certctl.wfe.routes import BODY_TIMEOUT_S, INLINE_POSTS, ROUTES, WfeState

PROFILE = Profile(
    id="default", name="default", issuer_id="iss", acme_auth_mode=AuthMode.TRUST_AUTHENTICATED
)
JOSE = b"application/jose+json"


@dataclass
class _Ra:
    """The only part of the RA ``accept_post`` consults: the profile cache."""

    profile: Profile | None = PROFILE

    def cached_acme_profile(self, profile_id: str) -> Profile | None:
        return self.profile if self.profile and profile_id == self.profile.id else None


def _quick(*, inline: bool = True, profile: Profile | None = PROFILE) -> QuickAcme:
    settings = load_settings({})
    state = WfeState(_Ra(profile), settings.acme, None, inline_posts=inline)  # type: ignore[arg-type]
    return QuickAcme(state)


def _request(
    path: str, *, content_type: bytes | None = JOSE, length: int = 100, query: bytes = b""
) -> QuickRequest:
    return QuickRequest(
        "POST",
        path,
        query,
        b"ca.example:8443",
        "https",
        ("192.0.2.7", 4000),
        ("127.0.0.1", 8443),
        content_type,
        length,
    )


def _path(op: str) -> str:
    suffix = next(s for s, name, _ in ROUTES if name == op)
    return "/acme" + suffix.replace("{order_id}", "o1").replace("{account_id}", "a1").replace(
        "{authz_id}", "z1"
    ).replace("{cert_id}", "c1").replace("{challenge_id}", "h1")


@pytest.mark.parametrize("op", sorted(INLINE_POSTS))
def test_the_issuance_posts_are_taken(op: str) -> None:
    post = _quick().accept_post(_request(_path(op)))
    assert post is not None
    assert post.body_timeout == BODY_TIMEOUT_S


@pytest.mark.parametrize(
    "op", sorted({name for _, name, methods in ROUTES if "POST" in methods} - INLINE_POSTS)
)
def test_posts_that_start_validations_or_sign_stay_on_the_threads(op: str) -> None:
    assert _quick().accept_post(_request(_path(op))) is None


def test_the_request_url_is_the_one_the_dispatcher_compares() -> None:
    post = _quick().accept_post(_request("/acme/profile/default/order/o1", query=b"x=1"))
    assert post is not None
    request = post._request
    assert request.url == "https://ca.example:8443/acme/profile/default/order/o1?x=1"
    assert request.urls.directory() == "https://ca.example:8443/acme/profile/default/directory"
    assert request.params == {"order_id": "o1"}
    assert request.client_address == "192.0.2.7"


@pytest.mark.parametrize(
    "request_",
    [
        _request("/acme/new-order", content_type=None),
        _request("/acme/new-order", content_type=b"application/json"),
        _request("/acme/new-order", length=64 * 1024 + 1),  # over the body limit: 413
        _request("/acme/nope"),
        _request("/acme/directory"),  # no POST there: 405
        _request("/acme/profile/other/new-order"),  # not cached
        _request("/acme/new-order", query=b"\xff"),
    ],
    ids=["no-type", "json", "too-long", "unknown", "get-only", "uncached", "query"],
)
def test_what_the_dispatcher_would_refuse_is_left_to_it(request_: QuickRequest) -> None:
    assert _quick().accept_post(request_) is None


def test_nothing_is_taken_when_posts_may_not_run_on_the_event_loop() -> None:
    assert _quick(inline=False).accept_post(_request("/acme/new-order")) is None


def test_finalize_with_caa_checks_stays_on_the_threads() -> None:
    caa = replace(PROFILE, caa_check=True)
    assert _quick(profile=caa).accept_post(_request("/acme/order/o1/finalize")) is None
    assert _quick(profile=caa).accept_post(_request("/acme/new-order")) is not None


def _threaded(*, inline: bool, profile: Profile | None = PROFILE) -> QuickAcme:
    settings = load_settings({})
    state = WfeState(_Ra(profile), settings.acme, None, inline_posts=inline)  # type: ignore[arg-type]
    return QuickAcme(state, ThreadPoolExecutor(1))


@pytest.mark.parametrize("op", sorted(name for _, name, m in ROUTES if "POST" in m))
def test_with_handler_threads_every_post_is_taken_and_only_the_inline_kind_runs_inline(
    op: str,
) -> None:
    quick = _threaded(inline=True)
    post = quick.accept_post(_request(_path(op)))
    assert post is not None
    assert (post.executor is None) == (op in INLINE_POSTS)


def test_on_postgresql_every_post_runs_on_the_handler_threads() -> None:
    quick = _threaded(inline=False)
    post = quick.accept_post(_request("/acme/new-order"))
    assert post is not None and post.executor is quick.executor


def test_an_uncached_profile_is_read_on_a_handler_thread() -> None:
    quick = _threaded(inline=True, profile=None)
    post = quick.accept_post(_request("/acme/new-order"))
    assert post is not None and post.executor is not None
    # What the dispatcher refuses before any handler still goes to it.
    assert quick.accept_post(_request("/acme/new-order", content_type=None)) is None
    assert quick.accept_post(_request("/acme/directory")) is None
