"""http-01 against loopback responders: content, redirects, SSRF defences, time bounds."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from pathlib import Path

import pytest
from cryptography import x509

from certctl.domain.errors import ProblemType
from certctl.va import ValidationAuthority, ValidationResult, VASettings
from certctl.va.http01 import Target, redirect_target
from tests.unit.va.helpers import (
    KEY_AUTH,
    OTHER_KEY_AUTH,
    TOKEN,
    FakeResolver,
    HttpLog,
    TcpServer,
    async_test,
    http_handler,
    http_response,
    request,
    self_signed,
    serve_key_auth,
    server_context,
    silent,
)

NAME = "host.example"
CHALLENGE_PATH = f"/.well-known/acme-challenge/{TOKEN}"


def make_va(
    port: int, resolver: FakeResolver | None = None, **overrides: object
) -> ValidationAuthority:
    settings: dict[str, object] = {"http_port": port, "allow_loopback": True, "timeout": 2.0}
    settings.update(overrides)
    return ValidationAuthority(
        VASettings(**settings),  # type: ignore[arg-type]
        resolver=resolver or FakeResolver.with_hosts(**{NAME: "127.0.0.1"}),
    )


def assert_error(result: ValidationResult, kind: ProblemType, fragment: str = "") -> str:
    assert not result.valid
    assert result.error is not None
    assert result.error.type is kind, result.error
    assert fragment in result.error.detail
    return result.error.detail


async def validate_against(
    body: bytes | None = None, *, raw: bytes | None = None, key_auth: str = KEY_AUTH
) -> ValidationResult:
    response = raw if raw is not None else http_response(200, body or b"")
    async with TcpServer(http_handler(lambda path: response)) as server:
        return await make_va(server.port).validate(request("http-01", NAME, key_auth=key_auth))


@async_test
async def test_valid_and_request_shape() -> None:
    log = HttpLog()
    async with TcpServer(serve_key_auth(log=log)) as server:
        result = await make_va(server.port).validate(request("http-01", NAME))
    assert result.valid and result.error is None
    assert log.requests == [(CHALLENGE_PATH, f"{NAME}:{server.port}")]
    assert server.peers == ["127.0.0.1"]
    assert f"resolved {NAME}: 127.0.0.1" in result.detail_records
    assert result.validated_at is not None


@async_test
async def test_ip_identifier_uses_the_ip_and_host_header() -> None:
    log = HttpLog()
    resolver = FakeResolver()
    async with TcpServer(serve_key_auth(log=log)) as server:
        va = make_va(server.port, resolver)
        result = await va.validate(request("http-01", "127.0.0.1", ident_type="ip"))
    assert result.valid
    assert log.requests == [(CHALLENGE_PATH, f"127.0.0.1:{server.port}")]
    assert resolver.calls == []  # an IP literal is never looked up


@pytest.mark.parametrize("tail", [b"\n", b"\r\n", b"  \t\r\n\n"])
@async_test
async def test_trailing_whitespace_is_ignored(tail: bytes) -> None:
    assert (await validate_against(KEY_AUTH.encode() + tail)).valid


@async_test
async def test_leading_whitespace_is_not_ignored() -> None:
    assert_error(await validate_against(b" " + KEY_AUTH.encode()), ProblemType.INCORRECT_RESPONSE)


@async_test
async def test_another_accounts_key_authorization_is_refused() -> None:
    result = await validate_against(OTHER_KEY_AUTH.encode())
    detail = assert_error(result, ProblemType.INCORRECT_RESPONSE, "does not match")
    # At most 32 bytes of the target's answer are echoed.
    assert f'"{OTHER_KEY_AUTH[:32]}"...' in detail
    assert OTHER_KEY_AUTH[32:] not in detail


@async_test
async def test_echoed_content_is_escaped() -> None:
    detail = assert_error(
        await validate_against(b'<script>"\x00\x1b[31m'), ProblemType.INCORRECT_RESPONSE
    )
    assert '"<script>\\x22\\x00\\x1b[31m"' in detail


@async_test
async def test_non_200_is_refused() -> None:
    result = await validate_against(raw=http_response(404, b"not here"))
    assert_error(result, ProblemType.INCORRECT_RESPONSE, "HTTP 404")


@pytest.mark.parametrize(
    "raw",
    [
        http_response(200, b"x" * 9000),  # Content-Length over the cap
        b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 9000,  # read to EOF
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"1000\r\n"
        + b"x" * 4096
        + b"\r\n"
        + b"1000\r\n"
        + b"x" * 4096
        + b"\r\n"
        + b"10\r\n",
    ],
    ids=["content-length", "until-eof", "chunked"],
)
@async_test
async def test_oversized_body_is_refused(raw: bytes) -> None:
    assert_error(
        await validate_against(raw=raw), ProblemType.INCORRECT_RESPONSE, "larger than 8192"
    )


@async_test
async def test_chunked_body_is_decoded() -> None:
    half = len(KEY_AUTH) // 2
    a, b = KEY_AUTH[:half].encode(), KEY_AUTH[half:].encode()
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + f"{len(a):x};ext=1\r\n".encode()
        + a
        + b"\r\n"
        + f"{len(b):x}\r\n".encode()
        + b
        + b"\r\n0\r\n\r\n"
    )
    assert (await validate_against(raw=raw)).valid


@pytest.mark.parametrize(
    "raw",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",  # closed inside the head
        b"HTTP/1.1 200 OK\r\n" + b"X: y\r\n" * 101 + b"\r\n",  # too many headers
        b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nshort",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"1" * 9000,
    ],
)
@async_test
async def test_malformed_responses_are_connection_problems(raw: bytes) -> None:
    assert_error(await validate_against(raw=raw), ProblemType.CONNECTION, "invalid HTTP response")


@async_test
async def test_oversized_headers_are_refused() -> None:
    raw = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 10000 + b"\r\n\r\n"
    assert_error(await validate_against(raw=raw), ProblemType.CONNECTION, "headers too large")


@async_test
async def test_connection_refused() -> None:
    async with TcpServer(silent) as server:
        port = server.port
    result = await make_va(port).validate(request("http-01", NAME))
    assert_error(result, ProblemType.CONNECTION, "refused")


@async_test
async def test_dns_failure_is_a_dns_problem() -> None:
    result = await make_va(80, FakeResolver()).validate(request("http-01", NAME))
    assert_error(result, ProblemType.DNS, "NXDOMAIN")


# --- redirects --------------------------------------------------------------------------


def redirect_to(location: str, log: HttpLog | None = None) -> TcpServer:
    def respond(path: str) -> bytes:
        if path == CHALLENGE_PATH:
            return http_response(302, headers=[("Location", location)])
        return http_response(200, KEY_AUTH.encode())

    return TcpServer(http_handler(respond, log))


@pytest.mark.parametrize("status", [301, 302, 307, 308])
@async_test
async def test_redirect_on_the_same_host_is_followed(status: int) -> None:
    log = HttpLog()

    def respond(path: str) -> bytes:
        if path == CHALLENGE_PATH:
            return http_response(status, headers=[("Location", "/elsewhere?x=1")])
        return http_response(200, KEY_AUTH.encode())

    async with TcpServer(http_handler(respond, log)) as server:
        result = await make_va(server.port).validate(request("http-01", NAME))
    assert result.valid, result.error
    assert [p for p, _ in log.requests] == [CHALLENGE_PATH, "/elsewhere?x=1"]
    assert any("redirected to http://host.example" in r for r in result.detail_records)


@pytest.mark.parametrize("status", [300, 303, 304, 305])
@async_test
async def test_other_3xx_is_not_followed(status: int) -> None:
    respond = http_handler(lambda p: http_response(status, headers=[("Location", "/x")]))
    async with TcpServer(respond) as s:
        result = await make_va(s.port).validate(request("http-01", NAME))
    assert_error(result, ProblemType.INCORRECT_RESPONSE, f"HTTP {status}")


@pytest.mark.parametrize(
    ("location", "fragment"),
    [
        ("http://169.254.169.254/latest/meta-data/", "link-local"),
        ("http://metadata.example/latest/meta-data/", "link-local"),
        ("http://mapped.example/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "link-local"),
        ("http://host.example:8080/", "port 8080"),
        ("ftp://host.example/file", "scheme 'ftp'"),
        ("file:///etc/passwd", "scheme 'file'"),
        ("http://user:pw@host.example/", "user information"),
        ("http://localhost/", "invalid host"),
        ("http://[fe80::1%25eth0]/", "invalid host"),
    ],
)
@async_test
async def test_hostile_redirects_are_refused(location: str, fragment: str) -> None:
    resolver = FakeResolver.with_hosts(
        **{
            NAME: "127.0.0.1",
            "metadata.example": "169.254.169.254",
            "mapped.example": "::ffff:169.254.169.254",
        }
    )
    log = HttpLog()
    async with redirect_to(location, log) as server:
        result = await make_va(server.port, resolver).validate(request("http-01", NAME))
    assert_error(result, ProblemType.CONNECTION, fragment)
    assert len(log.requests) == 1  # nothing was fetched after the refused redirect
    assert server.peers == ["127.0.0.1"]


@async_test
async def test_redirect_to_loopback_outside_allowed_networks_is_refused() -> None:
    """allow_loopback with allowed_networks=127.0.0.1/32: 127.0.0.2 stays forbidden."""
    allowed = (ipaddress.ip_network("127.0.0.1/32"),)
    async with (
        TcpServer(serve_key_auth(), host="127.0.0.2") as other,
        redirect_to(f"http://127.0.0.2:{other.port}/") as server,
    ):
        # The lab's tls_port makes the redirect's port acceptable: only the address fails.
        va = make_va(server.port, allowed_networks=allowed, tls_port=other.port)
        result = await va.validate(request("http-01", NAME))
    assert_error(result, ProblemType.CONNECTION, "outside the allowed networks")
    assert other.peers == []


@async_test
async def test_name_resolving_to_loopback_is_refused_without_allow_loopback() -> None:
    async with TcpServer(serve_key_auth()) as server:
        result = await make_va(server.port, allow_loopback=False).validate(request("http-01", NAME))
    assert_error(result, ProblemType.CONNECTION, "127.0.0.1 for host.example: loopback address")
    assert server.peers == []


@async_test
async def test_ip_identifier_on_loopback_is_refused_without_allow_loopback() -> None:
    async with TcpServer(serve_key_auth()) as server:
        va = make_va(server.port, allow_loopback=False)
        result = await va.validate(request("http-01", "127.0.0.1", ident_type="ip"))
    assert_error(result, ProblemType.CONNECTION, "loopback address")
    assert server.peers == []


@async_test
async def test_a_name_with_one_forbidden_address_is_refused_as_a_whole() -> None:
    resolver = FakeResolver.with_hosts(**{NAME: ["127.0.0.1", "169.254.169.254"]})
    async with TcpServer(serve_key_auth()) as server:
        result = await make_va(server.port, resolver).validate(request("http-01", NAME))
    assert_error(result, ProblemType.CONNECTION, "169.254.169.254")
    assert server.peers == []


@async_test
async def test_redirect_loop_stops_after_ten_redirects() -> None:
    log = HttpLog()
    async with TcpServer(
        http_handler(lambda p: http_response(302, headers=[("Location", p)]), log)
    ) as s:
        result = await make_va(s.port).validate(request("http-01", NAME))
    assert_error(result, ProblemType.CONNECTION, "too many redirects")
    assert len(log.requests) == 11  # the first request and ten redirects


@async_test
async def test_dns_rebinding_cannot_move_the_connection() -> None:
    """One lookup per hop; the socket goes to the address that was checked."""
    allowed = (ipaddress.ip_network("127.0.0.1/32"),)
    # First answer: the allowed server. Any second answer: 127.0.0.2, not allowed.
    resolver = FakeResolver(addresses={NAME: [["127.0.0.1"], ["127.0.0.2"]]})
    good_log, evil_log = HttpLog(), HttpLog()
    async with (
        TcpServer(serve_key_auth(log=good_log)) as good,
        TcpServer(serve_key_auth(log=evil_log), host="127.0.0.2", port=good.port) as evil,
    ):
        va = make_va(good.port, resolver, allowed_networks=allowed)
        result = await va.validate(request("http-01", NAME))
    assert result.valid, result.error
    assert resolver.calls == [("addr", NAME)]
    assert good.peers == ["127.0.0.1"] and evil.peers == []
    assert f"connecting to 127.0.0.1:{good.port}" in result.detail_records


@async_test
async def test_dns_rebinding_on_redirect_is_checked_again() -> None:
    """A redirect back to the same name is a new hop: resolved once more, and refused."""
    allowed = (ipaddress.ip_network("127.0.0.1/32"),)
    resolver = FakeResolver(addresses={NAME: [["127.0.0.1"], ["127.0.0.2"]]})
    async with (
        TcpServer(serve_key_auth(), host="127.0.0.2") as evil,
        redirect_to(f"http://{NAME}:{evil.port}/next") as good,
    ):
        va = make_va(good.port, resolver, allowed_networks=allowed, tls_port=evil.port)
        result = await va.validate(request("http-01", NAME))
    assert_error(result, ProblemType.CONNECTION, "127.0.0.2 for host.example")
    assert resolver.calls == [("addr", NAME), ("addr", NAME)]
    assert evil.peers == []


@async_test
async def test_https_redirect_is_followed_without_chain_checks(tmp_path: Path) -> None:
    cert = self_signed(tmp_path, [x509.DNSName("other.example")])
    resolver = FakeResolver.with_hosts(**{NAME: "127.0.0.1", "secure.example": "127.0.0.1"})
    tls = server_context(cert)
    async with (
        TcpServer(serve_key_auth(), tls=tls) as https,
        redirect_to(f"https://secure.example:{https.port}/key") as server,
    ):
        va = make_va(server.port, resolver, tls_port=https.port)
        result = await va.validate(request("http-01", NAME))
    assert result.valid, result.error
    assert https.peers == ["127.0.0.1"]
    assert f"GET https://secure.example:{https.port}/key" in result.detail_records


# --- time bounds ------------------------------------------------------------------------


async def slow_drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 200 OK\r\n\r\n")  # body until EOF, one byte at a time
    while True:
        writer.write(b"x")
        await writer.drain()
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("handler", [silent, slow_drip], ids=["never-answers", "slow-drip"])
@async_test
async def test_stalling_targets_are_bounded_by_the_timeout(handler: object) -> None:
    async with TcpServer(handler) as server:  # type: ignore[arg-type]
        va = make_va(server.port, timeout=0.5)
        started = time.monotonic()
        result = await va.validate(request("http-01", NAME))
        elapsed = time.monotonic() - started
    assert_error(result, ProblemType.CONNECTION, "timed out after 0.5 s")
    assert elapsed < 1.5


# --- redirect parsing -------------------------------------------------------------------


SETTINGS = VASettings(http_port=5002, tls_port=5001)
CURRENT = Target("http", NAME, 5002, CHALLENGE_PATH)


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/x", Target("http", NAME, 5002, "/x")),
        ("x?y=1#frag", Target("http", NAME, 5002, "/.well-known/acme-challenge/x?y=1")),
        ("https://a.example/k", Target("https", "a.example", 5001, "/k")),
        ("http://a.example:80/k", Target("http", "a.example", 80, "/k")),
        ("HTTPS://A.EXAMPLE:443", Target("https", "a.example", 443, "/")),
        ("http://[2001:db8::1]/k", Target("http", "2001:db8::1", 5002, "/k")),
        ("//b.example/k", Target("http", "b.example", 5002, "/k")),
    ],
)
def test_redirect_target_resolution(location: str, expected: Target) -> None:
    assert redirect_target(CURRENT, location, SETTINGS) == expected


@pytest.mark.parametrize(
    "location",
    [
        None,
        "",
        "http://a.example:0/",
        "http://a.example:22/",
        "http://a.example:99999/",
        "gopher://a.example/",
        "http://a.example/\x00",
        "http://a.example/ a",
        "http://é.example/",
        "http://" + "a" * 3000 + ".example/",
    ],
)
def test_redirect_target_refusals(location: str | None) -> None:
    from certctl.domain.errors import AcmeError

    with pytest.raises(AcmeError) as info:
        redirect_target(CURRENT, location, SETTINGS)
    assert info.value.type is ProblemType.CONNECTION


def test_target_authority_and_url() -> None:
    assert Target("http", "2001:db8::1", 80, "/a").url == "http://[2001:db8::1]/a"
    assert Target("https", "a.example", 443, "/").authority == "a.example"
    assert Target("https", "a.example", 80, "/").authority == "a.example:80"


@async_test
async def test_non_chunked_transfer_encoding_reads_to_eof() -> None:
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n" + KEY_AUTH.encode()
    assert (await validate_against(raw=raw)).valid


@async_test
async def test_token_is_checked_where_it_becomes_a_path() -> None:
    from certctl.domain.errors import AcmeError
    from certctl.domain.model import Identifier
    from certctl.va import ValidationRequest
    from certctl.va.http01 import validate_http01
    from certctl.va.net import AddressPolicy, Network

    req = ValidationRequest("http-01", Identifier("dns", NAME), "../../etc", "x.y")
    net = Network(FakeResolver(), AddressPolicy(), connect_timeout=1)
    with pytest.raises(AcmeError) as info:
        await validate_http01(req, net, VASettings(), [])
    assert info.value.type is ProblemType.MALFORMED
