"""Command lines and environments for the real ACME clients the e2e tests drive."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

from tests.support.certs import KeyType
from tests.support.gating import require_executable, require_or_skip

CLIENT_TIMEOUT_S = 180.0


def client_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Inherited environment with loopback exempt from proxies, plus ``extra``."""
    env = dict(os.environ)
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), "127.0.0.1", "localhost", "::1"]))
    env["NO_PROXY"] = env["no_proxy"] = no_proxy
    env.update(extra)
    return env


def run_client(
    cmd: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    extra_diagnostics: Callable[[], str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a client to completion; fail the test with its output if it does not exit 0.

    ``extra_diagnostics`` is called after a failure (e.g. to read the client's own log).
    """
    result = subprocess.run(
        list(cmd),
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLIENT_TIMEOUT_S,
        check=False,
    )
    if result.returncode != 0:
        extra = extra_diagnostics() if extra_diagnostics is not None else ""
        pytest.fail(
            f"{Path(cmd[0]).name} exited {result.returncode}\n$ {' '.join(cmd)}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n"
            f"--- stderr ---\n{result.stderr[-4000:]}\n{extra}",
            pytrace=False,
        )
    return result


# -- certbot ---------------------------------------------------------------------------


def certbot_executable() -> str:
    """certbot from the test interpreter's environment (a dev dependency), else PATH."""
    beside = Path(sys.executable).parent / "certbot"
    if beside.exists():
        return str(beside)
    found = shutil.which("certbot")
    require_or_skip(
        found is not None, "certbot not installed (pip install -r requirements-dev.lock)"
    )
    assert found is not None
    return found


def certbot_certonly_command(
    *,
    certbot: str,
    directory_url: str,
    workdir: Path,
    names: Sequence[str],
    key_type: KeyType,
    http01_port: int,
) -> list[str]:
    """``certbot certonly --standalone`` with config, work and log dirs under ``workdir``.

    The standalone listener is never contacted in trust_authenticated mode (the
    authorizations are born valid) but certbot needs an authenticator selected.
    """
    cmd = [
        certbot,
        "certonly",
        "--non-interactive",
        "--agree-tos",
        "--register-unsafely-without-email",
        "--server",
        directory_url,
        "--config-dir",
        str(workdir / "config"),
        "--work-dir",
        str(workdir / "work"),
        "--logs-dir",
        str(workdir / "logs"),
        "--standalone",
        "--http-01-address",
        "127.0.0.1",
        "--http-01-port",
        str(http01_port),
        *key_type.certbot_args,
    ]
    for name in names:
        cmd += ["-d", name]
    return cmd


def certbot_env(root_pem: Path) -> dict[str, str]:
    return client_env({"REQUESTS_CA_BUNDLE": str(root_pem)})


def certbot_log_tail(workdir: Path, lines: int = 80) -> str:
    log = workdir / "logs" / "letsencrypt.log"
    if not log.exists():
        return ""
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    return f"--- certbot log tail ---\n{tail}"


# -- lego ------------------------------------------------------------------------------


def lego_executable() -> str:
    return require_executable("lego", "apt-get install lego")


def lego_run_command(
    *,
    lego: str,
    directory_url: str,
    lego_path: Path,
    names: Sequence[str],
    key_type: KeyType,
    http_port: int,
    email: str = "e2e@example.test",
) -> list[str]:
    """``lego ... run`` with the HTTP-01 solver on a loopback port.

    lego refuses ``run`` without a challenge type; the solver is never contacted in
    trust_authenticated mode since the authorizations are already valid.
    """
    cmd = [
        lego,
        "--server",
        directory_url,
        "--email",
        email,
        "--accept-tos",
        "--path",
        str(lego_path),
        "--key-type",
        key_type.lego_key_type,
        "--http",
        "--http.port",
        f"127.0.0.1:{http_port}",
    ]
    for name in names:
        cmd += ["-d", name]
    return [*cmd, "run"]


def lego_env(root_pem: Path) -> dict[str, str]:
    return client_env({"LEGO_CA_CERTIFICATES": str(root_pem)})
