"""The group-commit counters see every commit of a server process, its first (the nonce
key, written while the app is built) included: they are attached before it."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx

from certctl.app import build_app
from certctl.bootstrap import initialize, open_runtime
from certctl.config import load_settings


def _counter(text: str, name: str) -> float:
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    assert found, text
    return float(found[1])


def test_the_first_commit_is_counted(tmp_path: Path) -> None:
    settings = load_settings({"CERTCTL_DATA_DIR": str(tmp_path)})
    initialize(settings).db.dispose()
    runtime = open_runtime(settings, migrate=False, group_commit=True)
    assert runtime.db.syncer is not None
    app = build_app(runtime)

    async def scrape() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://certctl") as client:
            return (await client.get("/metrics")).text

    try:
        commits, syncs, _ = runtime.db.syncer.stats()
        assert commits >= 1  # building the app committed (the nonce key)
        deadline = time.monotonic() + 5
        while True:  # reported by the syncing thread just after the sync
            text = asyncio.run(scrape())
            if _counter(text, "certctl_sqlite_commits_total") >= commits:
                break
            assert time.monotonic() < deadline, text
            time.sleep(0.02)
        assert _counter(text, "certctl_sqlite_wal_syncs_total") >= syncs >= 1
    finally:
        runtime.db.dispose()
