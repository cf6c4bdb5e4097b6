"""The delegated OCSP responder's key and certificate, kept beside the CA.

Layout under ``<data_dir>/ca/``::

    keys/ocsp-<issuer_id>.pem   the responder key, through the CA's KeyBackend
    ocsp/<issuer_id>.pem        its current certificate (public)

The certificate itself is built by ``certctl.revocation`` (RFC 6960 §4.2.2.2); this module
only hands the builder the issuer's key, persists what it returns and decides, under the
CA lock, whether a stored certificate can be reused. Every worker and restart thereby
signs with the same responder until it is due for rotation, and two processes that find
it due at the same moment rotate it once.

A CA directory mounted read-only (a fleet sharing one CA) cannot store a responder: each
process then keeps its own in memory, with the stored key if there is one, else a new
one, and the stored certificate while it is current. Every such responder is delegated by
the same issuer, so relying parties accept all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certctl.ca._files import (
    PUBLIC_FILE_MODE,
    ensure_private_dir,
    exclusive_lock,
    is_read_only_error,
    write_atomic,
)
from certctl.ca.issuer import Issuer, LocalCA, pem
from certctl.ca.keys import KeyType, PrivateKey, generate_key
from certctl.ca.lint import spki

# (issuer certificate, issuer key, responder key) -> responder certificate
IssueResponder = Callable[[x509.Certificate, PrivateKey, PrivateKey], x509.Certificate]
# Is this stored certificate still good to sign with (not due for rotation)?
IsCurrent = Callable[[x509.Certificate], bool]


def responder_key_name(issuer_id: str) -> str:
    return f"ocsp-{issuer_id}"


def responder_key_type(issuer: Issuer) -> KeyType:
    """The issuer's own key type: a responder is as strong as the CA it speaks for."""
    key = issuer.certificate.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        return KeyType.ECDSA_P384 if key.curve.key_size >= 384 else KeyType.ECDSA_P256
    size = key.key_size if isinstance(key, rsa.RSAPublicKey) else 0
    return {3072: KeyType.RSA_3072, 4096: KeyType.RSA_4096}.get(size, KeyType.RSA_2048)


def load_or_issue_responder(
    ca: LocalCA,
    issuer_id: str,
    *,
    is_current: IsCurrent,
    issue: IssueResponder,
) -> tuple[x509.Certificate, PrivateKey]:
    """The responder certificate and key of issuer ``issuer_id``: the stored ones while
    ``is_current`` accepts them, else a certificate freshly issued by ``issue``.

    ``KeyError`` for an unknown issuer. Without a data directory (a CA built in memory)
    nothing is stored.
    """
    issuer = ca.issuers[issuer_id]
    ca_dir, backend = ca.ca_dir, ca.key_backend
    if ca_dir is None or backend is None:
        key = generate_key(responder_key_type(issuer))
        return issuer.sign_revocation(lambda cert, ca_key: issue(cert, ca_key, key)), key
    directory = ca_dir / "ocsp"
    path = directory / f"{issuer.id}.pem"
    try:
        ensure_private_dir(directory)
        with exclusive_lock(directory / ".lock"):
            key = backend.load_or_create(responder_key_name(issuer.id), responder_key_type(issuer))
            stored = _stored(path, issuer, key)
            if stored is not None and is_current(stored):
                return stored, key
            cert = issuer.sign_revocation(lambda cert, ca_key: issue(cert, ca_key, key))
            write_atomic(path, pem(cert).encode("ascii"), PUBLIC_FILE_MODE)
            return cert, key
    except OSError as exc:
        if not is_read_only_error(exc):
            raise
    # Read-only CA directory: this process's own responder, kept by the caller.
    try:
        key = backend.load(responder_key_name(issuer.id))
    except KeyError:
        key = generate_key(responder_key_type(issuer))
    stored = _stored(path, issuer, key)
    if stored is not None and is_current(stored):
        return stored, key
    return issuer.sign_revocation(lambda cert, ca_key: issue(cert, ca_key, key)), key


def _stored(path: Path, issuer: Issuer, key: PrivateKey) -> x509.Certificate | None:
    """The certificate at ``path`` if it is this issuer's, for this key; None otherwise
    (missing, unreadable, or left over from another CA: it is replaced)."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        cert.verify_directly_issued_by(issuer.certificate)
    except (FileNotFoundError, ValueError, TypeError, InvalidSignature):
        return None
    if spki(cert.public_key()) != spki(key.public_key()):
        return None
    return cert
