"""Clients and database probes for the fleet tests.

- ``fleet_client``: certbot's ``acme`` library on the fleet's directory, optionally with
  ``Connection: close`` on every request, so each request is a new TCP connection and
  haproxy's round robin picks the next replica for it.
- ``Direct``: raw JWS requests to ONE replica's own port, bypassing haproxy, but with the
  fleet's public Host header: the replicas build every URL (and check every JWS ``url``)
  from the Host, so a request signed for the public URL is valid on any replica.
- ``FleetDb``: direct reads of the shared database, and locks that hold requests inside a
  chosen step of the server's work (a row lock keeps concurrent finalizes or key changes
  waiting at their compare-and-set until all of them are there).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import requests
from acme import client, messages
from acme import errors as acme_errors
from cryptography import x509
from josepy.jwa import ES256
from josepy.jwk import JWKEC
from psycopg import sql
from sqlalchemy.engine import make_url

from tests.integration.acme_lib import PEM_CHAIN, AcmeClient
from tests.integration.wire import JOSE, Key, b64, csr_der, flattened, payload_bytes
from tests.support.fleet import Fleet
from tests.support.postgres import libpq_conninfo

HTTP_TIMEOUT_S = 15
RECONCILE_BOUND_S = 15.0
# pytest's record_property fixture: (name, value) shown with the report.
Record = Callable[[str, object], None]
LOCK_WAIT_TIMEOUT_S = 20.0
PROBLEM = "application/problem+json"
URN = "urn:ietf:params:acme:error:"


def fleet_client(
    directory_url: str, root_pem: Path, *, keepalive: bool = False, key: Key | None = None
) -> AcmeClient:
    """A ``ClientV2`` on the fleet's directory trusting only the certctl root.

    Without ``keepalive`` every request carries ``Connection: close``: the server closes
    the connection after answering, and requests opens a new one for the next request.
    """
    key = key or Key.ec256()
    net = client.ClientNetwork(
        JWKEC(key=key.private),
        alg=ES256,
        verify_ssl=str(root_pem),  # type: ignore[arg-type]
        user_agent="certctl-fleet-tests",
        timeout=HTTP_TIMEOUT_S,
    )
    net.session.trust_env = False  # loopback: never through a proxy from the environment
    if not keepalive:
        net.session.headers["Connection"] = "close"
    directory = client.ClientV2.get_directory(directory_url, net)
    return AcmeClient(client.ClientV2(directory, net), key)


def leaf_serial(chain_pem: str) -> str:
    """The first certificate's serial as certctl stores it: lower-case hex, no zeros."""
    leaf = x509.load_pem_x509_certificates(chain_pem.encode())[0]
    return format(leaf.serial_number, "x")


def is_problem(response: httpx.Response, status: int, kind: str) -> bool:
    if response.status_code != status:
        return False
    if response.headers.get("Content-Type", "").split(";")[0] != PROBLEM:
        return False
    body: dict[str, Any] = response.json()
    return body.get("type") == URN + kind


# -- one replica, bypassing haproxy -----------------------------------------------------


@dataclass(frozen=True)
class DirectAccount:
    key: Key
    url: str  # the kid, a public URL

    @property
    def id(self) -> str:
        return self.url.rsplit("/", 1)[1]


