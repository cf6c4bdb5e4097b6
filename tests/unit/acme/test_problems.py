"""RFC 7807 / RFC 8555 §6.7 problem documents."""

from __future__ import annotations

import json

from certctl.acme.jws import ALLOWED_ALGS
from certctl.acme.problems import problem_document
from certctl.domain.errors import AcmeError, ProblemType, Subproblem


def test_basic_document() -> None:
    doc = problem_document(AcmeError(ProblemType.BAD_NONCE, "stale nonce"))
    assert doc == {
        "type": "urn:ietf:params:acme:error:badNonce",
        "detail": "stale nonce",
        "status": 400,
    }
    json.dumps(doc)


def test_status_override_and_wire_alias() -> None:
    doc = problem_document(AcmeError(ProblemType.NOT_FOUND, "no such order"))
    assert doc["type"] == "urn:ietf:params:acme:error:malformed"
    assert doc["status"] == 404
    doc = problem_document(AcmeError(ProblemType.MALFORMED, "x", status=413))
    assert doc["status"] == 413


def test_subproblems() -> None:
    err = AcmeError(
        ProblemType.REJECTED_IDENTIFIER,
        "some identifiers were rejected",
        subproblems=(
            Subproblem(ProblemType.REJECTED_IDENTIFIER, "not allowed", "dns", "a.example"),
            Subproblem(ProblemType.CAA, "CAA forbids", "dns", "b.example"),
        ),
    )
    doc = problem_document(err)
    assert doc["subproblems"] == [
        {
            "type": "urn:ietf:params:acme:error:rejectedIdentifier",
            "detail": "not allowed",
            "identifier": {"type": "dns", "value": "a.example"},
        },
        {
            "type": "urn:ietf:params:acme:error:caa",
            "detail": "CAA forbids",
            "identifier": {"type": "dns", "value": "b.example"},
        },
    ]
    json.dumps(doc)


def test_bad_signature_algorithm_lists_algorithms() -> None:
    doc = problem_document(AcmeError(ProblemType.BAD_SIGNATURE_ALGORITHM, "no"))
    assert doc["algorithms"] == sorted(ALLOWED_ALGS)
    assert "algorithms" not in problem_document(AcmeError(ProblemType.MALFORMED, "x"))
