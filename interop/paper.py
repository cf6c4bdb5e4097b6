"""Clients listed on paper: what their documentation says, not tested here."""

from __future__ import annotations

from dataclasses import dataclass

PAPER_SCENARIOS: tuple[tuple[str, str], ...] = (
    ("http-01", "http-01"),
    ("dns-01", "dns-01 / wildcard"),
    ("tls-alpn-01", "tls-alpn-01"),
    ("keys", "ECDSA / RSA"),
    ("renew", "renew"),
    ("revoke", "revoke"),
    ("rollover", "key rollover"),
    ("deactivate", "deactivate account"),
    ("eab", "EAB"),
)


@dataclass(frozen=True)
class PaperClient:
    name: str
    setup: str  # how it is given the directory URL and the root
    support: dict[str, str]
    why_not_here: str


PAPER_CLIENTS: tuple[PaperClient, ...] = (
    PaperClient(
        name="acme.sh",
        setup="`--server https://<host>:8443/acme/profile/<id>/directory --ca-bundle root.pem`",
        support={
            "http-01": "yes",
            "dns-01": "yes",
            "tls-alpn-01": "yes (`--alpn`)",
            "keys": "yes (`--keylength ec-256` / `2048`)",
            "renew": "yes (cron, `--renew --force`)",
            "revoke": "yes (`--revoke`)",
            "rollover": "yes (`--update-account-key`)",
            "deactivate": "yes (`--deactivate-account`)",
            "eab": "yes (`--eab-kid`, `--eab-hmac-key`)",
        },
        why_not_here="a shell script distributed from its own site and repository; no "
        "package in Debian 12, PyPI or npm, so it cannot be installed here.",
    ),
    PaperClient(
        name="Traefik",
        setup="`certificatesResolvers.<name>.acme.caServer`, root through "
        "`LEGO_CA_CERTIFICATES` (see [walkthroughs/traefik.md](walkthroughs/traefik.md))",
        support={
            "http-01": "yes (`httpChallenge`)",
            "dns-01": "yes (`dnsChallenge`, lego's providers)",
            "tls-alpn-01": "yes (`tlsChallenge`)",
            "keys": "yes (`keyType`: EC256, EC384, RSA2048, RSA4096, RSA8192)",
            "renew": "yes (automatic, before expiry)",
            "revoke": "no",
            "rollover": "no",
            "deactivate": "no",
            "eab": "yes (`eab.kid`, `eab.hmacEncoded`)",
        },
        why_not_here="not packaged in Debian 12 (nor on PyPI or npm). It embeds lego, which "
        "the matrix runs.",
    ),
    PaperClient(
        name="cert-manager",
        setup="`Issuer`/`ClusterIssuer` `spec.acme.server` and `spec.acme.caBundle` (see "
        "[walkthroughs/cert-manager.md](walkthroughs/cert-manager.md))",
        support={
            "http-01": "yes (ingress or Gateway API solver)",
            "dns-01": "yes (built-in providers, webhooks)",
            "tls-alpn-01": "no",
            "keys": "yes (`privateKey.algorithm`: RSA, ECDSA, Ed25519)",
            "renew": "yes (automatic, `renewBefore`)",
            "revoke": "no",
            "rollover": "no",
            "deactivate": "no",
            "eab": "yes (`externalAccountBinding`)",
        },
        why_not_here="a Kubernetes controller: needs a cluster, which a test machine here "
        "does not run.",
    ),
    PaperClient(
        name="win-acme",
        setup="`--baseuri https://<host>:8443/acme/profile/<id>/directory`, root in the "
        "Windows certificate store",
        support={
            "http-01": "yes (self-hosting, file system)",
            "dns-01": "yes (scripts, provider plugins)",
            "tls-alpn-01": "yes (self-hosting)",
            "keys": "yes (EC or RSA CSR plugins)",
            "renew": "yes (scheduled task)",
            "revoke": "yes",
            "rollover": "not documented",
            "deactivate": "not documented",
            "eab": "yes (`--eab-key-identifier`, `--eab-key`)",
        },
        why_not_here="a Windows (.NET) program; this project's machines run Debian.",
    ),
    PaperClient(
        name="Posh-ACME",
        setup="`Set-PAServer -DirectoryUrl https://<host>:8443/acme/profile/<id>/directory`, "
        "root trusted by the OS (or `-SkipCertificateCheck`, not advised)",
        support={
            "http-01": "yes (`WebRoot`, `WebSelfHost` plugins)",
            "dns-01": "yes (many DNS plugins)",
            "tls-alpn-01": "not documented",
            "keys": "yes (`-CertKeyLength ec-256` / `2048`)",
            "renew": "yes (`Submit-Renewal`)",
            "revoke": "yes (`Revoke-PACertificate`)",
            "rollover": "yes (`Set-PAAccount -KeyRollover`)",
            "deactivate": "yes (`Set-PAAccount -Deactivate`)",
            "eab": "yes (`New-PAAccount -ExtAcctKID -ExtAcctHMACKey`)",
        },
        why_not_here="a PowerShell module from the PowerShell Gallery; neither PowerShell "
        "nor the gallery is reachable from the project's machines.",
    ),
)

# Other ACME clients the reachable registries offer, left out of the matrix, and why.
OTHER_REGISTRY_CLIENTS: tuple[tuple[str, str], ...] = (
    (
        "acmetool (Debian)",
        "built around an interactive `quickstart` and a state directory it owns; not run yet.",
    ),
    ("lacme (Debian)", "privilege-separated client with its own account daemon; not run yet."),
    (
        "python3-acme, python3-certbot (Debian)",
        "older releases of the PyPI `acme` and `certbot` that the matrix runs.",
    ),
    (
        "libraries (Debian `ruby-acme-client`, `python3-txacme`, `erlang-p1-acme`, "
        "`golang-github-mholt-acmez-dev`; npm `acme-client`)",
        "client libraries without a command-line client of their own; Caddy (acmez) and lego "
        "stand for the Go ones.",
    ),
)
