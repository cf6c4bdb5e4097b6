"""certctl.pki: the HTTP front for relying parties (CRLs and OCSP under /.well-known/pki).

Like ``certctl.wfe`` it never touches the CA, keys or SQL: every request is one call into
``certctl.ra.pki.PkiService``.
"""

from certctl.pki.routes import ROUTES, PkiState, pki_routes

__all__ = ["ROUTES", "PkiState", "pki_routes"]
