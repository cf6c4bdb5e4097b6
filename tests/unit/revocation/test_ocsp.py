from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from cryptography.x509.ocsp import OCSPResponseStatus

from certctl.revocation import (
    CertStatusRecord,
    OCSPQuery,
    OCSPRequestError,
    RevocationReason,
    build_response,
    issue_responder_certificate,
    issued_by,
    parse_request,
    unsigned_error,
)
from tests.unit.revocation.conftest import Responder
from tests.unit.revocation.support import (
    Pki,
    openssl,
    openssl_result,
    pem,
    pkilint,
    real_now,
    write,
)


@dataclass(frozen=True)
class Asked:
    """A leaf, and the request openssl built for it."""

    leaf: x509.Certificate
    leaf_pem: Path
    request: Path


def _ask(pki: Pki, directory: Path, *options: str) -> Asked:
    leaf = pki.issue_leaf()
    leaf_pem = write(directory / "leaf.pem", pem(leaf))
    request = directory / "req.der"
    # openssl wants the digest option before -cert.
    openssl("ocsp", "-issuer", pki.issuer_pem, *options, "-cert", leaf_pem, "-reqout", request)
    return Asked(leaf, leaf_pem, request)


def _respond(
    pki: Pki,
    responder: Responder,
    query: OCSPQuery,
    record: CertStatusRecord | None,
    *,
    nonce: bytes | None = None,
) -> bytes:
    now = real_now()
    return build_response(
        query=query,
        issuer_cert=pki.issuer_cert,
        responder_cert=responder.cert,
        responder_key=responder.key,
        record=record,
        this_update=now,
        next_update=now + timedelta(hours=12),
        nonce=nonce,
    )


def _verify_text(pki: Pki, response: Path, *extra: str | Path) -> str:
    """openssl's verdict on a response, with its -resp_text dump."""
    return openssl(
        "ocsp", "-respin", response, "-issuer", pki.issuer_pem, "-CAfile", pki.chain_pem,
        "-resp_text", *extra,
    )  # fmt: skip


def _refusal(pki: Pki, response: Path) -> str:
    """What openssl says about an unsuccessful response (it exits non-zero for those)."""
    returncode, output = openssl_result(
        "ocsp", "-respin", response, "-issuer", pki.issuer_pem, "-CAfile", pki.chain_pem
    )
    assert returncode != 0
    return output


def _status_lines(pki: Pki, response: Path, asked: Asked) -> str:
    """openssl's per-certificate summary ("leaf.pem: revoked", reason, times)."""
    return openssl(
        "ocsp", "-respin", response, "-issuer", pki.issuer_pem, "-CAfile", pki.chain_pem,
        "-cert", asked.leaf_pem, "-no_nonce",
    )  # fmt: skip


def _request_with(*extensions: tuple[x509.ExtensionType, bool], serial: int = 12345) -> bytes:
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        b"\x01" * 20,
        b"\x02" * 20,
        serial,
        hashes.SHA1(),  # noqa: S303 - RFC 5019 §2.1.1: CertIDs are SHA-1
    )
    for value, critical in extensions:
        builder = builder.add_extension(value, critical)
    return builder.build().public_bytes(Encoding.DER)


_DER = __import__(
    "cryptography.hazmat.primitives.serialization"
).hazmat.primitives.serialization.Encoding.DER


# --- parsing ---------------------------------------------------------------------------


def test_parses_an_openssl_request_with_nonce(pki: Pki, tmp_path: Path) -> None:
    asked = _ask(pki, tmp_path, "-nonce")
    query = parse_request(asked.request.read_bytes())
    assert query.serial == asked.leaf.serial_number
    assert query.hash_algorithm == "sha1"
    assert query.nonce is not None and len(query.nonce) == 16  # openssl's default
    assert issued_by(query, pki.issuer_cert)
    assert not issued_by(query, pki.ca.root)


def test_parses_a_sha256_cert_id(pki: Pki, tmp_path: Path) -> None:
    asked = _ask(pki, tmp_path, "-sha256", "-no_nonce")
    query = parse_request(asked.request.read_bytes())
    assert query.hash_algorithm == "sha256"
    assert len(query.issuer_key_hash) == 32
    assert query.nonce is None
    assert issued_by(query, pki.issuer_cert)


