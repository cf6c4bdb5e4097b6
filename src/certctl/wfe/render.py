"""The one place that turns results and typed errors into ACME HTTP responses.

RFC 8555 §6.5 and §7.1: every response, errors included, carries a fresh Replay-Nonce and
``Link: <directory>;rel="index"``. serverInternal never carries internal detail.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from certctl.acme.problems import problem_document
from certctl.domain.errors import AcmeError, ProblemType

JSON = "application/json"
PROBLEM = "application/problem+json"


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def common_headers(nonce: str, directory_url: str) -> dict[str, str]:
    return {
        "Replay-Nonce": nonce,
        "Link": f'<{directory_url}>;rel="index"',
        "Cache-Control": "no-store",
    }


def json_response(
    doc: Any,
    *,
    status: int = 200,
    nonce: str,
    directory_url: str,
    location: str | None = None,
    links: Mapping[str, str] | None = None,
    extra: Mapping[str, str] | None = None,
) -> Response:
    headers = common_headers(nonce, directory_url)
    if location:
        headers["Location"] = location
    if links:
        headers["Link"] += "".join(f', <{url}>;rel="{rel}"' for rel, url in links.items())
    if extra:
        headers.update(extra)
    return Response(_dumps(doc), status_code=status, headers=headers, media_type=JSON)


def problem_response(err: AcmeError, *, nonce: str, directory_url: str) -> Response:
    headers = common_headers(nonce, directory_url)
    headers.update(err.headers)
    if err.retry_after is not None:
        headers["Retry-After"] = str(err.retry_after)
    if err.type is ProblemType.METHOD_NOT_ALLOWED and "Allow" not in headers:
        headers["Allow"] = "GET, HEAD, POST"
    return Response(
        _dumps(problem_document(err)),
        status_code=err.http_status,
        headers=headers,
        media_type=PROBLEM,
    )


INTERNAL = AcmeError(ProblemType.SERVER_INTERNAL, "the server hit an internal error")
