"""http-01 (RFC 8555 §8.3): fetch the key authorization over plain HTTP, follow redirects.

Redirect rules (RFC 8555 §8.3 allows following them; §10.2 asks for care):

* only 301, 302, 307 and 308 (the project's rule; a 303 counts as a non-200 answer);
* at most ``MAX_REDIRECTS``, only to ``http``/``https``, only to the ports 80 and 443 (or
  the configured lab ports; an implicit port is the configured one for the scheme);
* each target host is resolved once and checked by ``Network`` like the first;
* https targets are not chain-verified (Boulder and Pebble do the same), but their address
  is pinned like any other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final
from urllib.parse import urljoin, urlsplit

from certctl.domain.errors import AcmeError, ProblemType
from certctl.domain.identifiers import dns_name_problem
from certctl.va.httpclient import read_body, send_get
from certctl.va.model import ValidationRequest, VASettings
from certctl.va.net import Network, parse_ip, safe_snippet, tls_client_context

MAX_REDIRECTS: Final = 10
MAX_BODY: Final = 8192
MAX_LOCATION: Final = 2048
REDIRECT_STATUSES: Final = frozenset({301, 302, 307, 308})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# RFC 8555 §8.1: tokens are base64url; anything else would change the request path.
_TOKEN: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_PATH: Final = re.compile(r"/[\x21-\x7e]*")  # visible ASCII only: nothing can split the request


@dataclass(frozen=True)
class Target:
    """One URL to fetch; ``host`` is a DNS name or an IP literal without brackets."""

    scheme: str
    host: str
    port: int
    path: str

    @property
    def authority(self) -> str:
        """Host header value (RFC 9110 §7.2): the port only when it is not the default."""
        ip = parse_ip(self.host)
        host = f"[{self.host}]" if ip is not None and ip.version == 6 else self.host
        return host if _DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.authority}{self.path}"


async def validate_http01(
    req: ValidationRequest, net: Network, settings: VASettings, records: list[str]
) -> None:
    """Raise a typed ``AcmeError`` unless the target serves the key authorization."""
    if _TOKEN.fullmatch(req.token) is None:
        raise AcmeError(ProblemType.MALFORMED, "challenge token is not base64url")
    target = Target(
        "http", req.identifier.value, settings.http_port, f"/.well-known/acme-challenge/{req.token}"
    )
    for hop in range(MAX_REDIRECTS + 1):
        status, location, body = await _fetch(target, net, records)
        if status in REDIRECT_STATUSES:
            if hop == MAX_REDIRECTS:
                raise AcmeError(
                    ProblemType.CONNECTION, f"too many redirects (more than {MAX_REDIRECTS})"
                )
            target = redirect_target(target, location, settings)
            records.append(f"redirected to {target.url}")
            continue
        if status != 200:
            raise AcmeError(ProblemType.INCORRECT_RESPONSE, f"{target.url} answered HTTP {status}")
        _compare(body, req.key_authorization, target)
        return


async def _fetch(target: Target, net: Network, records: list[str]) -> tuple[int, str | None, bytes]:
    """GET ``target``: (status, Location, body); the body is only read for a 200."""
    tls = tls_client_context() if target.scheme == "https" else None
    sni = target.host if tls is not None and parse_ip(target.host) is None else None
    conn = await net.connect(target.host, target.port, records, tls=tls, server_hostname=sni)
    try:
        records.append(f"GET {target.url}")
        head = await send_get(conn, target.authority, target.path)
        records.append(f"HTTP {head.status} from {target.url}")
        body = await read_body(conn, head, MAX_BODY) if head.status == 200 else b""
        return head.status, head.header("location"), body
    finally:
        conn.close()


def _compare(body: bytes, key_authorization: str, target: Target) -> None:
    # RFC 8555 §8.3: "The server SHOULD ignore whitespace characters at the end of the body."
    if body.rstrip(b" \t\r\n") != key_authorization.encode("ascii"):
        raise AcmeError(
            ProblemType.INCORRECT_RESPONSE,
            f"the key authorization served at {target.url} does not match the challenge "
            f"(got {safe_snippet(body)})",
        )


def redirect_target(current: Target, location: str | None, settings: VASettings) -> Target:
    """Resolve and police a redirect ``Location`` against ``current``."""
    if not location:
        raise _bad_redirect("a redirect without a Location header")
    if len(location) > MAX_LOCATION or not location.isascii():
        raise _bad_redirect("an overlong or non-ASCII Location")
    try:
        parts = urlsplit(urljoin(current.url, location.strip()))
        explicit_port = parts.port
    except ValueError:
        raise _bad_redirect("an unparseable Location") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise _bad_redirect(f"the scheme {scheme[:16]!r} (only http and https are followed)")
    if parts.username is not None or parts.password is not None:
        raise _bad_redirect("a URL with user information")
    host = (parts.hostname or "").rstrip(".")
    if parse_ip(host) is None and dns_name_problem(host) is not None:
        raise _bad_redirect(f"the invalid host {safe_snippet(host.encode())}")
    allowed = {80, 443, settings.http_port, settings.tls_port}
    # Boulder's rule: an implicit port is the configured one for the scheme.
    default = settings.http_port if scheme == "http" else settings.tls_port
    port = default if explicit_port is None else explicit_port
    if port not in allowed:
        raise _bad_redirect(f"port {port} (only {', '.join(map(str, sorted(allowed)))})")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if _PATH.fullmatch(path) is None:
        raise _bad_redirect("a path with spaces or control characters")
    return Target(scheme, host, port, path)


def _bad_redirect(what: str) -> AcmeError:
    return AcmeError(ProblemType.CONNECTION, f"refusing to follow a redirect to {what}")
