"""Anti-replay nonces are single use (RFC 8555 §6.5): the one place that spends them.

Nonces are minted and authenticated statelessly (certctl.acme.nonce); spending one
records it in the shared store, so a nonce is accepted once across workers, replicas and
restarts. A kid-signed request spends its nonce in the statement (or, on its slow path,
the transaction) that confirms its account (certctl.ra.accounts.authenticate_kid); a
jwk-signed one on its own.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection

from certctl.domain.errors import AcmeError, ProblemType
from certctl.ra.context import RAContext
from certctl.storage import nonces


def spend_nonce(conn: Connection, nonce: str, expires_at: datetime) -> None:
    """Record the use of ``nonce`` in the caller's transaction; ``badNonce`` if it was
    used before (the caller's transaction then rolls back, writing nothing)."""
    if not nonces.consume(conn, nonce, expires_at):
        raise AcmeError(ProblemType.BAD_NONCE, "nonce has already been used")


def use_nonce(ctx: RAContext, nonce: str, expires_at: datetime) -> None:
    """``spend_nonce`` on its own: one statement, atomic by itself."""
    with ctx.db.statement() as conn:
        spend_nonce(conn, nonce, expires_at)