def test_issuer_hashes_work_for_rsa_issuers(rsa_pki: Pki, tmp_path: Path) -> None:
    asked = _ask(rsa_pki, tmp_path)
    assert issued_by(parse_request(asked.request.read_bytes()), rsa_pki.issuer_cert)


def test_more_than_one_certificate_is_malformed(pki: Pki, tmp_path: Path) -> None:
    # RFC 5019 §2.1.1: one Request per OCSPRequest; we refuse rather than answer in part.
    first = write(tmp_path / "a.pem", pem(pki.issue_leaf()))
    second = write(tmp_path / "b.pem", pem(pki.issue_leaf()))
    request = tmp_path / "two.der"
    openssl(
        "ocsp", "-issuer", pki.issuer_pem, "-cert", first, "-cert", second, "-reqout", request
    )  # fmt: skip
    with pytest.raises(OCSPRequestError) as caught:
        parse_request(request.read_bytes())
    assert caught.value.status is OCSPResponseStatus.MALFORMED_REQUEST


@pytest.mark.parametrize("length", [1, 16, 32])
def test_nonce_lengths_accepted(length: int) -> None:
    query = parse_request(_request_with((x509.OCSPNonce(b"n" * length), False)))
    assert query.nonce == b"n" * length


@pytest.mark.parametrize("length", [0, 33, 128])
def test_nonce_lengths_refused(length: int) -> None:
    # RFC 8954 §2.1: a nonce outside 1..32 octets is malformedRequest.
    with pytest.raises(OCSPRequestError) as caught:
        parse_request(_request_with((x509.OCSPNonce(b"n" * length), False)))
    assert caught.value.status is OCSPResponseStatus.MALFORMED_REQUEST


def test_unsupported_cert_id_hash_is_malformed() -> None:
    request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        b"\x01" * 28, b"\x02" * 28, 5, hashes.SHA224()
    )
    with pytest.raises(OCSPRequestError, match="sha224"):
        parse_request(request.build().public_bytes(Encoding.DER))


def test_unknown_extensions_ignored_unless_critical() -> None:
    # RFC 6960 §4.4 (and RFC 5280 §4.2): ignore what you don't know, unless it is critical.
    unknown = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.1"), b"\x05\x00")
    assert parse_request(_request_with((unknown, False))).nonce is None
    with pytest.raises(OCSPRequestError):
        parse_request(_request_with((unknown, True)))


@pytest.mark.parametrize(
    "der",
    [b"", b"\x30", b"\x30\x00", b"\x00" * 100, b"garbage", b"\x30\x82\xff\xff", b"\x30" * 9000],
)
def test_garbage_is_malformed(der: bytes) -> None:
    with pytest.raises(OCSPRequestError) as caught:
        parse_request(der)
    assert caught.value.status is OCSPResponseStatus.MALFORMED_REQUEST


def test_not_bytes_is_malformed() -> None:
    with pytest.raises(OCSPRequestError):
        parse_request("a request")  # type: ignore[arg-type]


def test_no_prefix_or_bit_flip_of_a_request_escapes_as_another_exception(
    pki: Pki, tmp_path: Path
) -> None:
    good = _ask(pki, tmp_path, "-nonce").request.read_bytes()
    mutants = [good[:cut] for cut in range(len(good))]
    mutants += [
        good[:i] + bytes([good[i] ^ (1 << bit)]) + good[i + 1 :]
        for i in range(len(good))
        for bit in range(8)
    ]
    mutants += [os.urandom(len(good)) for _ in range(200)]
    for mutant in mutants:
        try:
            parse_request(mutant)
        except OCSPRequestError as exc:
            assert exc.status is OCSPResponseStatus.MALFORMED_REQUEST


# --- responses, checked by openssl --------------------------------------------------------


