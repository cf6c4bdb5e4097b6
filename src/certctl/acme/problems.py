"""RFC 7807 problem documents for ACME errors (RFC 8555 §6.7)."""

from __future__ import annotations

from typing import Any

from certctl.acme.jws import ALLOWED_ALGS
from certctl.domain.errors import AcmeError, ProblemType, Subproblem


def problem_document(err: AcmeError) -> dict[str, Any]:
    """The JSON body for ``err`` (served as ``application/problem+json``)."""
    doc: dict[str, Any] = {
        "type": err.type.urn,
        "detail": err.detail,
        "status": err.http_status,
    }
    if err.type is ProblemType.BAD_SIGNATURE_ALGORITHM:
        # RFC 8555 §6.2: this problem "MUST include an "algorithms" field".
        doc["algorithms"] = sorted(ALLOWED_ALGS)
    if err.subproblems:
        doc["subproblems"] = [_subproblem(sub) for sub in err.subproblems]
    return doc


def _subproblem(sub: Subproblem) -> dict[str, Any]:
    """RFC 8555 §6.7.1: type, detail and the identifier the problem is about."""
    return {
        "type": sub.type.urn,
        "detail": sub.detail,
        "identifier": {"type": sub.identifier_type, "value": sub.identifier_value},
    }