class Direct:
    """HTTPS to one replica's port with the fleet's Host (its public URLs stay valid);
    with ``index`` None, to haproxy (a raw client of the fleet)."""

    def __init__(self, fleet: Fleet, index: int | None) -> None:
        self.fleet = fleet
        self.target = fleet.base_url if index is None else fleet.replicas[index].base_url
        ctx = ssl.create_default_context(cafile=str(fleet.root_pem_path))
        self.http = httpx.Client(
            verify=ctx,
            trust_env=False,
            timeout=HTTP_TIMEOUT_S,
            headers={"Host": fleet.netloc},
        )
        response = self.http.get(self.local(fleet.directory_url))
        assert response.status_code == 200, response.text
        self.directory: dict[str, Any] = response.json()

    def close(self) -> None:
        self.http.close()

    def local(self, public_url: str) -> str:
        """``public_url`` (on haproxy's address) as sent to this replica's own port."""
        assert public_url.startswith(self.fleet.base_url), public_url
        return self.target + public_url[len(self.fleet.base_url) :]

    def __getitem__(self, name: str) -> str:
        url: str = self.directory[name]
        return url

    def nonce(self) -> str:
        response = self.http.head(self.local(self["newNonce"]))
        assert response.status_code == 200, response.status_code
        return response.headers["Replay-Nonce"]

    def body(
        self,
        key: Key,
        url: str,
        payload: Mapping[str, Any] | bytes | None,
        *,
        kid: str | None = None,
        nonce: str | None = None,
    ) -> bytes:
        """A flattened JWS for ``url`` with ``nonce`` or a fresh one (from this replica:
        nonces are honoured by every replica of the fleet)."""
        header: dict[str, Any] = {"alg": key.alg, "nonce": nonce or self.nonce(), "url": url}
        if kid is None:
            header["jwk"] = key.jwk
        else:
            header["kid"] = kid
        return json.dumps(flattened(key, header, payload_bytes(payload))).encode()

    def post(self, url: str, body: bytes) -> httpx.Response:
        return self.http.post(self.local(url), content=body, headers={"Content-Type": JOSE})

    def signed(
        self,
        key: Key,
        url: str,
        payload: Mapping[str, Any] | bytes | None,
        *,
        kid: str | None = None,
    ) -> httpx.Response:
        return self.post(url, self.body(key, url, payload, kid=kid))

    def new_account(self) -> DirectAccount:
        key = Key.ec256()
        response = self.signed(key, self["newAccount"], {"termsOfServiceAgreed": True})
        assert response.status_code == 201, response.text
        return DirectAccount(key, response.headers["Location"])

    def ready_order(self, account: DirectAccount, *names: str) -> tuple[str, dict[str, Any]]:
        """(order URL, order) of a new order; trust_authenticated makes it ready at once."""
        identifiers = [{"type": "dns", "value": n} for n in names]
        response = self.signed(
            account.key, self["newOrder"], {"identifiers": identifiers}, kid=account.url
        )
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        assert order["status"] == "ready", order
        return response.headers["Location"], order

    def finalize_body(self, account: DirectAccount, order: Mapping[str, Any]) -> bytes:
        names = [i["value"] for i in order["identifiers"]]
        csr = csr_der(Key.ec256(), names)
        return self.body(account.key, order["finalize"], {"csr": b64(csr)}, kid=account.url)


# -- the shared database -----------------------------------------------------------------