def test_good_with_nonce_echoed(pki: Pki, responder: Responder, tmp_path: Path) -> None:
    asked = _ask(pki, tmp_path, "-nonce")
    query = parse_request(asked.request.read_bytes())
    record = CertStatusRecord(query.serial, "good")
    response = write(
        tmp_path / "resp.der", _respond(pki, responder, query, record, nonce=query.nonce)
    )
    # With -reqin openssl checks the nonce too ("Nonce Verify error" otherwise).
    text = _verify_text(pki, response, "-reqin", asked.request)
    assert "Response verify OK" in text
    assert "Nonce Verify error" not in text and "WARNING" not in text
    assert "Cert Status: good" in text
    assert query.nonce is not None and query.nonce.hex().upper() in text.replace(":", "")
    assert f"{asked.leaf_pem}: good" in _status_lines(pki, response, asked)


def test_openssl_notices_a_wrong_nonce(pki: Pki, responder: Responder, tmp_path: Path) -> None:
    asked = _ask(pki, tmp_path, "-nonce")
    query = parse_request(asked.request.read_bytes())
    record = CertStatusRecord(query.serial, "good")
    response = write(
        tmp_path / "resp.der", _respond(pki, responder, query, record, nonce=b"x" * 16)
    )
    returncode, output = openssl_result(
        "ocsp", "-respin", response, "-issuer", pki.issuer_pem, "-CAfile", pki.chain_pem,
        "-reqin", asked.request,
    )  # fmt: skip
    assert returncode != 0 and "Nonce Verify error" in output


def test_revoked_with_time_and_reason(pki: Pki, responder: Responder, tmp_path: Path) -> None:
    asked = _ask(pki, tmp_path, "-no_nonce")
    query = parse_request(asked.request.read_bytes())
    revoked_at = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
    record = CertStatusRecord(query.serial, "revoked", revoked_at, RevocationReason.KEY_COMPROMISE)
    response = write(tmp_path / "resp.der", _respond(pki, responder, query, record))
    assert "Response verify OK" in _verify_text(pki, response)
    lines = _status_lines(pki, response, asked)
    assert f"{asked.leaf_pem}: revoked" in lines
    assert "Reason: keyCompromise" in lines
    assert "Revocation Time: Mar  4 05:06:07 2026 GMT" in lines


def test_revoked_unspecified_says_no_reason(pki: Pki, responder: Responder) -> None:
    query = parse_request(_request_for(pki, 4242))
    for reason in (None, RevocationReason.UNSPECIFIED):
        record = CertStatusRecord(query.serial, "revoked", real_now(), reason)
        response = _answer(pki, responder, query, record)
        assert response.revocation_reason is None  # as in the CRL: RFC 5280 §5.3.1


def test_unknown_status(pki: Pki, responder: Responder, tmp_path: Path) -> None:
    asked = _ask(pki, tmp_path, "-no_nonce")
    query = parse_request(asked.request.read_bytes())
    record = CertStatusRecord(query.serial, "unknown")
    response = write(tmp_path / "resp.der", _respond(pki, responder, query, record))
    assert f"{asked.leaf_pem}: unknown" in _status_lines(pki, response, asked)


def test_sha256_cert_id_is_answered_in_kind(pki: Pki, responder: Responder, tmp_path: Path) -> None:
    asked = _ask(pki, tmp_path, "-sha256", "-no_nonce")
    query = parse_request(asked.request.read_bytes())
    record = CertStatusRecord(query.serial, "good")
    response = write(tmp_path / "resp.der", _respond(pki, responder, query, record))
    text = _verify_text(pki, response, "-reqin", asked.request)
    assert "Response verify OK" in text and "Hash Algorithm: sha256" in text


def test_never_issued_serial_is_unauthorized_never_good(
    pki: Pki, responder: Responder, tmp_path: Path
) -> None:
    asked = _ask(pki, tmp_path, "-nonce")
    query = parse_request(asked.request.read_bytes())
    der = _respond(pki, responder, query, None, nonce=query.nonce)
    assert ocsp.load_der_ocsp_response(der).response_status is OCSPResponseStatus.UNAUTHORIZED
    assert der == unsigned_error(OCSPResponseStatus.UNAUTHORIZED)
    assert "Responder Error: unauthorized (6)" in _refusal(pki, write(tmp_path / "resp.der", der))


