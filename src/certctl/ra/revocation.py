"""The one revocation pipeline (ACME revoke-cert, `certctl cert revoke`, the REST API to come).

Certificate status, revocation record (the feed every OCSP cache follows), blocked key for
keyCompromise and audit event commit in one transaction. OCSP refresh and CRL regeneration
run after commit through hooks; the state change never depends on them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from cryptography import x509

from certctl.acme.jwk import spki_sha256
from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import CertificateVersion
from certctl.ra.context import RAContext
from certctl.revocation import RevocationReason
from certctl.storage import audit_log, revocations

log = logging.getLogger(__name__)

RevocationHook = Callable[[str, str], None]  # (issuer id, serial), after commit


def leaf_of(version: CertificateVersion) -> x509.Certificate:
    return x509.load_pem_x509_certificates(version.pem_chain.encode())[0]


def revoke(
    ctx: RAContext,
    version: CertificateVersion,
    reason: RevocationReason,
    actor: str,
    hooks: Sequence[RevocationHook] = (),
    *,
    key_proven: bool = True,
) -> None:
    """``key_proven``: the requester showed control of the certificate's key (or is the
    operator). Only then does keyCompromise block the key: an account that merely holds
    authorizations must not be able to ban someone else's key (Boulder's rule)."""
    now = ctx.clock()
    with ctx.db.write() as conn:
        if not revocations.mark_revoked(
            conn, version.serial, reason=int(reason), now=now, actor=actor
        ):
            raise AcmeError(ProblemType.ALREADY_REVOKED, "certificate is already revoked")
        if reason is RevocationReason.KEY_COMPROMISE and key_proven:
            # RFC 8555 §7.6: a compromised key must not be certified, or used for an account.
            spki = spki_sha256(leaf_of(version).public_key())
            revocations.block_key(conn, spki, serial=version.serial, now=now)
        audit_log.record(
            conn,
            at=now,
            actor=actor,
            action="certificate_revoked",
            object_type="certificate",
            object_id=version.certificate_id,
            details={
                "serial": version.serial,
                "reason": int(reason),
                "reason_name": reason.name.lower(),
            },
        )
    if hooks:
        # OCSP and the CRL show the revocation to everyone: not before it is on the disk
        # (with group commit the request's answer alone would wait for that).
        ctx.db.wait_durable()
    for hook in hooks:
        try:
            hook(version.issuer_id, version.serial)
        except Exception:
            # Best effort by design: the periodic CRL run and the OCSP feed catch up.
            log.exception("post-revocation hook failed for %s", version.serial)


def key_is_blocked(ctx: RAContext, spki: str) -> bool:
    with ctx.db.read() as conn:
        return revocations.key_blocked(conn, spki)
