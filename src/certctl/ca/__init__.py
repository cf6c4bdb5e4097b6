"""certctl.ca: the local certificate authority, the only component that holds private keys.

Public surface: bootstrap the CA (``load_or_create_ca``), issue leaves through an ``Issuer``
(``IssueRequest`` -> ``IssuedCertificate``), the key-backend seam, and the HTTPS listener's
own certificate (``ensure_server_certificate``) and the persisted delegated OCSP responder
(``load_or_issue_responder``; the certificate itself comes from ``certctl.revocation``).
"""

from certctl.ca.bootstrap import load_or_create_ca
from certctl.ca.issuer import Issuer, LocalCA, csr_public_key, csr_signature_valid, issuer_id
from certctl.ca.keys import FileKeyBackend, KeyBackend, KeyType, PrivateKey, generate_key
from certctl.ca.lint import LintError
from certctl.ca.profile import IssuedCertificate, IssueRequest, key_info
from certctl.ca.responder import load_or_issue_responder
from certctl.ca.tls import ensure_server_certificate

__all__ = [
    "FileKeyBackend",
    "IssueRequest",
    "IssuedCertificate",
    "Issuer",
    "KeyBackend",
    "KeyType",
    "LintError",
    "LocalCA",
    "PrivateKey",
    "csr_public_key",
    "csr_signature_valid",
    "ensure_server_certificate",
    "generate_key",
    "issuer_id",
    "key_info",
    "load_or_create_ca",
    "load_or_issue_responder",
]