def test_another_issuers_cert_id_is_unauthorized(
    pki: Pki, p384_pki: Pki, responder: Responder, tmp_path: Path
) -> None:
    asked = _ask(p384_pki, tmp_path)
    query = parse_request(asked.request.read_bytes())
    record = CertStatusRecord(query.serial, "good")  # even if storage says so
    der = _respond(pki, responder, query, record)
    assert ocsp.load_der_ocsp_response(der).response_status is OCSPResponseStatus.UNAUTHORIZED


def test_malformed_error_for_openssl(pki: Pki, tmp_path: Path) -> None:
    der = unsigned_error(OCSPResponseStatus.MALFORMED_REQUEST)
    refusal = _refusal(pki, write(tmp_path / "resp.der", der))
    assert "Responder Error: malformedrequest (1)" in refusal


def test_unsigned_error_refuses_successful() -> None:
    with pytest.raises(ValueError, match="signed"):
        unsigned_error(OCSPResponseStatus.SUCCESSFUL)


# --- response structure ----------------------------------------------------------------


def _answer(
    pki: Pki,
    responder: Responder,
    query: OCSPQuery,
    record: CertStatusRecord,
    *,
    nonce: bytes | None = None,
) -> ocsp.OCSPResponse:
    response = ocsp.load_der_ocsp_response(_respond(pki, responder, query, record, nonce=nonce))
    assert response.response_status is OCSPResponseStatus.SUCCESSFUL
    return response


def test_presigned_response_has_no_nonce_and_names_the_responder_by_key(
    pki: Pki, responder: Responder
) -> None:
    query = parse_request(_request_for(pki, 777))
    response = _answer(pki, responder, query, CertStatusRecord(777, "good"))
    assert len(response.extensions) == 0
    assert response.responder_key_hash == responder_key_hash(responder)
    assert response.responder_name is None
    assert response.certificates == [responder.cert]
    assert isinstance(response.signature_hash_algorithm, hashes.SHA256)
    key = responder.cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(response.signature, response.tbs_response_bytes, ec.ECDSA(hashes.SHA256()))


def test_times_are_whole_seconds_in_utc(pki: Pki, responder: Responder) -> None:
    query = parse_request(_request_for(pki, 778))
    start = datetime.now(UTC).astimezone()  # a local zone: the instant is what counts
    der = build_response(
        query=query,
        issuer_cert=pki.issuer_cert,
        responder_cert=responder.cert,
        responder_key=responder.key,
        record=CertStatusRecord(778, "good"),
        this_update=start,
        next_update=start + timedelta(hours=1),
        nonce=None,
    )
    response = ocsp.load_der_ocsp_response(der)
    assert response.this_update_utc == start.astimezone(UTC).replace(microsecond=0)


