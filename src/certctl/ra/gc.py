"""The GC loop's sweeps (CERTCTL_ACME_SERVER_GC_INTERVAL) and the reconciliation of
orders a crash left processing, in the loop and once at start-up. Each change writes an
audit event (actor acme-system:gc) in the same transaction; each sweep is its own
transaction, so one failing sweep does not block the others."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from certctl.acme.problems import problem_document
from certctl.config import AcmeServerSettings
from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.model import OrderStatus
from certctl.ra.context import RAContext
from certctl.storage import audit_log
from certctl.storage import gc as store
from certctl.storage import orders as order_store

log = logging.getLogger(__name__)

ACTOR = "acme-system:gc"
BATCH = 500
# The default of CERTCTL_ACME_SERVER_RECONCILE_AFTER: an order processing longer than this
# lost its worker. reconcile() reads the configured value from the context's settings.
STUCK_AFTER = AcmeServerSettings().reconcile_after


@dataclass
class GcCounts:
    nonces: int = 0
    authzs: int = 0
    orders: int = 0
    reconciled: int = 0

    def as_metrics(self) -> dict[str, int]:
        return {
            "nonces_reaped": self.nonces,
            "authzs_expired": self.authzs,
            "orders_invalidated": self.orders,
            "orders_reconciled": self.reconciled,
        }


Observer = Callable[[dict[str, int], bool], None]  # (counts by metric name, failed)


def sweep(ctx: RAContext) -> GcCounts:
    counts = GcCounts()
    now = ctx.clock()
    expired_error = json.dumps(
        problem_document(AcmeError(ProblemType.MALFORMED, "order expired before issuance"))
    )
    with ctx.db.write() as conn, store.fleet_lock(conn) as mine:
        if not mine:
            return counts  # another replica is sweeping right now
        counts.nonces = store.purge_nonces(conn, now, BATCH * 10)
    with ctx.db.write() as conn:
        ids = store.expire_authzs(conn, now, BATCH)
        for object_id in ids:
            audit_log.record(
                conn,
                at=now,
                actor=ACTOR,
                action="acme_authz_expired",
                object_type="acme_authorization",
                object_id=object_id,
            )
        counts.authzs = len(ids)
    with ctx.db.write() as conn:
        ids = store.invalidate_orders(conn, now, expired_error, BATCH)
        for object_id in ids:
            audit_log.record(
                conn,
                at=now,
                actor=ACTOR,
                action="acme_order_expired",
                object_type="acme_order",
                object_id=object_id,
            )
        counts.orders = len(ids)
    counts.reconciled = reconcile(ctx)
    return counts


def reconcile(ctx: RAContext, older_than: timedelta | None = None) -> int:
    """Finish orders left processing: valid if their certificate was recorded, else
    invalid (the client orders again). Never leaves one stuck.

    Only orders processing for longer than ``older_than`` (default: the configured
    CERTCTL_ACME_SERVER_RECONCILE_AFTER) are touched: a younger one may be another
    worker's or replica's finalize in flight. Safe to run in several processes at once:
    one write transaction, and each order changes only while it is still processing (a
    conditional update), so exactly one caller finishes and audits it."""
    older_than = ctx.settings.reconcile_after if older_than is None else older_than
    now = ctx.clock()
    error = json.dumps(
        problem_document(
            AcmeError(ProblemType.SERVER_INTERNAL, "issuance was interrupted; order again")
        )
    )
    done = 0
    with ctx.db.write() as conn:
        # Updated in id order: two replicas reconciling together (PostgreSQL) then lock
        # their rows in the same order and cannot deadlock; the loser's updates match no
        # row once the winner commits.
        stuck = sorted(store.stuck_processing(conn, now - older_than, BATCH))
        for order_id, cert_id in stuck:
            status = OrderStatus.VALID if cert_id else OrderStatus.INVALID
            if order_store.finish_processing(
                conn,
                order_id,
                new=status,
                now=now,
                certificate_id=cert_id,
                error=None if cert_id else error,
            ):
                audit_log.record(
                    conn,
                    at=now,
                    actor=ACTOR,
                    action="acme_order_reconciled",
                    object_type="acme_order",
                    object_id=order_id,
                    details={"status": status.value, "certificate_id": cert_id},
                )
                done += 1
    return done


def reconcile_at_startup(ctx: RAContext) -> int:
    """The start-up pass: finish the orders a crash left processing before this process
    serves, rather than waiting for the GC loop (which GC_INTERVAL=0 turns off). It uses
    the configured threshold, never zero: a replica starting while another one finalizes
    must leave that order alone. Never raises (a failure must not stop the server from
    starting); the GC loop, when on, tries again. Returns how many it finished."""
    try:
        done = reconcile(ctx)
    except Exception:
        log.exception("start-up reconciliation of orders left processing failed")
        return 0
    log.info(
        "start-up reconciliation",
        extra={
            "fields": {
                "orders_reconciled": done,
                "older_than_s": int(ctx.settings.reconcile_after.total_seconds()),
            }
        },
    )
    return done


def run_once(ctx: RAContext, observe: Observer) -> None:
    try:
        counts = sweep(ctx)
    except Exception:
        log.exception("GC sweep failed")
        observe(GcCounts().as_metrics(), True)
        return
    observe(counts.as_metrics(), False)
    if counts.nonces or counts.authzs or counts.orders or counts.reconciled:
        log.info("gc", extra={"fields": counts.__dict__})
