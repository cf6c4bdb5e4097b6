"""OCSP answers from the PKI service, on a real SQLite file and on PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.ocsp import OCSPCertStatus, OCSPResponseStatus

from certctl.ca import load_or_create_ca
from certctl.ra.pki import OCSP_LIFETIME, UnknownIssuerError
from certctl.revocation import RevocationReason
from tests.unit.pki.support import World, load_response, ocsp_request


def status(der: bytes) -> OCSPCertStatus:
    response = load_response(der)
    assert response.response_status is OCSPResponseStatus.SUCCESSFUL
    return response.certificate_status


def test_good_then_revoked_on_another_instance_within_a_second(world: World) -> None:
    cert, version = world.issue()
    revoker, reader = world.service(), world.service()
    request = ocsp_request(cert, world.issuer.certificate)
    first = reader.answer(world.issuer.id, request, nonce_allowed=False)
    assert (status(first.der), first.status, first.max_age) == (OCSPCertStatus.GOOD, "good", 300)

    world.revoke(version, RevocationReason.KEY_COMPROMISE, hooks=(revoker.on_revoked,))
    # The revoking process knows at once, through its hook.
    mine = revoker.answer(world.issuer.id, request, nonce_allowed=False)
    assert status(mine.der) is OCSPCertStatus.REVOKED
    # The other process may answer from its cache until its next look at the feed ...
    world.ticker.advance(0.5)
    assert reader.answer(world.issuer.id, request, nonce_allowed=False).der == first.der
    # ... which comes at most a second after the last one.
    world.ticker.advance(0.5)
    theirs = load_response(reader.answer(world.issuer.id, request, nonce_allowed=False).der)
    assert theirs.certificate_status is OCSPCertStatus.REVOKED
    assert theirs.revocation_reason is x509.ReasonFlags.key_compromise
    assert theirs.revocation_time_utc == world.clock().replace(microsecond=0)


def test_revocation_by_the_command_line_reaches_the_cache(world: World) -> None:
    cert, version = world.issue()
    service = world.service()
    request = ocsp_request(cert, world.issuer.certificate)
    assert status(service.answer(world.issuer.id, request, nonce_allowed=False).der) is (
        OCSPCertStatus.GOOD
    )
    world.revoke(version, RevocationReason.SUPERSEDED)  # no hook at all
    world.ticker.advance(1.0)
    answer = service.answer(world.issuer.id, request, nonce_allowed=False)
    assert status(answer.der) is OCSPCertStatus.REVOKED
    assert load_response(answer.der).revocation_reason is x509.ReasonFlags.superseded


def test_a_serial_never_issued_is_unauthorized_never_good(world: World) -> None:
    # Signed, but never recorded: what a serial reserved by a failed finalize looks like.
    cert, _ = world.issue(record=False)
    service = world.service()
    answer = service.answer(
        world.issuer.id, ocsp_request(cert, world.issuer.certificate), nonce_allowed=False
    )
    assert answer.status == "unauthorized" and answer.max_age == 0
    assert load_response(answer.der).response_status is OCSPResponseStatus.UNAUTHORIZED
    by_serial = service.answer_serial(world.issuer.id, "7" * 40)
    assert load_response(by_serial.der).response_status is OCSPResponseStatus.UNAUTHORIZED


def test_another_cas_certificate_is_unauthorized(world: World, tmp_path: Path) -> None:
    other = load_or_create_ca(tmp_path / "other", clock=world.clock).default_issuer
    cert, _ = world.issue()
    request = ocsp_request(cert, other.certificate)  # CertID names the other CA
    answer = world.service().answer(world.issuer.id, request, nonce_allowed=True)
    assert answer.status == "unauthorized"


def test_nonce_is_echoed_and_never_cached(world: World) -> None:
    cert, _ = world.issue()
    service = world.service()
    request = ocsp_request(cert, world.issuer.certificate, nonce=b"0123456789abcdef")
    first = service.answer(world.issuer.id, request, nonce_allowed=True)
    second = service.answer(world.issuer.id, request, nonce_allowed=True)
    nonce = load_response(first.der).extensions.get_extension_for_class(x509.OCSPNonce)
    assert nonce.value.nonce == b"0123456789abcdef"
    assert first.max_age == 0 and first.der != second.der  # signed fresh each time
    # GET answers are shared by HTTP caches: the nonce is ignored, the answer pre-signed.
    shared = service.answer(world.issuer.id, request, nonce_allowed=False)
    with pytest.raises(x509.ExtensionNotFound):
        load_response(shared.der).extensions.get_extension_for_class(x509.OCSPNonce)
    assert shared.max_age > 0


def test_a_cache_hit_is_not_signed_again(world: World) -> None:
    cert, _ = world.issue()
    service = world.service()
    request = ocsp_request(cert, world.issuer.certificate)
    first = service.answer(world.issuer.id, request, nonce_allowed=False).der
    world.clock.advance(timedelta(minutes=1))
    world.ticker.advance(60)
    # ECDSA signatures are randomised: the same bytes mean the same signature.
    assert service.answer(world.issuer.id, request, nonce_allowed=False).der == first
    world.clock.advance(OCSP_LIFETIME / 2)
    fresh = service.answer(world.issuer.id, request, nonce_allowed=False).der
    assert fresh != first
    assert load_response(fresh).this_update_utc == world.clock().replace(microsecond=0)


def test_each_certid_hash_gets_its_own_answer(world: World) -> None:
    cert, _ = world.issue()
    service = world.service()
    sha1 = service.answer(
        world.issuer.id, ocsp_request(cert, world.issuer.certificate), nonce_allowed=False
    )
    sha256 = service.answer(
        world.issuer.id,
        ocsp_request(cert, world.issuer.certificate, algorithm=hashes.SHA256()),
        nonce_allowed=False,
    )
    assert isinstance(load_response(sha1.der).hash_algorithm, hashes.SHA1)
    assert isinstance(load_response(sha256.der).hash_algorithm, hashes.SHA256)


def test_answer_fields_and_signature(world: World) -> None:
    cert, _ = world.issue()
    der = (
        world.service()
        .answer(world.issuer.id, ocsp_request(cert, world.issuer.certificate), nonce_allowed=False)
        .der
    )
    response = load_response(der)
    assert response.serial_number == cert.serial_number
    assert response.next_update_utc - response.this_update_utc == OCSP_LIFETIME  # type: ignore[operator]
    responder = response.certificates[0]
    responder.verify_directly_issued_by(world.issuer.certificate)
    key = responder.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert response.signature_hash_algorithm is not None
    key.verify(
        response.signature,
        response.tbs_response_bytes,
        ec.ECDSA(response.signature_hash_algorithm),
    )


def test_malformed_requests(world: World) -> None:
    service = world.service()
    for body in (b"", b"\x30\x03\x02\x01\x01", b"not der" * 100, b"\x00" * 9000):
        answer = service.answer(world.issuer.id, body, nonce_allowed=True)
        assert answer.status == "malformed" and answer.max_age == 0
        assert load_response(answer.der).response_status is OCSPResponseStatus.MALFORMED_REQUEST
    for text in ("", "xyz", "0", "-1", "ff" * 21):
        answer = service.answer_serial(world.issuer.id, text)
        assert load_response(answer.der).response_status is OCSPResponseStatus.MALFORMED_REQUEST


def test_answer_by_serial(world: World) -> None:
    cert, version = world.issue()
    service = world.service()
    spelled = ":".join(f"{cert.serial_number:040X}"[i : i + 2] for i in range(0, 40, 2))
    for text in (version.serial, spelled):
        answer = service.answer_serial(world.issuer.id, text)
        assert answer.status == "good"
        assert load_response(answer.der).serial_number == cert.serial_number
    # The same answer a SHA-1 request gets: one cache entry serves both.
    request = ocsp_request(cert, world.issuer.certificate)
    assert service.answer(world.issuer.id, request, nonce_allowed=False).der == answer.der


def test_unknown_issuer(world: World) -> None:
    service = world.service()
    with pytest.raises(UnknownIssuerError):
        service.answer("iss-0000000000000000", b"", nonce_allowed=True)
    with pytest.raises(UnknownIssuerError):
        service.answer_serial("iss-0000000000000000", "1")


def test_responder_is_persisted_reused_and_rotated(world: World, tmp_path: Path) -> None:
    cert, _ = world.issue()
    request = ocsp_request(cert, world.issuer.certificate)

    def responder_of(service_world: World) -> x509.Certificate:
        der = service_world.service().answer(world.issuer.id, request, nonce_allowed=True).der
        return load_response(der).certificates[0]

    first = responder_of(world)
    stored = world.data_dir / "ca" / "ocsp" / f"{world.issuer.id}.pem"
    assert x509.load_pem_x509_certificate(stored.read_bytes()) == first
    # A restart (CA loaded again from disk) signs with the same responder.
    world.ca = world.reloaded_ca()
    assert responder_of(world) == first
    assert first.not_valid_after_utc - first.not_valid_before_utc == timedelta(days=30, hours=1)
    # A week before it expires, it is replaced, on disk too, with the same key.
    world.clock.advance(timedelta(days=23, hours=1))
    rotated = responder_of(world)
    assert rotated.serial_number != first.serial_number
    assert rotated.public_key() == first.public_key()
    assert x509.load_pem_x509_certificate(stored.read_bytes()) == rotated