def test_p384_responder_signs_with_sha384(p384_pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    cert = issue_responder_certificate(
        p384_pki.issuer_cert, p384_pki.issuer_key, key, now=real_now()
    )
    query = parse_request(_request_for(p384_pki, 779))
    response = _answer(p384_pki, Responder(cert, key, Path()), query, CertStatusRecord(779, "good"))
    assert isinstance(response.signature_hash_algorithm, hashes.SHA384)


@pytest.mark.parametrize(
    "record",
    [
        CertStatusRecord(11, "good"),
        CertStatusRecord(11, "unknown"),
        CertStatusRecord(11, "revoked", datetime(2026, 1, 1, tzinfo=UTC), None),
        CertStatusRecord(
            11, "revoked", datetime(2026, 1, 1, tzinfo=UTC), RevocationReason.SUPERSEDED
        ),
    ],
    ids=["good", "unknown", "revoked", "revoked-superseded"],
)
def test_pkilint_clean(
    pki: Pki, responder: Responder, tmp_path: Path, record: CertStatusRecord
) -> None:
    query = parse_request(_request_for(pki, 11, nonce=b"\x42" * 32))
    der = _respond(pki, responder, query, record, nonce=query.nonce)
    assert pkilint("lint_ocsp_response", write(tmp_path / "resp.der", der)) == []


# --- refusals --------------------------------------------------------------------------


def test_refuses_a_record_for_another_serial(pki: Pki, responder: Responder) -> None:
    query = parse_request(_request_for(pki, 5))
    with pytest.raises(ValueError, match="another serial"):
        _respond(pki, responder, query, CertStatusRecord(6, "good"))


def test_refuses_a_responder_of_another_issuer(
    pki: Pki, p384_pki: Pki, responder: Responder
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    foreign = issue_responder_certificate(
        p384_pki.issuer_cert, p384_pki.issuer_key, key, now=real_now()
    )
    query = parse_request(_request_for(pki, 5))
    with pytest.raises(ValueError, match="not issued by this issuer"):
        _respond(pki, Responder(foreign, key, Path()), query, CertStatusRecord(5, "good"))
    with pytest.raises(ValueError, match="does not match"):
        _respond(pki, Responder(responder.cert, key, Path()), query, CertStatusRecord(5, "good"))


def test_refuses_to_sign_outside_the_responders_validity(pki: Pki, responder: Responder) -> None:
    query = parse_request(_request_for(pki, 5))
    late = responder.cert.not_valid_after_utc
    with pytest.raises(ValueError, match="not valid at this_update"):
        build_response(
            query=query,
            issuer_cert=pki.issuer_cert,
            responder_cert=responder.cert,
            responder_key=responder.key,
            record=CertStatusRecord(5, "good"),
            this_update=late,
            next_update=late + timedelta(hours=1),
            nonce=None,
        )


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"nonce": b""}, "nonce"),
        ({"nonce": b"n" * 33}, "nonce"),
        ({"this_update": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"next_update": datetime(2020, 1, 1, tzinfo=UTC)}, "after this_update"),
    ],
)
def test_refuses_bad_arguments(
    pki: Pki, responder: Responder, changes: dict[str, object], message: str
) -> None:
    now = real_now()
    arguments: dict[str, object] = {
        "query": parse_request(_request_for(pki, 5)),
        "issuer_cert": pki.issuer_cert,
        "responder_cert": responder.cert,
        "responder_key": responder.key,
        "record": CertStatusRecord(5, "good"),
        "this_update": now,
        "next_update": now + timedelta(hours=1),
        "nonce": None,
    }
    with pytest.raises(ValueError, match=message):
        build_response(**(arguments | changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "revoked_at", "reason"),
    [
        ("good", datetime(2026, 1, 1, tzinfo=UTC), None),
        ("revoked", None, None),
        ("good", None, RevocationReason.KEY_COMPROMISE),
        ("revoked", datetime(2026, 1, 1, tzinfo=UTC), RevocationReason.REMOVE_FROM_CRL),
        ("valid", None, None),
    ],
)
def test_status_record_is_consistent(
    status: str, revoked_at: datetime | None, reason: RevocationReason | None
) -> None:
    with pytest.raises(ValueError):
        CertStatusRecord(1, status, revoked_at, reason)  # type: ignore[arg-type]


# --- helpers ---------------------------------------------------------------------------


def _request_for(pki: Pki, serial: int, *, nonce: bytes | None = None) -> bytes:
    """A SHA-1 CertID for ``serial`` under this issuer, as a client would build it."""
    issuer = pki.issuer_cert
    name_hash = hashes.Hash(hashes.SHA1())  # noqa: S303 - RFC 5019 §2.1.1: CertIDs are SHA-1
    name_hash.update(issuer.subject.public_bytes())
    builder = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
        name_hash.finalize(),
        responder_key_hash_of(issuer),
        serial,
        hashes.SHA1(),  # noqa: S303 - as above
    )
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(Encoding.DER)


def responder_key_hash_of(cert: x509.Certificate) -> bytes:
    """SHA-1 of the subjectPublicKey bits: RFC 5280 §4.2.1.2 method (1), as SKIs are built."""
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest


def responder_key_hash(responder: Responder) -> bytes:
    return responder_key_hash_of(responder.cert)
