"""Served instances for integration modules, remembered so failures show their logs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import pytest

from tests.support.server import DEFAULT_READY_PATH, ServedCertctl

STARTED = pytest.StashKey[list[ServedCertctl]]()


@contextlib.contextmanager
def serve(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    database_url: str | None,
    env: Mapping[str, str] | None = None,
    ready_path: str = DEFAULT_READY_PATH,
) -> Iterator[ServedCertctl]:
    """Start ``certctl serve`` with ``env``; its log tail goes with the module's failures."""
    workdir = tmp_path_factory.mktemp("certctl")
    with ServedCertctl(workdir, database_url, env=env, ready_path=ready_path) as server:
        module = request.node.getparent(pytest.Module)
        started = module.stash.setdefault(STARTED, []) if module is not None else []
        started.append(server)
        try:
            yield server
        finally:
            started.remove(server)
