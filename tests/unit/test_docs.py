"""The operator docs agree with the code: variables, metrics, audit events, endpoints."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from certctl.cli.main import build_parser
from certctl.config import ENV_VARS, ConfigError, Settings, load_settings
from certctl.observability.metrics import ACME_OPS, Metrics
from certctl.pki.routes import ROUTES as PKI_ROUTES
from certctl.wfe.routes import ROUTES

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "acme-server.md"
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SUPPORT = ROOT / "tests" / "support"

ENV_NAME = re.compile(r"CERTCTL_[A-Z0-9_]+")
METRIC_NAME = re.compile(r"certctl_[a-z0-9_]*(?:<endpoint>[a-z0-9_]*)?")
ACTION = re.compile(r'action="([a-z_]+)"')
MARKER = "zz-docs-marker"


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def section(doc: str, title: str) -> str:
    """The body of one ``## title`` section."""
    start = doc.index(f"\n## {title}\n")
    end = doc.find("\n## ", start + 1)
    return doc[start : end if end != -1 else len(doc)]


def table_keys(body: str) -> list[str]:
    """The first-column code spans of the markdown table rows in ``body``."""
    return re.findall(r"^\| `([^`]+)` \|", body, flags=re.MULTILINE)


def test_reference_exists_and_readme_links_it() -> None:
    assert REFERENCE.is_file()
    assert "docs/acme-server.md" in text(ROOT / "README.md")


# --- environment variables -----------------------------------------------------------


def _test_suite_variables() -> set[str]:
    """CERTCTL_TEST_* variables: read by the test support code, not by the server."""
    names: set[str] = set()
    for path in SUPPORT.glob("*.py"):
        names |= {n for n in ENV_NAME.findall(text(path)) if n.startswith("CERTCTL_TEST_")}
    return names


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_variable_mentioned_exists(path: Path) -> None:
    known = set(ENV_VARS) | _test_suite_variables()
    for name in set(ENV_NAME.findall(text(path))):
        if name.endswith("_"):  # a prefix such as CERTCTL_ACME_SERVER_*
            assert any(v.startswith(name) for v in ENV_VARS), name
        else:
            assert name in known, f"{path.name} mentions {name}, which nothing reads"


def test_test_suite_variables_are_really_read_by_the_support_code() -> None:
    assert {"CERTCTL_TEST_POSTGRES_URL", "CERTCTL_TEST_REQUIRE_ALL"} <= _test_suite_variables()


def test_every_variable_is_in_a_reference_table() -> None:
    documented = table_keys(section(text(REFERENCE), "Configuration"))
    assert sorted(documented) == sorted(ENV_VARS)
    assert len(documented) == len(set(documented))


class RecordingEnv(Mapping[str, str]):
    """An environment that remembers which names were looked up (``get`` and ``in`` go
    through ``__getitem__`` in ``Mapping``)."""

    def __init__(self, data: dict[str, str]) -> None:
        self._data = data
        self.asked: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.asked.add(key)
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


def test_load_settings_reads_exactly_env_vars() -> None:
    env = RecordingEnv({})
    load_settings(env)
    assert env.asked == set(ENV_VARS)


@pytest.mark.parametrize("name", ENV_VARS)
def test_each_variable_changes_the_settings_or_is_refused(name: str) -> None:
    try:
        settings = load_settings({name: MARKER})
    except ConfigError as exc:
        assert str(exc).startswith(f"{name}:")
        return
    assert settings != Settings(), f"{name}={MARKER} changed nothing"


# --- metrics -------------------------------------------------------------------------


def _exposed() -> set[str]:
    metrics = Metrics()
    metrics.group_commit()  # exposed on SQLite
    names: set[str] = set()
    for line in generate_latest(metrics.registry).decode().splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            names.add(line.split()[2])
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def _documented_metrics() -> set[str]:
    names: set[str] = set()
    for token in METRIC_NAME.findall(section(text(REFERENCE), "Metrics")):
        if "<endpoint>" in token:
            names |= {token.replace("<endpoint>", op) for op in ACME_OPS}
        else:
            names.add(token)
    return names


def test_every_documented_metric_exists() -> None:
    documented, exposed = _documented_metrics(), _exposed()
    assert documented, "no metric names found in the Metrics section"
    assert documented <= exposed, sorted(documented - exposed)


def test_every_metric_is_documented() -> None:
    families = {n for n in _exposed() if not n.endswith("_created")}
    missing = sorted(families - _documented_metrics())
    assert not missing, f"missing from docs/acme-server.md (Metrics): {missing}"


def test_no_metric_names_outside_the_metrics_section_are_stale() -> None:
    exposed = _exposed()
    for path in DOCS:
        for token in METRIC_NAME.findall(text(path)):
            if "<endpoint>" not in token:
                assert token in exposed, f"{path.name}: {token}"


# --- audit events and endpoints ------------------------------------------------------


def _actions_in_code() -> set[str]:
    ra = ROOT / "src" / "certctl" / "ra"
    return {a for path in ra.rglob("*.py") for a in ACTION.findall(text(path))}


def test_audit_events_match_the_code() -> None:
    documented, written = (
        set(table_keys(section(text(REFERENCE), "Audit events"))),
        _actions_in_code(),
    )
    assert written, "no audit actions found in certctl.ra"
    assert not documented - written, f"documented but never written: {sorted(documented - written)}"
    assert not written - documented, (
        f"written by certctl.ra but missing from docs/acme-server.md (Audit events): "
        f"{sorted(written - documented)}"
    )


def test_every_route_is_in_the_endpoint_table() -> None:
    body = section(text(REFERENCE), "Endpoints")
    for suffix, _, methods in ROUTES:
        path = re.sub(r"\{[a-z_]+\}", "<id>", suffix)
        rows = [line for line in body.splitlines() if f"| `{path}` |" in line]
        assert len(rows) == 1, path
        for method in methods:
            assert method in rows[0].split("|")[1], (path, method)
    assert "/acme/profile/<profile-id>/" in body


def test_every_pki_route_is_in_the_endpoint_table() -> None:
    body = section(text(REFERENCE), "Endpoints")
    for path, _, methods in PKI_ROUTES:
        shown = re.sub(r"\{([a-z_]+)(?::path)?\}", lambda m: f"<{m[1].replace('_', '-')}>", path)
        rows = [line for line in body.splitlines() if f"| `{shown}` |" in line]
        assert len(rows) == 1, shown
        for method in methods:
            assert method in rows[0].split("|")[1], (shown, method)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_docs_name_no_local_paths(path: Path) -> None:
    body = text(path)
    # Spelled from parts, so this file does not itself name a machine path.
    for top in ("work", "home", "tmp", "root"):
        needle = "/" + top + "/"
        assert needle not in body, needle


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def test_every_cli_command_is_documented() -> None:
    body = text(REFERENCE)
    commands = _subcommands(build_parser())
    assert {"serve", "init", "ca", "profile", "cert"} <= set(commands)
    for name, parser in commands.items():
        actions = _subcommands(parser)
        for full in [f"certctl {name} {a}" for a in actions] or [f"certctl {name}"]:
            assert full in body, f"{full} is not in docs/acme-server.md"
