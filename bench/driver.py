"""The load driver: an asyncio ACME client built for load, one per driver process.

A driver process holds a set of virtual users, each with its own ES256 account and its
own connection (an ``httpx.AsyncClient`` of one HTTP/1.1 keep-alive connection, verifying
the target's TLS chain), as each ACME client process has; and pools of pre-generated
CSRs and account keys. One client shared by all users was the first design: httpcore's
pool then does work in proportion to its connections, squared for the idle ones, on
every request, which at 256 users cost more driver CPU than the flows themselves and
changed with the timing of the server's answers. It obeys commands from the orchestrator
(:mod:`bench.run`) sent over a pipe, and answers each with a result.

Every request takes its nonce from the ``Replay-Nonce`` of the user's previous response
(a ``newNonce`` only when the user has none yet); a ``badNonce`` is retried once.

A *flow* is one certificate for one new name with the user's existing account: newOrder;
if the order is pending (Pebble), each authorization fetched, its http-01 challenge
answered and the authorization polled until valid, then the order polled until ready;
finalize with a pre-generated CSR; the order polled until valid if finalization is
asynchronous (Pebble); the certificate downloaded.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
import time
import traceback
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import httpx

from .jose import AccountKey, b64u, dumps, make_csr

JOSE_HEADERS = {"Content-Type": "application/jose+json"}
POLL_LIMIT_S = 30.0
ERROR_BACKOFF_S = 0.05
SETUP_CONCURRENCY = 16
NAME_SUFFIX = "bench.example.com"


# -- messages between the orchestrator and a driver process ----------------------------


@dataclass(frozen=True)
class TargetSpec:
    directory_url: str
    ca_pem: str  # trust anchor for the target's TLS certificate
    poll_interval_s: float = 0.01
    request_timeout_s: float = 60.0  # above the server's own waits (SQLite: 15 s)


@dataclass(frozen=True)
class SetupCmd:
    """Fetch the directory and make sure ``users`` virtual users have an account."""

    users: int


@dataclass(frozen=True)
class PrepareCmd:
    """Top up the pools so at least ``csrs`` CSRs and ``keys`` account keys are ready."""

    csrs: int
    keys: int


@dataclass(frozen=True)
class PhaseCmd:
    """Run ``users`` virtual users doing ``kind`` ("flow" or "account") from ``ramp_at``.

    Operations that complete inside ``[t0, t1]`` (wall clock, ``time.time()``) count; no
    new operation starts after ``t1``; users still busy at ``t1 + grace`` mark a stall.
    """

    kind: str
    users: int
    ramp_at: float
    t0: float
    t1: float
    grace: float


@dataclass(frozen=True)
class ProbeCmd:
    """Return the last certificate chain (PEM) a flow downloaded."""


@dataclass(frozen=True)
class StopCmd:
    pass


Command = SetupCmd | PrepareCmd | PhaseCmd | ProbeCmd | StopCmd


@dataclass
class PhaseResult:
    ops: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    requests: int = 0  # requests made by the operations that counted
    errors: dict[str, int] = field(default_factory=dict)
    stalled: bool = False
    note: str = ""
    pool_misses: int = 0  # CSRs or keys generated inside the phase (pool ran dry)


@dataclass(frozen=True)
class Ack:
    detail: str = ""


@dataclass(frozen=True)
class ProbeResult:
    pem: str | None


@dataclass(frozen=True)
class DriverFailure:
    error: str


Reply = PhaseResult | Ack | ProbeResult | DriverFailure


# -- the client ---------------------------------------------------------------------------


class FlowError(Exception):
    """An operation failed; ``kind`` is what the error counts go by."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class VirtualUser:
    key: AccountKey
    kid: str | None = None
    nonce: str | None = None
    requests: int = 0
    client: httpx.AsyncClient | None = None  # its own connection, made at first use


def _problem_kind(resp: httpx.Response) -> str:
    kind = ""
    if "problem+json" in resp.headers.get("content-type", ""):
        try:
            kind = str(resp.json().get("type", "")).rsplit(":", 1)[-1]
        except ValueError:
            kind = "unparsable-problem"
    return f"{resp.status_code} {kind}".strip()


