"""The walkthroughs under docs/walkthroughs/ say what is tested and parse as they claim.

- caddy.md shows exactly the Caddyfile template that tests/e2e/test_caddy.py runs
  (``interop.walkthroughs``), rendered with the document's placeholder values;
- cert-manager.md's YAML and traefik.md's TOML and YAML parse, name certctl's
  per-profile directory URL shape, and point at profiles the page creates in the auth
  mode it says;
- relative links of the walkthroughs and of docs/interop.md lead to existing files.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from interop.walkthroughs import CADDY_DOC_VALUES, CADDYFILE, caddyfile

DOCS = Path(__file__).resolve().parents[2] / "docs"
WALKTHROUGHS = DOCS / "walkthroughs"
DIRECTORY_URL = re.compile(
    r"^https://[^/\s]+/acme/profile/(?P<id>[a-z0-9][a-z0-9_-]{0,62})/directory$"
)
PROFILE_CREATE = re.compile(
    r"certctl profile create (?P<id>[a-z0-9][a-z0-9_-]*)\s+--acme-auth-mode\s+(?P<mode>\w+)"
)
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n(?P<body>.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(path: Path, lang: str) -> list[str]:
    """The bodies of the fenced code blocks of ``path`` tagged ``lang``, in order."""
    return [m["body"] for m in FENCE.finditer(path.read_text()) if m["lang"] == lang]


def profiles_created(path: Path) -> dict[str, str]:
    """Profile id -> auth mode, from the ``certctl profile create`` lines of sh blocks."""
    text = "\n".join(blocks(path, "sh")).replace("\\\n", " ")
    return {m["id"]: m["mode"] for m in PROFILE_CREATE.finditer(text)}


def profile_of(url: str) -> str:
    match = DIRECTORY_URL.match(url)
    assert match, f"{url!r} is not https://<host>/acme/profile/<id>/directory"
    return match["id"]


# -- Caddy ---------------------------------------------------------------------------------


def test_caddy_doc_shows_the_tested_template() -> None:
    shown = blocks(WALKTHROUGHS / "caddy.md", "caddyfile")
    assert shown, "caddy.md has no caddyfile block"
    assert shown[0] == caddyfile(**CADDY_DOC_VALUES), (
        "the first caddyfile block of docs/walkthroughs/caddy.md must be "
        "interop.walkthroughs.CADDYFILE rendered with CADDY_DOC_VALUES"
    )


def test_caddy_template_placeholders_all_have_doc_values() -> None:
    placeholders = {m[1] or m[2] for m in CADDYFILE.pattern.finditer(CADDYFILE.template)}
    placeholders.discard(None)
    assert placeholders == set(CADDY_DOC_VALUES)


def test_caddy_doc_points_at_a_profile_it_creates() -> None:
    created = profiles_created(WALKTHROUGHS / "caddy.md")
    profile = profile_of(CADDY_DOC_VALUES["directory_url"])
    assert created.get(profile) == "trust_authenticated"
    for block in blocks(WALKTHROUGHS / "caddy.md", "caddyfile"):
        for url in re.findall(r"^\s*(?:acme_ca|dir) (\S+)$", block, re.MULTILINE):
            assert profile_of(url) in created


# -- cert-manager --------------------------------------------------------------------------


def cert_manager_documents() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for block in blocks(WALKTHROUGHS / "cert-manager.md", "yaml"):
        docs.extend(d for d in yaml.safe_load_all(block) if d is not None)
    return docs


def test_cert_manager_yaml_parses_into_resources() -> None:
    docs = cert_manager_documents()
    assert docs
    for doc in docs:
        assert doc["apiVersion"] == "cert-manager.io/v1", doc
        assert doc["kind"] in {"ClusterIssuer", "Issuer", "Certificate"}, doc


def test_cert_manager_issuers_cover_both_modes_with_a_solver() -> None:
    created = profiles_created(WALKTHROUGHS / "cert-manager.md")
    issuers = [d for d in cert_manager_documents() if d["kind"] == "ClusterIssuer"]
    modes = set()
    for issuer in issuers:
        acme = issuer["spec"]["acme"]
        profile = profile_of(acme["server"])
        assert profile in created, f"{issuer['metadata']['name']}: no profile {profile} created"
        modes.add(created[profile])
        assert acme["caBundle"], "caBundle (the base64 root) is what makes certctl trusted"
        assert acme["privateKeySecretRef"]["name"]
        # cert-manager refuses an ACME issuer without a solver, even when none is used.
        assert any("http01" in solver for solver in acme["solvers"])
    assert modes == {"trust_authenticated", "challenge"}


def test_cert_manager_certificate_uses_a_documented_issuer() -> None:
    docs = cert_manager_documents()
    issuers = {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterIssuer"}
    certificates = [d for d in docs if d["kind"] == "Certificate"]
    assert certificates
    for cert in certificates:
        assert cert["spec"]["issuerRef"]["kind"] == "ClusterIssuer"
        assert cert["spec"]["issuerRef"]["name"] in issuers
        assert cert["spec"]["dnsNames"]


# -- Traefik -------------------------------------------------------------------------------


def traefik_static() -> dict[str, Any]:
    (block,) = blocks(WALKTHROUGHS / "traefik.md", "toml")
    return tomllib.loads(block)


def test_traefik_resolver_names_a_created_profile_and_a_challenge() -> None:
    created = profiles_created(WALKTHROUGHS / "traefik.md")
    resolvers = traefik_static()["certificatesResolvers"]
    assert resolvers
    for resolver in resolvers.values():
        acme = resolver["acme"]
        assert created.get(profile_of(acme["caServer"])) == "trust_authenticated"
        # Traefik wants a challenge configured even when the profile asks for none.
        assert {"httpChallenge", "tlsChallenge", "dnsChallenge"} & set(acme)
        assert acme["storage"]


def test_traefik_router_uses_the_resolver() -> None:
    (block,) = blocks(WALKTHROUGHS / "traefik.md", "yaml")
    dynamic = yaml.safe_load(block)
    resolvers = set(traefik_static()["certificatesResolvers"])
    routers = dynamic["http"]["routers"]
    assert routers
    for router in routers.values():
        assert router["tls"]["certResolver"] in resolvers
        assert router["service"] in dynamic["http"]["services"]


def test_traefik_trusts_the_root_through_lego() -> None:
    assert any("LEGO_CA_CERTIFICATES=" in b for b in blocks(WALKTHROUGHS / "traefik.md", "sh"))


# -- links ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "page",
    [*sorted(WALKTHROUGHS.glob("*.md")), DOCS / "interop.md"],
    ids=lambda p: p.name,
)
def test_relative_links_resolve(page: Path) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
        if "://" in target:
            continue
        assert (page.parent / target).exists(), f"{page.name} links to missing {target}"


def test_certbot_and_lego_walkthrough_shows_the_tested_commands() -> None:
    """The commands on the page are the e2e tests' builders rendered with the page's
    values (directory, state directories, names, port, key type)."""
    import shlex

    from tests.support.certs import ECDSA_P256
    from tests.support.clients import certbot_certonly_command, lego_run_command

    directory = "https://ca.example.internal:8443/acme/directory"
    names = ["www.example.internal", "api.example.internal"]
    certbot = certbot_certonly_command(
        certbot="certbot",
        directory_url=directory,
        workdir=Path("certbot-state"),
        names=names,
        key_type=ECDSA_P256,
        http01_port=8080,
    )
    lego = lego_run_command(
        lego="lego",
        directory_url=directory,
        lego_path=Path("lego-state"),
        names=names,
        key_type=ECDSA_P256,
        http_port=8080,
        email="ops@example.internal",
    )
    page = (WALKTHROUGHS / "certbot-lego.md").read_text()
    blocks = [m["body"].strip() for m in FENCE.finditer(page) if m["lang"] == "sh"]
    assert "REQUESTS_CA_BUNDLE=root.pem " + shlex.join(certbot) in blocks
    assert "LEGO_CA_CERTIFICATES=root.pem " + shlex.join(lego) in blocks
