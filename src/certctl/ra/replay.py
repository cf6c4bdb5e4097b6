"""Anti-replay nonces are single use (RFC 8555 §6.5): the one place that spends them.

Nonces are minted and authenticated statelessly (certctl.acme.nonce); spending one
records it in the shared store, so a nonce is accepted once across workers, replicas and
restarts. A kid-signed request spends its nonce in the statement (or, on its slow path,
the transaction) that confirms its account (certctl.ra.accounts.authenticate_kid); a
jwk-signed one on its own.

No answer waits for its spend to reach the disk (``promised=False``, see
``Database.write``; on PostgreSQL the spend's statement is ``lazy``, see
storage.nonces): a crash of the machine before the next sync (within 0.1 s,
``durable.LAZY_SYNC_S``; on PostgreSQL within ``wal_writer_delay``) may take the record
back, and the nonce could then be replayed until it expires; waiting before answering
would not close that window, only keep the answer from its client. Whatever the answer
reports (an order created, a certificate issued) is committed with ``promised`` and
waited for, and that sync carries the spends before it.

A request whose operation has no effect before its first write transaction (newOrder,
finalize, and the reads of an order, an authorization or a certificate) may instead
carry its nonce as a ``PendingSpend`` into that transaction (``write_spending``): one
commit fewer, and the account is confirmed in the transaction that acts for it. A
finalize's claim, a newOrder's writes when no concurrent-orders cap applies, and those
reads, are each one statement that spends it with its own writes or read (``pending``,
then ``settle_spent``; storage.issuance, storage.new_orders, storage.spending).
Whoever defers settles afterwards: if the operation failed before spending, the nonce is
spent on its own then, before any answer leaves, and an operation whose spend found the
nonce used or the account changed (``NonceRaceError``) is rolled back and redone after
the ordinary spend. An operation that consults a rate limit before that transaction
(newOrder) spends the nonce first, in the statement that counts the account's open
orders (storage.spending) or on its own (``spend_first``), so a replay neither trips a
limit nor uses up an allowance; an authorization's deactivation settles its nonce before
it changes anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Connection

from certctl.domain.errors import AcmeError, ProblemType
from certctl.ra.context import RAContext
from certctl.storage import nonces

T = TypeVar("T")


def spend_nonce(conn: Connection, nonce: str, expires_at: datetime, *, lazy: bool = False) -> None:
    """Record the use of ``nonce`` in the caller's transaction; ``badNonce`` if it was
    used before (the caller's transaction then rolls back, writing nothing). ``lazy``
    only in a transaction of ``Database.write(promised=False)`` (storage.nonces)."""
    if not nonces.consume(conn, nonce, expires_at, lazy=lazy):
        raise AcmeError(ProblemType.BAD_NONCE, "nonce has already been used")


def use_nonce(ctx: RAContext, nonce: str, expires_at: datetime) -> None:
    """``spend_nonce`` on its own: one statement, atomic by itself. No answer reports the
    spend, so the answer does not wait for it to reach the disk (``promised=False``)."""
    with ctx.db.statement(promised=False) as conn:
        spend_nonce(conn, nonce, expires_at, lazy=True)


class NonceRaceError(Exception):
    """A deferred nonce could not be spent with its operation: it was spent elsewhere, or
    the account's key or status changed. The operation's transaction rolls back."""


@dataclass
class PendingSpend:
    """A kid request's nonce: authentic, its signature verified with the key of account
    ``account_id`` as cached (``jwk_json``), not yet spent."""

    nonce: str
    expires_at: datetime
    account_id: str
    profile_id: str
    jwk_json: str
    spent: bool = False

    def claim(self) -> bool:
        """True once, if the operation did not spend it: the caller then spends it the
        ordinary way (``Authenticated.settle``); from here on it counts as spent."""
        if self.spent:
            return False
        self.spent = True
        return True

    def consume(self, conn: Connection, *, lazy: bool = False) -> None:
        """Spend it in the caller's transaction if the account still has that key, is
        valid and of that profile; else NonceRaceError (which rolls the caller back).
        ``lazy`` as for ``spend_nonce``."""
        if not nonces.consume_for_account(conn, lazy=lazy, **self.keywords()):
            raise NonceRaceError

    def keywords(self) -> dict[str, Any]:
        """The keywords of ``nonces.consume_for_account`` but ``conn``."""
        return {
            "nonce": self.nonce,
            "expires_at": self.expires_at,
            "account_id": self.account_id,
            "profile_id": self.profile_id,
            "jwk_json": self.jwk_json,
        }


def spend_first(ctx: RAContext, spend: PendingSpend | None) -> None:
    """Spend ``spend`` now, in a statement of its own, unless it is spent already: for an
    operation about to do something outside the database (take a rate-limit allowance)
    that a replayed request must not reach. NonceRaceError as ``consume``."""
    if spend is None or spend.spent:
        return
    with ctx.db.statement(promised=False) as conn:
        spend.consume(conn, lazy=True)
    spend.spent = True


def pending(spend: PendingSpend | None) -> PendingSpend | None:
    """``spend`` if it is still to be spent: for an operation whose one statement spends
    it with its own writes (``storage.issuance.claim``), then ``settle_spent``."""
    return spend if spend is not None and not spend.spent else None


def settle_spent(unspent: PendingSpend | None, spent: bool) -> None:
    """After such a statement, given ``pending(spend)`` and whether its spend landed:
    not landed, the statement wrote nothing, and NonceRaceError sends the operation
    through the ordinary spend (as ``consume``); landed, it counts as spent."""
    if unspent is None:
        return
    if not spent:
        raise NonceRaceError
    unspent.spent = True


@contextmanager
def write_spending(
    ctx: RAContext, spend: PendingSpend | None, *, promised: bool = True
) -> Iterator[Connection]:
    """``ctx.db.write()`` that first spends ``spend``, unless it is spent already; it
    counts as spent once the transaction commits. ``promised`` as for ``Database.write``:
    False only when the transaction writes nothing else."""
    with ctx.db.write(promised=promised) as conn:
        if spend is not None and not spend.spent:
            spend.consume(conn, lazy=not promised)
        yield conn
    if spend is not None:
        spend.spent = True


def read_spending(
    ctx: RAContext,
    spend: PendingSpend | None,
    plain: Callable[[Connection], T],
    spending: Callable[[Connection, dict[str, Any]], tuple[bool, T]],
) -> T:
    """A read that spends ``spend`` in its own statement (storage.spending): ``spending``
    takes the keywords of ``nonces.consume_for_account`` and says whether it spent; when
    there is nothing to spend, ``plain``. Neither may raise for what it read: raised
    inside the statement's transaction, that would take the spend back on SQLite."""
    unspent = pending(spend)
    if unspent is None:
        with ctx.db.read() as conn:
            return plain(conn)
    # The spend is the only write: the answer does not wait for it.
    with ctx.db.statement(promised=False) as conn:
        spent, found = spending(conn, unspent.keywords())
    settle_spent(unspent, spent)
    return found
