"""CRLs from the PKI service, on a real SQLite file and on PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import pytest
from cryptography import x509

from certctl.ca import Issuer, LocalCA, PrivateKey
from certctl.ra.pki import PkiService, UnknownIssuerError, crl_lifetime, crl_url
from certctl.revocation import RevocationReason, build_crl
from certctl.storage import revocations
from certctl.storage.db import Database
from tests.unit.pki.support import BASE_URL, INTERVAL, World, crl_reason, crl_serials

T = TypeVar("T")


def number_of(der: bytes) -> int:
    crl = x509.load_der_x509_crl(der)
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_crl_numbers_strictly_increase_across_instances_and_restarts(world: World) -> None:
    first = world.service()
    numbers = [first.generate_crl(world.issuer.id).number for _ in range(2)]
    # A "restart": a new database handle, the CA loaded again from disk, a new service.
    db = Database(world.db.url)
    try:
        world.ca = world.reloaded_ca()
        restarted = world.service(db=db)
        numbers.append(restarted.generate_crl(world.issuer.id).number)
        current = restarted.current_crl(world.issuer.id)
    finally:
        db.dispose()
    assert numbers == [1, 2, 3]
    assert current.number == 3 and number_of(current.der) == 3


def test_concurrent_generation_never_repeats_a_number(world: World) -> None:
    services = [world.service(), world.service()]
    stored: list[int] = []
    errors: list[BaseException] = []

    def run(service: PkiService) -> None:
        try:
            for _ in range(5):
                stored.append(service.generate_crl(world.issuer.id).number)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in services for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    # Each stored CRL took the next number; a generator that lost a race (only possible
    # for the very first CRL on PostgreSQL) was handed the winner's, never a repeat.
    assert sorted(set(stored)) == list(range(1, len(world.generated) + 1))
    with world.db.read() as conn:
        final = revocations.get_crl(conn, world.issuer.id)
    assert final is not None and final.crl_number == max(stored)
    assert number_of(final.der) == final.crl_number


class RacingIssuer(Issuer):
    """Stores a CRL numbered 41 from another connection while the service signs its own:
    the store it reads its number from has moved on by the time it stores."""

    def __init__(self, world: World) -> None:
        key = world.ca.key_backend.load("issuing-ca-1")  # type: ignore[union-attr]
        super().__init__(world.issuer.certificate, key, world.ca.root_pem)
        self.world = world

    def sign_revocation(self, build: Callable[[x509.Certificate, PrivateKey], T]) -> T:
        result = super().sign_revocation(build)
        now = self.world.clock()
        der = super().sign_revocation(
            lambda cert, key: build_crl(
                issuer_cert=cert,
                issuer_key=key,
                crl_number=41,
                this_update=now,
                next_update=now + INTERVAL,
                entries=[],
                idp_url=crl_url(BASE_URL, self.id),
            )
        )
        other = Database(self.world.db.url)
        try:
            with other.write() as conn:
                state = revocations.CrlState(self.id, 41, now, now + INTERVAL, der)
                assert revocations.store_crl(conn, state)
        finally:
            other.dispose()
        return result


def test_a_lost_race_returns_the_winner(world: World, store_url: str) -> None:
    if store_url.startswith("sqlite"):
        pytest.skip("SQLite writers queue (BEGIN IMMEDIATE): no race to lose")
    racing = LocalCA(world.ca.root, [RacingIssuer(world)])
    service = PkiService(
        world.ctx, racing, base_url=BASE_URL, crl_interval=INTERVAL, ticker=world.ticker
    )
    assert service.generate_crl(world.issuer.id).number == 41
    with world.db.read() as conn:
        assert revocations.crl_number(conn, world.issuer.id) == 41


def test_revoked_entries_are_listed_with_time_and_reason(world: World) -> None:
    _, compromised = world.issue()
    _, superseded = world.issue()
    _, unspecified = world.issue()
    _, good = world.issue()
    world.revoke(compromised, RevocationReason.KEY_COMPROMISE)
    world.revoke(superseded, RevocationReason.SUPERSEDED)
    world.revoke(unspecified, RevocationReason.UNSPECIFIED)
    published = world.service().generate_crl(world.issuer.id)

    crl = x509.load_der_x509_crl(published.der)
    assert crl.is_signature_valid(world.issuer.certificate.public_key())  # type: ignore[arg-type]
    assert crl.issuer == world.issuer.certificate.subject
    entries = crl_serials(published.der)
    assert set(entries) == {int(v.serial, 16) for v in (compromised, superseded, unspecified)}
    assert int(good.serial, 16) not in entries
    assert crl_reason(entries[int(compromised.serial, 16)]) is x509.ReasonFlags.key_compromise
    assert crl_reason(entries[int(superseded.serial, 16)]) is x509.ReasonFlags.superseded
    assert crl_reason(entries[int(unspecified.serial, 16)]) is None  # RFC 5280 §5.3.1
    revoked_at = entries[int(compromised.serial, 16)].revocation_date_utc
    assert revoked_at == world.clock().replace(microsecond=0)
    assert published.entries == 3
    # The IDP names exactly the URL the leaves carry (RFC 5280 §5.2.5).
    idp = crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint).value
    assert idp.full_name == [x509.UniformResourceIdentifier(crl_url(BASE_URL, world.issuer.id))]
    assert idp.only_contains_user_certs
    lifetime = crl.next_update_utc - crl.last_update_utc  # type: ignore[operator]
    assert lifetime == crl_lifetime(INTERVAL) == timedelta(hours=24)


def test_entries_are_kept_until_after_expiry(world: World) -> None:
    now = world.clock()
    _, short = world.issue(not_after=now + timedelta(hours=1))
    world.revoke(short)
    service = world.service()
    serial = int(short.serial, 16)
    world.clock.advance(timedelta(hours=2))  # expired an hour ago
    assert serial in crl_serials(service.generate_crl(world.issuer.id).der)
    world.clock.advance(crl_lifetime(INTERVAL) - timedelta(hours=1, seconds=1))
    assert serial in crl_serials(service.generate_crl(world.issuer.id).der)
    world.clock.advance(timedelta(seconds=2))  # one CRL lifetime past notAfter
    assert serial not in crl_serials(service.generate_crl(world.issuer.id).der)


def test_current_crl_is_reused_until_half_its_validity(world: World) -> None:
    service = world.service()
    first = service.current_crl(world.issuer.id)
    world.clock.advance(crl_lifetime(INTERVAL) / 2 - timedelta(seconds=1))
    world.ticker.advance(5)
    assert service.current_crl(world.issuer.id).number == first.number
    world.clock.advance(timedelta(seconds=1))
    world.ticker.advance(5)
    assert service.current_crl(world.issuer.id).number == first.number + 1


def test_refresh_regenerates_every_interval_once_across_processes(world: World) -> None:
    one, two = world.service(), world.service()
    assert [c.number for c in one.refresh_crls()] == [1]
    assert [c.number for c in two.refresh_crls()] == [1]  # fresh: nothing signed
    world.clock.advance(INTERVAL - timedelta(seconds=1))
    assert [c.number for c in two.refresh_crls()] == [1]
    world.clock.advance(timedelta(seconds=1))
    assert [c.number for c in two.refresh_crls()] == [2]
    assert [c.number for c in one.refresh_crls()] == [2]
    assert len(world.generated) == 2


def test_revocation_in_this_process_publishes_a_crl_at_once(world: World) -> None:
    service = world.service()
    before = service.current_crl(world.issuer.id)
    _, version = world.issue()
    world.revoke(version, hooks=(service.on_revoked,))
    after = service.current_crl(world.issuer.id)  # no time has passed
    assert after.number == before.number + 1
    assert int(version.serial, 16) in crl_serials(after.der)


@pytest.mark.parametrize("hook", [True, False], ids=["revoker-has-hook", "cli-no-hook"])
def test_revocation_elsewhere_reaches_the_crl_within_a_second(world: World, hook: bool) -> None:
    revoker, reader = world.service(), world.service()
    before = reader.current_crl(world.issuer.id)
    _, version = world.issue()
    world.revoke(version, hooks=(revoker.on_revoked,) if hook else ())
    world.ticker.advance(1.0)
    after = reader.current_crl(world.issuer.id)
    assert int(version.serial, 16) in crl_serials(after.der)
    assert after.number == before.number + 1  # signed once, by whoever came first


def test_a_revocation_from_before_the_start_is_not_missed(world: World) -> None:
    world.service().current_crl(world.issuer.id)
    _, version = world.issue()
    world.revoke(version)  # the command line: no hook, no server running
    started = world.service()
    assert int(version.serial, 16) in crl_serials(started.current_crl(world.issuer.id).der)


def test_a_crl_naming_another_url_is_replaced(world: World) -> None:
    wrong = world.service(base_url="https://elsewhere.example")
    stored = wrong.generate_crl(world.issuer.id)
    assert stored.idp_url == crl_url("https://elsewhere.example", world.issuer.id)
    served = world.service().current_crl(world.issuer.id)
    assert served.number == stored.number + 1
    assert served.idp_url == crl_url(BASE_URL, world.issuer.id)


def test_without_a_base_url_the_crl_has_no_idp(world: World) -> None:
    der = world.service(base_url="").generate_crl(world.issuer.id).der
    crl = x509.load_der_x509_crl(der)
    with pytest.raises(x509.ExtensionNotFound):
        crl.extensions.get_extension_for_class(x509.IssuingDistributionPoint)


def test_unknown_issuer(world: World) -> None:
    service = world.service()
    with pytest.raises(UnknownIssuerError):
        service.current_crl("iss-0000000000000000")
    with pytest.raises(UnknownIssuerError):
        service.generate_crl("iss-0000000000000000")


@pytest.mark.parametrize(
    ("interval", "lifetime"),
    [
        (timedelta(minutes=5), timedelta(hours=24)),
        (timedelta(hours=1), timedelta(hours=24)),
        (timedelta(hours=20), timedelta(hours=40)),
        (timedelta(days=30), timedelta(days=10)),
    ],
)
def test_crl_lifetime(interval: timedelta, lifetime: timedelta) -> None:
    assert crl_lifetime(interval) == lifetime
