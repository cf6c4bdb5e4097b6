"""Issue and revoke real certificates against a real store, with clocks the test moves."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp

from certctl.ca import Issuer, IssueRequest, LocalCA, load_or_create_ca
from certctl.config import AcmeServerSettings
from certctl.domain.model import AuthMode, CertificateVersion, Profile
from certctl.domain.serials import new_serial
from certctl.ra.context import RAContext
from certctl.ra.pki import PkiService
from certctl.ra.revocation import RevocationHook, revoke
from certctl.revocation import RevocationReason
from certctl.storage import inventory
from certctl.storage.db import Database

BASE_URL = "http://pki.example"
INTERVAL = timedelta(hours=1)


class Clock:
    """Wall time the test moves; starts at real time (openssl checks validity)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Ticker:
    """Monotonic seconds the test moves (feed polls, CRL rechecks)."""

    def __init__(self) -> None:
        self.value = 1000.0

    def __call__(self) -> float:
        return self.value

    def advance(self, seconds: float) -> None:
        self.value += seconds


@dataclass
class World:
    data_dir: Path
    db: Database
    ca: LocalCA
    clock: Clock = field(default_factory=Clock)
    ticker: Ticker = field(default_factory=Ticker)
    generated: list[int] = field(default_factory=list)

    @property
    def issuer(self) -> Issuer:
        return self.ca.default_issuer

    @property
    def ctx(self) -> RAContext:
        return RAContext(self.db, self.clock, AcmeServerSettings(), pki_base_url=BASE_URL)

    def service(self, *, base_url: str = BASE_URL, db: Database | None = None) -> PkiService:
        """A service as one process would hold it (own caches, own feed position); pass
        another ``db`` handle and a freshly loaded CA to play a restarted process."""
        ctx = RAContext(db or self.db, self.clock, AcmeServerSettings(), pki_base_url=base_url)
        return PkiService(
            ctx,
            self.ca,
            base_url=base_url,
            crl_interval=INTERVAL,
            ticker=self.ticker,
            on_crl_generated=lambda _: self.generated.append(1),
        )

    def reloaded_ca(self) -> LocalCA:
        return load_or_create_ca(self.data_dir, clock=self.clock)

    def issue(
        self, *, not_after: datetime | None = None, name: str = "leaf.example", record: bool = True
    ) -> tuple[x509.Certificate, CertificateVersion]:
        """Sign a leaf and (unless ``record`` is False) record it in the inventory, as
        finalize does."""
        now = self.clock().replace(microsecond=0)
        key = ec.generate_private_key(ec.SECP256R1())
        csr = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .sign(key, hashes.SHA256())
        )
        issued = self.issuer.issue(
            IssueRequest(
                csr=csr,
                dns_names=(name,),
                not_before=now - timedelta(minutes=5),
                not_after=not_after or now + timedelta(days=30),
                serial=new_serial(),
                crl_url=f"{BASE_URL}/.well-known/pki/crl/{self.issuer.id}",
                ocsp_url=f"{BASE_URL}/.well-known/pki/ocsp/{self.issuer.id}",
            )
        )
        version = CertificateVersion(
            id="cert-" + issued.serial_hex,
            certificate_id="mc-" + issued.serial_hex,
            serial=issued.serial_hex,
            fingerprint_sha256=issued.fingerprint_sha256,
            not_before=issued.not_before,
            not_after=issued.not_after,
            pem_chain=issued.chain_pem,
            csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
            key_algorithm=issued.key_algorithm,
            key_size=issued.key_size,
            source="acme",
            profile_id="default",
            issuer_id=self.issuer.id,
            acme_account_id=None,
            acme_order_id=None,
            created_at=now,
        )
        if record:
            with self.db.write() as conn:
                inventory.insert_certificate(
                    conn, version, name=name, common_name=name, sans=[name], now=now
                )
        return issued.certificate, version

    def revoke(
        self,
        version: CertificateVersion,
        reason: RevocationReason = RevocationReason.KEY_COMPROMISE,
        hooks: tuple[RevocationHook, ...] = (),
    ) -> None:
        """The shared revocation pipeline (status, feed row, audit), then ``hooks``."""
        revoke(self.ctx, version, reason, "test", hooks)


def make_world(data_dir: Path, db: Database) -> World:
    clock = Clock()
    ca = load_or_create_ca(data_dir, clock=clock)
    issuer = ca.default_issuer
    with db.write() as conn:
        inventory.ensure_issuer(
            conn,
            issuer_id=issuer.id,
            name=issuer.certificate.subject.rfc4514_string(),
            cert_pem=issuer.cert_pem,
            chain_pem=issuer.chain_pem,
            key_type="EllipticCurvePublicKey",
            now=clock(),
        )
        inventory.insert_profile(
            conn,
            Profile(
                id="default",
                name="default",
                issuer_id=issuer.id,
                acme_auth_mode=AuthMode.TRUST_AUTHENTICATED,
            ),
            clock(),
        )
    return World(data_dir, db, ca, clock)


def ocsp_request(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    *,
    nonce: bytes | None = None,
    algorithm: hashes.HashAlgorithm | None = None,
) -> bytes:
    sha1 = hashes.SHA1()  # noqa: S303 - RFC 5019 §2.1.1: CertIDs are SHA-1
    builder = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, algorithm or sha1)
    if nonce is not None:
        builder = builder.add_extension(x509.OCSPNonce(nonce), critical=False)
    return builder.build().public_bytes(serialization.Encoding.DER)


def load_response(der: bytes) -> ocsp.OCSPResponse:
    return ocsp.load_der_ocsp_response(der)


def crl_serials(der: bytes) -> dict[int, x509.RevokedCertificate]:
    return {entry.serial_number: entry for entry in x509.load_der_x509_crl(der)}


def crl_reason(entry: x509.RevokedCertificate) -> x509.ReasonFlags | None:
    try:
        return entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except x509.ExtensionNotFound:
        return None
