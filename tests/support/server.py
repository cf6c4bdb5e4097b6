"""Run a real ``certctl serve`` subprocess for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from tests.support.ports import free_port

STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
CLI_TIMEOUT_S = 60.0
PROBE_INTERVAL_S = 0.2
LOG_TAIL_LINES = 60

# Every CERTCTL_* variable is scrubbed from the inherited environment so a developer's
# shell settings never leak into a test instance; the test suite's own settings stay.
_CERTCTL_PREFIX = "CERTCTL_"
_TEST_PREFIX = "CERTCTL_TEST_"
DEFAULT_READY_PATH = "/acme/directory"


class ServerStartError(RuntimeError):
    """The served instance exited or never answered its directory in time."""


def certctl_executable() -> Path:
    """The ``certctl`` console script of the interpreter running the tests."""
    return Path(sys.executable).parent / "certctl"


def certctl_env(database_url: str | None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for a certctl process: inherited, minus CERTCTL_* (but CERTCTL_TEST_*),
    plus the DB URL and ``extra`` (e.g. ``CERTCTL_ACME_SERVER_*`` settings)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_CERTCTL_PREFIX) or k.startswith(_TEST_PREFIX)
    }
    if database_url is not None:
        env["CERTCTL_DATABASE_URL"] = database_url
    env.update(extra or {})
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost", "::1"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    return env


def run_certctl(
    args: list[str], database_url: str | None, timeout: float = CLI_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    """Run a certctl CLI command to completion, capturing its output."""
    return subprocess.run(
        [str(certctl_executable()), *args],
        env=certctl_env(database_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


class ServedCertctl:
    """A ``certctl serve`` process on a free loopback port with its own data dir.

    Use as a context manager: entering starts the server and waits until
    ``GET <ready_path>`` (default ``/acme/directory``) answers 200 over a TLS chain that
    verifies against the root printed by ``certctl ca root``, which is written to
    ``root_pem_path``. ``env`` adds variables to the server's environment (only to the
    server's: CLI helpers get the plain environment); a configuration that turns the
    directory off needs another ``ready_path``, such as ``/health``.
    """

    def __init__(
        self,
        workdir: Path,
        database_url: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        startup_timeout: float = STARTUP_TIMEOUT_S,
        env: Mapping[str, str] | None = None,
        ready_path: str = DEFAULT_READY_PATH,
    ) -> None:
        self.workdir = workdir
        self.env = dict(env or {})
        self.ready_path = ready_path
        self.database_url = database_url
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.startup_timeout = startup_timeout
        self.data_dir = workdir / "data"
        self.log_path = workdir / "server.log"
        self.root_pem_path = workdir / "root.pem"
        self._proc: subprocess.Popen[bytes] | None = None
        self._starts = 0

    @property
    def base_url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def directory_url(self) -> str:
        return f"{self.base_url}/acme/directory"

    @property
    def ready_url(self) -> str:
        return f"{self.base_url}{self.ready_path}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The served process (the parent of any workers; with one worker, the one that
        accepts connections)."""
        assert self._proc is not None, "not started"
        return self._proc.pid

    def kill(self) -> None:
        """SIGKILL the whole process group (a crash), then reap it as ``stop`` does."""
        assert self._proc is not None and self._proc.poll() is None, "not running"
        self._signal(self._proc, signal.SIGKILL)
        self._proc.wait(timeout=10)
        self.stop()

    def __enter__(self) -> ServedCertctl:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- lifecycle -----------------------------------------------------------------

    def start(self) -> None:
        """Start the server (first start creates the CA) and wait until it is ready."""
        if self.running:
            raise RuntimeError("server already running")
        exe = certctl_executable()
        if not exe.exists():
            raise ServerStartError(
                f"{exe} not found: install the project into the test interpreter's "
                "environment (make install)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._starts += 1
        cmd = [
            str(exe),
            "serve",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"{self.host}:{self.port}",
        ]
        with self.log_path.open("ab") as log:
            log.write(f"=== start #{self._starts}: {' '.join(cmd)}\n".encode())
            log.flush()
            self._proc = subprocess.Popen(
                cmd,
                env=certctl_env(self.database_url, self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready()
            self._fetch_root()
            self._verify_chain()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """SIGTERM the server, SIGKILL it if it has not exited after STOP_TIMEOUT_S."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._signal(proc, signal.SIGKILL)
                proc.wait(timeout=STOP_TIMEOUT_S)
        with self.log_path.open("ab") as log:
            log.write(f"=== exited with {proc.returncode}\n".encode())

    def restart(self) -> None:
        """Stop and start again on the same port, data dir and database."""
        self.stop()
        self.start()

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
        # The server runs in its own session: signal its whole process group (workers
        # included), all of which this harness started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    # -- readiness -----------------------------------------------------------------

    def _wait_ready(self) -> None:
        probe_ctx = ssl.create_default_context()
        probe_ctx.check_hostname = False
        probe_ctx.verify_mode = ssl.CERT_NONE  # probe only; the chain is verified after
        deadline = time.monotonic() + self.startup_timeout
        last_error = "no attempt"
        while time.monotonic() < deadline:
            proc = self._proc
            assert proc is not None
            if proc.poll() is not None:
                raise ServerStartError(
                    f"certctl serve exited with {proc.returncode} before answering "
                    f"{self.ready_url}\n{self.log_tail()}"
                )
            status, last_error = _get_status(self.ready_url, probe_ctx)
            if status == 200:
                return
            time.sleep(PROBE_INTERVAL_S)
        raise ServerStartError(
            f"{self.ready_url} not ready after {self.startup_timeout:.0f}s "
            f"(last: {last_error})\n{self.log_tail()}"
        )

    def _fetch_root(self) -> None:
        result = run_certctl(["ca", "root", "--data-dir", str(self.data_dir)], self.database_url)
        if result.returncode != 0 or "BEGIN CERTIFICATE" not in result.stdout:
            raise ServerStartError(
                f"certctl ca root failed ({result.returncode}):\n"
                f"stdout: {result.stdout[-2000:]}\nstderr: {result.stderr[-2000:]}"
            )
        self.root_pem_path.write_text(result.stdout)

    def _verify_chain(self) -> None:
        ctx = ssl.create_default_context(cafile=str(self.root_pem_path))
        status, detail = _get_status(self.ready_url, ctx)
        if status != 200:
            raise ServerStartError(
                f"{self.ready_url} does not verify against `certctl ca root` "
                f"(serving leaf + intermediate for {self.host} is expected): {detail}"
            )

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server log, framed for test output."""
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return f"(no server log at {self.log_path})"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last {lines} lines of {self.log_path} ---\n{tail}\n--- end of server log ---"


def _get_status(url: str, ctx: ssl.SSLContext) -> tuple[int | None, str]:
    """GET ``url``; return (status, detail) or (None, error) without raising."""
    # No proxy: the instance is on loopback, whatever HTTPS_PROXY the shell has.
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )
    try:
        with opener.open(url, timeout=5) as resp:
            status: int = resp.status
            resp.read()
            return status, f"HTTP {status}"
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"{type(exc).__name__}: {reason}"