class Driver:
    def __init__(self, spec: TargetSpec, index: int) -> None:
        self.spec = spec
        self.ssl = ssl.create_default_context(cadata=spec.ca_pem)
        self.client = self._new_client()
        self.directory: dict[str, Any] = {}
        self.users: list[VirtualUser] = []
        self.csrs: deque[tuple[str, bytes]] = deque()
        self.keys: deque[AccountKey] = deque()
        self.prefix = f"d{index}-{secrets.token_hex(4)}"
        self.seq = 0
        self.pool_misses = 0
        self.last_pem: str | None = None

    def _new_client(self, connections: int = 16) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            verify=self.ssl,
            http1=True,
            http2=False,
            trust_env=False,  # loopback only: no proxy from the environment
            limits=httpx.Limits(
                max_connections=connections,
                max_keepalive_connections=connections,
                keepalive_expiry=None,  # the server decides when an idle connection ends
            ),
            timeout=httpx.Timeout(self.spec.request_timeout_s),
        )

    def _user_client(self, user: VirtualUser) -> httpx.AsyncClient:
        if user.client is None:
            user.client = self._new_client(connections=1)
        return user.client

    async def release(self, user: VirtualUser) -> None:
        """Close the connection of a user that is done (one not in ``users``)."""
        if user.client is not None:
            await user.client.aclose()
            user.client = None

    async def _drop_user_clients(self) -> None:
        for user in self.users:
            if user.client is not None:
                await user.client.aclose()
                user.client = None

    async def close(self) -> None:
        await self._drop_user_clients()
        await self.client.aclose()

    # -- pools -------------------------------------------------------------------------

    def _new_name(self) -> str:
        self.seq += 1
        return f"{self.prefix}-{self.seq}.{NAME_SUFFIX}"

    def prepare(self, csrs: int, keys: int) -> None:
        while len(self.csrs) < csrs:
            name = self._new_name()
            self.csrs.append((name, make_csr(name)))
        while len(self.keys) < keys:
            self.keys.append(AccountKey())

    def _next_csr(self) -> tuple[str, bytes]:
        if self.csrs:
            return self.csrs.popleft()
        self.pool_misses += 1
        name = self._new_name()
        return name, make_csr(name)

    def _next_key(self) -> AccountKey:
        if self.keys:
            return self.keys.popleft()
        self.pool_misses += 1
        return AccountKey()

    # -- requests ----------------------------------------------------------------------

    async def _new_nonce(self, user: VirtualUser) -> str:
        try:
            resp = await self._user_client(user).head(self.directory["newNonce"])
        except httpx.TimeoutException:
            raise FlowError("timeout") from None
        except httpx.HTTPError as exc:
            raise FlowError(type(exc).__name__) from None
        user.requests += 1
        nonce: str | None = resp.headers.get("replay-nonce")
        if not nonce:
            raise FlowError(f"newNonce {resp.status_code} without nonce")
        return nonce

    async def post(
        self,
        user: VirtualUser,
        url: str,
        payload: Any,
        *,
        key: AccountKey | None = None,
        get: bool = False,
    ) -> httpx.Response:
        """A signed POST (``get=True``: POST-as-GET); ``key`` signs with an embedded JWK."""
        body_payload = None if get else dumps(payload)
        for attempt in range(2):
            nonce = user.nonce or await self._new_nonce(user)
            user.nonce = None
            if key is not None:
                body = key.sign(url, nonce, body_payload, None)
            else:
                body = user.key.sign(url, nonce, body_payload, user.kid)
            try:
                resp = await self._user_client(user).post(url, content=body, headers=JOSE_HEADERS)
            except httpx.TimeoutException:
                raise FlowError("timeout") from None
            except httpx.HTTPError as exc:
                raise FlowError(type(exc).__name__) from None
            user.requests += 1
            user.nonce = resp.headers.get("replay-nonce")
            if resp.status_code < 400:
                return resp
            kind = _problem_kind(resp)
            if kind.endswith("badNonce") and attempt == 0:
                continue
            raise FlowError(kind)
        raise AssertionError("unreachable")

    async def _poll(self, user: VirtualUser, url: str, want: str, *, wait_first: bool) -> Any:
        deadline = time.monotonic() + POLL_LIMIT_S
        if wait_first:
            await asyncio.sleep(self.spec.poll_interval_s)
        while True:
            obj = (await self.post(user, url, None, get=True)).json()
            status = obj.get("status")
            if status == want:
                return obj
            if status in ("invalid", "deactivated", "expired", "revoked"):
                raise FlowError(f"{want}-poll got {status}")
            if time.monotonic() > deadline:
                raise FlowError(f"{want}-poll timeout ({status})")
            await asyncio.sleep(self.spec.poll_interval_s)

    # -- operations --------------------------------------------------------------------

    async def flow(self, user: VirtualUser) -> None:
        name, csr = self._next_csr()
        resp = await self.post(
            user, self.directory["newOrder"], {"identifiers": [{"type": "dns", "value": name}]}
        )
        order_url = resp.headers["location"]
        order = resp.json()
        if order["status"] == "pending":
            for authz_url in order["authorizations"]:
                authz = (await self.post(user, authz_url, None, get=True)).json()
                if authz["status"] == "pending":
                    challenge = next(c for c in authz["challenges"] if c["type"] == "http-01")
                    await self.post(user, challenge["url"], {})
                    await self._poll(user, authz_url, "valid", wait_first=True)
            order = await self._poll(user, order_url, "ready", wait_first=False)
        if order["status"] != "ready":
            raise FlowError(f"order {order['status']} before finalize")
        order = (await self.post(user, order["finalize"], {"csr": b64u(csr)})).json()
        if order["status"] != "valid":
            order = await self._poll(user, order_url, "valid", wait_first=True)
        pem = (await self.post(user, order["certificate"], None, get=True)).text
        if "BEGIN CERTIFICATE" not in pem:
            raise FlowError("certificate download without PEM")
        self.last_pem = pem

    async def new_account(self, user: VirtualUser) -> str:
        """Register a fresh key (from the pool); the account URL."""
        key = self._next_key()
        resp = await self.post(
            user, self.directory["newAccount"], {"termsOfServiceAgreed": True}, key=key
        )
        if resp.status_code != 201:
            raise FlowError(f"newAccount {resp.status_code}")
        return str(resp.headers["location"])

    async def _guarded(self, op: Callable[[], Awaitable[Any]]) -> None:
        try:
            await op()
        except FlowError:
            raise
        except (KeyError, ValueError, TypeError, StopIteration) as exc:
            raise FlowError(f"malformed response ({type(exc).__name__})") from None

    # -- commands ----------------------------------------------------------------------

    async def setup(self, users: int) -> Ack:
        if not self.directory:
            resp = await self.client.get(self.spec.directory_url)
            resp.raise_for_status()
            self.directory = resp.json()
        while len(self.users) < users:
            self.users.append(VirtualUser(AccountKey()))
        sem = asyncio.Semaphore(SETUP_CONCURRENCY)

        async def register(user: VirtualUser) -> None:
            async with sem:
                resp = await self.post(
                    user,
                    self.directory["newAccount"],
                    {"termsOfServiceAgreed": True},
                    key=user.key,
                )
                user.kid = resp.headers["location"]

        await asyncio.gather(*(register(u) for u in self.users if u.kid is None))
        return Ack(f"{len(self.users)} accounts")

    async def phase(self, cmd: PhaseCmd) -> PhaseResult:
        result = PhaseResult()
        errors: Counter[str] = Counter()
        misses_before = self.pool_misses
        users = self.users[: cmd.users]
        if len(users) < cmd.users:
            raise RuntimeError(f"phase wants {cmd.users} users, setup made {len(self.users)}")

        async def run_user(user: VirtualUser, offset: float) -> None:
            await _sleep_until(cmd.ramp_at + offset)
            while time.time() < cmd.t1:
                start = time.time()
                user.requests = 0
                try:
                    if cmd.kind == "flow":
                        await self._guarded(lambda: self.flow(user))
                    else:
                        await self._guarded(lambda: self.new_account(user))
                except FlowError as exc:
                    errors[exc.kind] += 1
                    await asyncio.sleep(ERROR_BACKOFF_S)
                    continue
                end = time.time()
                if cmd.t0 <= end <= cmd.t1:
                    result.ops += 1
                    result.latencies_ms.append((end - start) * 1000.0)
                    result.requests += user.requests

        ramp = max(cmd.t0 - cmd.ramp_at, 0.0)
        tasks = [
            asyncio.create_task(run_user(u, ramp * i / max(len(users), 1) / 2))
            for i, u in enumerate(users)
        ]
        if tasks:
            timeout = max(cmd.t1 + cmd.grace - time.time(), 0.0)
            done, pending = await asyncio.wait(tasks, timeout=timeout)
            for task in done:
                exc = task.exception()
                if exc is not None:
                    errors[f"driver {type(exc).__name__}: {exc}"] += 1
            if pending:
                result.stalled = True
                result.note = (
                    f"{len(pending)} of {len(users)} users still inside an operation "
                    f"{cmd.grace:.0f} s after the window"
                )
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
                # Hung connections are dropped; the next phase starts with fresh ones.
                await self._drop_user_clients()
                await self.client.aclose()
                self.client = self._new_client()
                for user in self.users:
                    user.nonce = None
        result.errors = dict(errors)
        result.pool_misses = self.pool_misses - misses_before
        return result

    async def handle(self, cmd: Command) -> Reply:
        if isinstance(cmd, SetupCmd):
            return await self.setup(cmd.users)
        if isinstance(cmd, PrepareCmd):
            self.prepare(cmd.csrs, cmd.keys)
            return Ack()
        if isinstance(cmd, PhaseCmd):
            return await self.phase(cmd)
        if isinstance(cmd, ProbeCmd):
            return ProbeResult(self.last_pem)
        raise TypeError(f"unexpected command {cmd!r}")


async def _sleep_until(when: float) -> None:
    delay = when - time.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _serve(conn: Connection, spec: TargetSpec, index: int) -> None:
    driver = Driver(spec, index)
    try:
        while True:
            cmd: Command = await asyncio.to_thread(conn.recv)
            if isinstance(cmd, StopCmd):
                break
            try:
                reply = await driver.handle(cmd)
            except Exception as exc:
                reply = DriverFailure(f"{exc!r}\n{traceback.format_exc()}")
            conn.send(reply)
    finally:
        await driver.close()


def driver_main(conn: Connection, spec: TargetSpec, index: int) -> None:
    """Entry point of a driver process (multiprocessing, spawn)."""
    os.environ.pop("SSLKEYLOGFILE", None)
    try:
        import uvloop  # noqa: PLC0415 -- optional: a faster loop leaves more CPU to the server
    except ImportError:
        asyncio.run(_serve(conn, spec, index))
    else:
        uvloop.run(_serve(conn, spec, index))
