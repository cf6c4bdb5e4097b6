"""Configuration templates shown in ``docs/walkthroughs/`` and run by the tests.

The Caddyfile of ``docs/walkthroughs/caddy.md`` is :data:`CADDYFILE` rendered with
:data:`CADDY_DOC_VALUES` (``tests/unit/test_walkthroughs.py`` checks the document's block
is exactly that), and ``tests/e2e/test_caddy.py`` runs the same template with loopback
ports and temporary paths, so the document and the tested configuration cannot drift.
"""

from __future__ import annotations

from string import Template

# Caddyfile tokens use braces, so the placeholders are $-style.
CADDYFILE = Template(
    """\
{
	# certctl's ACME directory for the profile, and its root (certctl ca root).
	acme_ca $directory_url
	acme_ca_root $root_pem
	email $email

	http_port $http_port
	https_port $https_port
	storage file_system $storage
	admin $admin
}

$site {
	respond "served with a certificate from certctl"
}
"""
)

CADDY_DOC_VALUES: dict[str, str] = {
    "directory_url": "https://ca.example:8443/acme/profile/web/directory",
    "root_pem": "/etc/caddy/certctl-root.pem",
    "email": "ops@example.com",
    "http_port": "80",
    "https_port": "443",
    "storage": "/var/lib/caddy/.local/share/caddy",
    "admin": "localhost:2019",
    "site": "www.example",
}


def caddyfile(**values: str) -> str:
    """The Caddyfile with every placeholder filled (a missing one raises KeyError)."""
    return CADDYFILE.substitute(values)