class FleetDb:
    """Direct reads of the fleet's database (autocommit), and lock holders."""

    def __init__(self, database_url: str) -> None:
        self.conninfo = libpq_conninfo(make_url(database_url))
        self.name = make_url(database_url).database

    def connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5)

    def rows(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with self.connect() as conn:
            return conn.execute(query, params).fetchall()

    def execute(self, query: str, *params: Any) -> int:
        """A statement without rows (autocommit); the number of rows it changed."""
        with self.connect() as conn:
            return conn.execute(query, params).rowcount

    def order_statuses(self) -> dict[str, str]:
        return {str(r[0]): str(r[1]) for r in self.rows("SELECT id, status FROM acme_orders")}

    def order_status(self, order_id: str) -> str:
        rows = self.rows("SELECT status FROM acme_orders WHERE id = %s", order_id)
        assert rows, order_id
        return str(rows[0][0])

    def authz_status(self, authz_id: str) -> str:
        rows = self.rows("SELECT status FROM acme_authorizations WHERE id = %s", authz_id)
        assert rows, authz_id
        return str(rows[0][0])

    def wait_status(self, order_id: str, status: str, timeout: float = LOCK_WAIT_TIMEOUT_S) -> bool:
        deadline = time.monotonic() + timeout
        while self.order_status(order_id) != status:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def certificates(self) -> list[tuple[str, str, str | None]]:
        """(version id, serial, ACME order id) of every certificate in the inventory."""
        return [
            (str(r[0]), str(r[1]), None if r[2] is None else str(r[2]))
            for r in self.rows("SELECT id, serial, acme_order_id FROM certificate_versions")
        ]

    def blocked_on_locks(self) -> int:
        """Backends of this database waiting for a lock (held by one of ours)."""
        rows = self.rows(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'",
            self.name,
        )
        return int(rows[0][0])

    def wait_blocked(self, count: int, timeout: float = LOCK_WAIT_TIMEOUT_S) -> int:
        """Wait until ``count`` backends wait on our lock; the number seen at the end."""
        deadline = time.monotonic() + timeout
        seen = self.blocked_on_locks()
        while seen < count and time.monotonic() < deadline:
            time.sleep(0.05)
            seen = self.blocked_on_locks()
        return seen

    def backdate_processing(self, by: timedelta) -> int:
        """Move ``updated_at`` of orders left processing back by ``by``: as if that time
        had passed since the crash (CERTCTL_ACME_SERVER_RECONCILE_AFTER is at least a
        minute, too long to wait for in a test)."""
        with self.connect() as conn:
            cur = conn.execute(
                "UPDATE acme_orders SET updated_at = updated_at - %s WHERE status = 'processing'",
                (by,),
            )
            return cur.rowcount

    @contextmanager
    def holding(self, statement: sql.Composed) -> Iterator[None]:
        """Run ``statement`` (a lock) in a transaction kept open for the block, then roll
        back: whatever the server does that conflicts with it waits meanwhile."""
        conn = psycopg.connect(self.conninfo, connect_timeout=5)
        try:
            conn.execute(statement)
            yield
        finally:
            conn.rollback()
            conn.close()

    def row_lock(self, table: str, row_id: str) -> sql.Composed:
        return sql.SQL("SELECT 1 FROM {} WHERE id = {} FOR UPDATE").format(
            sql.Identifier(table), sql.Literal(row_id)
        )

    def table_write_lock(self, table: str) -> sql.Composed:
        """Blocks inserts, updates and deletes (ROW EXCLUSIVE); reads go on."""
        return sql.SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(sql.Identifier(table))


# -- invariants after a failure ----------------------------------------------------------


def assert_inventory(db: FleetDb, received: list[str]) -> None:
    """Every serial a client received is recorded exactly once; no serial twice; a valid
    order has exactly one certificate, with the serial reserved for it before signing;
    every certificate belongs to a valid order that points at it."""
    assert len(received) == len(set(received)), "a client received one serial twice"
    certificates = db.certificates()
    serials = [serial for _, serial, _ in certificates]
    assert len(serials) == len(set(serials)), "duplicate serials in the inventory"
    missing = set(received) - set(serials)
    assert not missing, f"received but not recorded: {sorted(missing)}"
    orders = {
        str(r[0]): (str(r[1]), r[2], r[3])
        for r in db.rows("SELECT id, status, certificate_id, reserved_serial FROM acme_orders")
    }
    by_order: dict[str, list[tuple[str, str]]] = {}
    for cert_id, serial, order_id in certificates:
        assert order_id in orders, f"certificate {cert_id} without its order"
        by_order.setdefault(order_id, []).append((cert_id, serial))
    for order_id, (status, certificate_id, reserved) in orders.items():
        certs = by_order.get(order_id, [])
        if status == "valid":
            assert certs == [(certificate_id, reserved)], (order_id, certs, reserved)
        else:
            assert not certs, (order_id, status, certs)


def reconcile_stuck(db: FleetDb, stuck_after: timedelta) -> tuple[list[str], float]:
    """Orders left processing, and the seconds the replicas' GC took to finish them once
    they were ``stuck_after`` old (the age is simulated: see ``backdate_processing``).
    Afterwards every order is valid, invalid or pending (derived ready)."""
    stuck = [o for o, status in db.order_statuses().items() if status == "processing"]
    db.backdate_processing(stuck_after + timedelta(seconds=1))
    aged_at = time.monotonic()
    while any(s == "processing" for s in db.order_statuses().values()):
        assert time.monotonic() - aged_at < RECONCILE_BOUND_S, "orders left processing"
        time.sleep(0.1)
    took = time.monotonic() - aged_at
    statuses = set(db.order_statuses().values())
    assert statuses <= {"valid", "invalid", "pending"}, statuses
    return stuck, took


# -- client load -------------------------------------------------------------------------


@dataclass
class FlowLoad:
    """Client threads running full ACME flows through haproxy in a loop until stopped.

    A flow that fails is retried with a fresh client and account. Errors count as clean
    when they are a broken connection (``connection_errors``: a replica died under the
    request) or a problem document of a ``retryable`` type; anything else (a timeout, a
    body that is not a problem document, a wrong answer) is unclean and kept with its
    traceback.
    """

    fleet: Fleet
    label: str
    threads: int
    retryable: frozenset[str]
    connection_errors: bool
    keepalive: bool = False
    serials: list[str] = field(default_factory=list)
    completed_at: list[float] = field(default_factory=list)
    clean: list[tuple[float, str]] = field(default_factory=list)
    unclean: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [
            threading.Thread(target=self._flows, args=(i,), daemon=True)
            for i in range(self.threads)
        ]

    def start(self) -> None:
        for worker in self._workers:
            worker.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout)
        assert not any(w.is_alive() for w in self._workers), "a client thread hung"

    def _flows(self, worker: int) -> None:
        acme: AcmeClient | None = None
        n = 0
        while not self._stop.is_set():
            n += 1
            ordered = False
            try:
                if acme is None or acme.net.account is None:
                    acme = fleet_client(
                        self.fleet.directory_url, self.fleet.root_pem_path, keepalive=self.keepalive
                    )
                    acme.register()
                order, _ = acme.order(f"w{worker}-{n}.{self.label}.fleet.test")
                ordered = True
                order = acme.acme.begin_finalization(order)
                assert order.body.status == messages.STATUS_VALID, order.body
                assert order.body.certificate is not None
                chain = acme.post_as_get(order.body.certificate)
                assert chain.headers["Content-Type"] == PEM_CHAIN, chain.headers
                with self._lock:
                    self.serials.append(leaf_serial(chain.text))
                    self.completed_at.append(time.monotonic())
                continue
            except (
                requests.exceptions.ConnectionError,
                requests.exceptions.ChunkedEncodingError,  # the answer was cut off
            ) as exc:
                clean = self.connection_errors
                what = f"{type(exc).__name__}: {exc}"
            except messages.Error as exc:
                clean = exc.code in self.retryable
                what = f"problem {exc.typ}: {exc.detail}"
            except acme_errors.ClientError as exc:
                # A HEAD new-nonce answered with a problem: it has no body to parse.
                clean = "serverInternal" in self.retryable and head_problem(exc, 500)
                what = f"{type(exc).__name__}: {exc}"
            except Exception:
                clean, what = False, traceback.format_exc()
            with self._lock:
                if clean:
                    self.clean.append((time.monotonic(), what))
                else:
                    self.unclean.append(what)
            if ordered:
                # The failed flow's order stays open and counts against the account's
                # concurrent-orders limit: go on with a new account.
                acme = None
            time.sleep(0.1)


def head_problem(exc: acme_errors.ClientError, status: int) -> bool:
    """The acme library's error for a HEAD (new-nonce) answered with a problem document:
    a HEAD answer has no body, so the library cannot parse the problem."""
    response = exc.args[0] if exc.args else None
    if not isinstance(response, requests.Response):
        return False
    content_type = response.headers.get("Content-Type", "").split(";")[0]
    return (
        response.request.method == "HEAD"
        and response.status_code == status
        and content_type == PROBLEM
    )


# -- threads -----------------------------------------------------------------------------


class Background:
    """Run a function on a daemon thread and keep its result or exception."""

    def __init__(self, target: Any, *args: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(target, *args), daemon=True)
        self._thread.start()

    def _run(self, target: Any, *args: Any) -> None:
        try:
            self.result = target(*args)
        except BaseException as exc:  # handed to the test through .error
            self.error = exc

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "background request still running"
