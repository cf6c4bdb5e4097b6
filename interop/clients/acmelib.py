"""certbot's ``acme`` library (PyPI), driven in-process as a program using it would.

http-01 answers go to the harness's webroot responder, dns-01 TXT records straight to
pebble-challtestsrv; the library has no tls-alpn-01 challenge class and no key-change
call.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from acme import client, crypto_util, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from tests.support.certs import ECDSA_P256, RSA_2048, KeyType

from interop.lab import Lab
from interop.model import Mode, Session, StepError

DEADLINE_S = 60


def private_key(key_type: KeyType) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type is RSA_2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


class AcmeLibrary:
    name = "acme-lib"
    source = "PyPI `acme` (certbot's library, dev dependency)"
    trust = "`ClientNetwork.verify_ssl` set to the root's path (a requests CA bundle)"
    notes: tuple[str, ...] = (
        "renew first asks for the certificate's renewal information (RFC 9773, "
        "`ClientV2.renewal_time`).",
    )
    install_hint = "make install (acme is in requirements-dev.lock)"
    known_failures: dict[tuple[Mode, str], str] = {}

    def version(self) -> str | None:
        try:
            return version("acme")
        except PackageNotFoundError:
            return None

    def run(self, lab: Lab, s: Session) -> None:
        with lab.responder_for(s.mode):
            self._run(lab, s)

    def _run(self, lab: Lab, s: Session) -> None:  # noqa: PLR0915 (one scenario script)
        mode = s.mode
        workdir = lab.workdir / self.name / mode.short
        workdir.mkdir(parents=True, exist_ok=True)
        account_key = JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        net = client.ClientNetwork(account_key, alg=ES256, user_agent="certctl-interop")
        # requests takes a CA bundle path where acme's annotation says bool.
        net.verify_ssl = str(lab.root_pem)  # type: ignore[assignment]
        acme = client.ClientV2(client.ClientV2.get_directory(lab.directory_url(mode), net), net)
        state: dict[str, Any] = {}

        def deadline() -> dt.datetime:
            return dt.datetime.now() + dt.timedelta(seconds=DEADLINE_S)

        def register() -> None:
            before = lab.audit_count("acme_account_created")
            regr = acme.new_account(
                messages.NewRegistration.from_data(
                    email="interop@example.test", terms_of_service_agreed=True
                )
            )
            net.account = regr
            state["regr"] = regr
            lab.expect_audit("acme_account_created", before, "account creation")

        def answer(order: Any) -> dict[str, int]:
            """Answer every pending authorization; returns the challenge types used."""
            used: dict[str, int] = {}
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue
                name = authz.body.identifier.value
                wanted = "dns-01" if authz.body.wildcard else "http-01"
                challb = next((c for c in authz.body.challenges if c.chall.typ == wanted), None)
                if challb is None:
                    raise StepError(f"no {wanted} challenge offered for {name}")
                response, validation = challb.chall.response_and_validation(account_key)
                if wanted == "http-01":
                    path = lab.webroot / challb.chall.path.lstrip("/")
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(validation)
                else:
                    lab.challtestsrv.set_txt(
                        f"_acme-challenge.{name.removeprefix('*.')}", validation
                    )
                acme.answer_challenge(challb, response)
                used[wanted] = used.get(wanted, 0) + 1
            return used

        def issue(
            scenario: str, names: Sequence[str], key_type: KeyType, fresh: bool = True
        ) -> None:
            key = private_key(key_type)
            csr = crypto_util.make_csr(key_pem(key), list(names))
            before = {kind: lab.validations(kind) for kind in ("http-01", "dns-01")}
            order = acme.new_order(csr)
            used = answer(order)
            if mode is Mode.CHALLENGE and fresh and not used:
                raise StepError("the order's authorizations were not pending")
            done = acme.poll_and_finalize(order, deadline())
            bundle = workdir / f"{scenario}.fullchain.pem"
            bundle.write_text(done.fullchain_pem)
            (workdir / f"{scenario}.key.pem").write_bytes(key_pem(key))
            leaf = lab.check_bundle(bundle, workdir / f"{scenario}.key.pem", names, key_type)
            for kind, count in used.items():
                lab.expect_validated(kind, before[kind], count)
            state[scenario] = leaf

        def single() -> None:
            issue("single", lab.names(self.name, "single", mode), ECDSA_P256)

        def wildcard() -> None:
            base = lab.names(self.name, "wildcard", mode)[0]
            issue("wildcard", (base, f"*.{base}"), ECDSA_P256)

        def renew() -> None:
            old: x509.Certificate = state["single"]
            suggested, _ = acme.renewal_time(old.public_bytes(serialization.Encoding.PEM))
            if suggested is None:
                raise StepError("no renewal information (ARI) for the certificate")
            # Same account, same name: the valid authorization is reused (no new proof).
            issue("renew", lab.names(self.name, "single", mode), ECDSA_P256, fresh=False)
            new: x509.Certificate = state["renew"]
            if new.serial_number == old.serial_number:
                raise StepError("no new certificate: the serial did not change")
            state["single"] = new

        def revoke() -> None:
            leaf: x509.Certificate = state["single"]
            acme.revoke(leaf, 4)
            lab.expect_revoked(leaf)

        def deactivate() -> None:
            before = lab.audit_count("acme_account_deactivated")
            acme.deactivate_registration(state["regr"])
            lab.expect_audit("acme_account_deactivated", before, "account deactivation")

        s.run("register", register)
        s.run("single", single, needs="register")
        s.run(
            "multi",
            lambda: issue("multi", lab.names(self.name, "multi", mode, 2), ECDSA_P256),
            needs="register",
        )
        s.run("wildcard", wildcard, needs="register")
        if mode is Mode.CHALLENGE:
            s.unsupported("tls-alpn", "the library has no tls-alpn-01 challenge type")
        s.run(
            "ecdsa",
            lambda: issue("ecdsa", lab.names(self.name, "ecdsa", mode), ECDSA_P256),
            needs="register",
        )
        s.run(
            "rsa",
            lambda: issue("rsa", lab.names(self.name, "rsa", mode), RSA_2048),
            needs="register",
        )
        s.run("renew", renew, needs="single")
        s.run("revoke", revoke, needs="single")
        s.unsupported("rollover", "the library has no key-change call")
        s.run("deactivate", deactivate, needs="register")
