"""Prometheus metrics: ``certctl_acme_<op>_total`` / ``_failures_total`` counters (names as
in the design notes) plus a request latency histogram per endpoint."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# With several workers, `certctl serve` points this at an empty directory before the
# workers start; prometheus_client then keeps values in shared files and /metrics sums
# every worker, not just the one that happens to answer.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

ACME_OPS = (
    "directory",
    "new_nonce",
    "new_account",
    "update_account",
    "list_orders",
    "new_order",
    "order_read",
    "finalize_order",
    "cert_download",
    "authz_read",
    "challenge_respond",
    "key_change",
    "revoke_cert",
    "new_authz",
    "renewal_info",
)

EVENTS = (
    "new_account_idempotent",
    "deactivate_account",
    "new_order_rejected",
    "certificates_issued",
)


class Metrics:
    """One registry per app, so tests and several apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.ops = {
            op: Counter(f"certctl_acme_{op}", f"ACME {op} requests", registry=self.registry)
            for op in ACME_OPS
        }
        self.failures = {
            op: Counter(
                f"certctl_acme_{op}_failures",
                f"ACME {op} requests that failed",
                registry=self.registry,
            )
            for op in ACME_OPS
        }
        self.events = {
            name: Counter(f"certctl_acme_{name}", name.replace("_", " "), registry=self.registry)
            for name in EVENTS
        }
        self.gc_counters = {
            name: Counter(f"certctl_acme_gc_{name}", f"GC: {name}", registry=self.registry)
            for name in (
                "runs",
                "run_failures",
                "nonces_reaped",
                "authzs_expired",
                "orders_invalidated",
                "orders_reconciled",
            )
        }
        self.validations = Counter(
            "certctl_acme_challenge_validations",
            "Challenge validations by type and outcome",
            ["type", "outcome"],
            registry=self.registry,
        )
        # The relying-party routes (/.well-known/pki): CRL downloads, OCSP answers by what
        # they said, CRLs signed, and requests refused by the per-client rate limit.
        self.pki_crl_requests = Counter(
            "certctl_pki_crl_requests", "CRL requests", registry=self.registry
        )
        self.pki_ocsp_requests = Counter(
            "certctl_pki_ocsp_requests",
            "OCSP requests by answer (good, revoked, unauthorized, malformed, internal)",
            ["status"],
            registry=self.registry,
        )
        self.pki_crl_generations = Counter(
            "certctl_pki_crl_generations", "CRLs signed and stored", registry=self.registry
        )
        self.pki_rate_limited = Counter(
            "certctl_pki_rate_limited",
            "PKI requests refused with 429 by the per-client rate limit",
            registry=self.registry,
        )
        # ACME rate limits: requests refused by each limit, and failed calls to the shared
        # rate-limit store (Redis), each answered from the process's own store instead.
        self.ratelimit_trips = Counter(
            "certctl_ratelimit_trips",
            "ACME requests refused with rateLimited, by limit",
            ["limit"],
            registry=self.registry,
        )
        self.ratelimit_store_errors = Counter(
            "certctl_ratelimit_store_errors",
            "Failed calls to the shared rate-limit store (limits then hold per process)",
            registry=self.registry,
        )
        self.latency = Histogram(
            "certctl_acme_request_duration_seconds",
            "ACME request latency by endpoint",
            ["endpoint"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
        )
        self._latency_by_op: dict[str, Histogram] = {}

    def exposition(self) -> bytes:
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)

    def observe(self, op: str, seconds: float, *, failed: bool) -> None:
        self.ops[op].inc()
        if failed:
            self.failures[op].inc()
        child = self._latency_by_op.get(op)
        if child is None:  # labels() per call was a third of this method's cost
            child = self._latency_by_op[op] = self.latency.labels(op)
        child.observe(seconds)

    def gc(self, counts: dict[str, int], failed: bool) -> None:
        """One GC run: ``counts`` maps nonces_reaped, authzs_expired, ... to amounts."""
        self.gc_counters["runs"].inc()
        if failed:
            self.gc_counters["run_failures"].inc()
        for name, amount in counts.items():
            self.gc_counters[name].inc(amount)

    def crl_generated(self, _issuer_id: str) -> None:
        self.pki_crl_generations.inc()

    def validation(self, challenge_type: str, outcome: str) -> None:
        self.validations.labels(challenge_type, outcome).inc()

    def ratelimit_trip(self, limit: str) -> None:
        self.ratelimit_trips.labels(limit).inc()

    def ratelimit_store_error(self) -> None:
        self.ratelimit_store_errors.inc()

    def event(self, name: str) -> None:
        self.events[name].inc()
