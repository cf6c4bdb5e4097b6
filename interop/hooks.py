"""The one challenge hook every hook-driven client of the matrix calls.

It is run as a small executable script (see :func:`write_hook_script`) and speaks each
client's convention, told apart by the first argument:

- lego's ``exec`` DNS provider: ``present|cleanup <fqdn> <value>``;
- certbot's manual hooks: ``present|cleanup`` with ``CERTBOT_DOMAIN``/``CERTBOT_VALIDATION``;
- uacme: ``begin|done|failed <type> <ident> <token> <key-authorization>``; ``begin``
  accepts only the types listed in ``INTEROP_ACCEPT`` (so a scenario picks its challenge);
- dehydrated: ``deploy_challenge|clean_challenge <domain> <token-file> <value>`` (the
  challenge type in ``INTEROP_CHALLENGE``), every other dehydrated hook is a no-op.

DNS records go to pebble-challtestsrv's management API (``INTEROP_DNS_MANAGEMENT``),
http-01 files under ``INTEROP_WEBROOT`` and tls-alpn-01 digests under
``INTEROP_ALPN_DIR``, both served by :mod:`interop.responder`.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from pathlib import Path

DNS_ENV = "INTEROP_DNS_MANAGEMENT"
WEBROOT_ENV = "INTEROP_WEBROOT"
ALPN_ENV = "INTEROP_ALPN_DIR"
ACCEPT_ENV = "INTEROP_ACCEPT"
CHALLENGE_ENV = "INTEROP_CHALLENGE"
ACME_CHALLENGE_PATH = (".well-known", "acme-challenge")


def write_hook_script(path: Path) -> Path:
    """An executable script running :func:`main` with this interpreter."""
    repo = Path(__file__).resolve().parent.parent
    path.write_text(
        f"#!{sys.executable}\n"
        "import sys\n"
        f"sys.path.insert(0, {str(repo)!r})\n"
        "from interop.hooks import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    path.chmod(0o755)
    return path


def challtestsrv(endpoint: str, body: dict[str, object]) -> None:
    """POST to pebble-challtestsrv's management API (loopback, no proxy)."""
    url = os.environ[DNS_ENV] + "/" + endpoint
    if not url.startswith("http://127."):
        raise SystemExit(f"refusing management URL {url}")
    request = urllib.request.Request(  # noqa: S310 (loopback http URL, checked above)
        url, data=json.dumps(body).encode(), method="POST"
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        if response.status != 200:
            raise SystemExit(f"challtestsrv answered {response.status}")


def txt_host(name: str) -> str:
    return "_acme-challenge." + name.removeprefix("*.").rstrip(".") + "."


def set_txt(name: str, value: str) -> None:
    challtestsrv("set-txt", {"host": txt_host(name), "value": value})


def clear_txt(name: str) -> None:
    challtestsrv("clear-txt", {"host": txt_host(name)})


def http01_file(token: str) -> Path:
    return Path(os.environ[WEBROOT_ENV], *ACME_CHALLENGE_PATH, token)


def alpn_digest_file(name: str) -> Path:
    return Path(os.environ[ALPN_ENV]) / f"{name}.digest"


def _uacme(method: str, args: list[str]) -> int:
    kind, ident, token, auth = args[:4]
    accepted = os.environ.get(ACCEPT_ENV, "http-01").split(",")
    if method == "begin":
        if kind not in accepted:
            return 1  # declined: uacme tries the authorization's next challenge
        if kind == "http-01":
            path = http01_file(token)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(auth)
        elif kind == "dns-01":
            set_txt(ident, auth)
        elif kind == "tls-alpn-01":
            alpn_digest_file(ident).write_text(auth)
        else:
            return 1
        return 0
    if kind == "http-01":
        http01_file(token).unlink(missing_ok=True)
    elif kind == "dns-01":
        clear_txt(ident)
    elif kind == "tls-alpn-01":
        alpn_digest_file(ident).unlink(missing_ok=True)
    return 0


def _dehydrated(method: str, args: list[str]) -> int:
    if os.environ.get(CHALLENGE_ENV) != "dns-01":
        return 0  # http-01 and tls-alpn-01: dehydrated writes the files itself
    # HOOK_CHAIN=no: one (domain, token file, value) triplet per call.
    domain, value = args[0], args[2]
    if method == "deploy_challenge":
        set_txt(domain, value)
    else:
        clear_txt(domain)
    return 0


def main(argv: list[str]) -> int:
    if not argv:
        return 2
    method, args = argv[0], argv[1:]
    if method in ("present", "cleanup"):
        if len(args) >= 2:  # lego exec: <fqdn> <value>
            name, value = args[0].removeprefix("_acme-challenge."), args[1]
        else:  # certbot manual hooks
            name = os.environ["CERTBOT_DOMAIN"]
            value = os.environ.get("CERTBOT_VALIDATION", "")
        if method == "present":
            set_txt(name, value)
        else:
            clear_txt(name)
        return 0
    if method in ("begin", "done", "failed") and len(args) >= 4:
        return _uacme(method, args)
    if method in ("deploy_challenge", "clean_challenge") and len(args) >= 3:
        return _dehydrated(method, args)
    return 0  # every other hook of every client: nothing to do
