"""Raw ACME over real sockets: hand-built flattened JWS, signed with ``cryptography``.

certbot's ``acme`` library is the well-behaved client; this module builds the requests it
would never send. Every helper produces a request that is valid in every respect except
the one a test chooses to break, so a refusal can only come from the rule under test.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from tests.support.server import ServedCertctl

JOSE = "application/jose+json"
PROBLEM = "application/problem+json"
URN = "urn:ietf:params:acme:error:"
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]+$")
HTTP_TIMEOUT_S = 20.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int) -> str:
    return b64(value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big"))


SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Key:
    """A private key with its JWS algorithm and public JWK."""

    private: SigningKey

    @classmethod
    def ec256(cls) -> Key:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    @classmethod
    def rsa(cls, bits: int = 2048, exponent: int = 65537) -> Key:
        return cls(rsa.generate_private_key(public_exponent=exponent, key_size=bits))

    @property
    def alg(self) -> str:
        return "ES256" if isinstance(self.private, ec.EllipticCurvePrivateKey) else "RS256"

    @property
    def jwk(self) -> dict[str, str]:
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            point = self.private.public_key().public_numbers()
            return {
                "kty": "EC",
                "crv": "P-256",
                "x": b64(point.x.to_bytes(32, "big")),
                "y": b64(point.y.to_bytes(32, "big")),
            }
        numbers = self.private.public_key().public_numbers()
        return {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.private, ec.EllipticCurvePrivateKey):
            r, s = decode_dss_signature(self.private.sign(data, ec.ECDSA(hashes.SHA256())))
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self.private.sign(data, padding.PKCS1v15(), hashes.SHA256())


def payload_bytes(payload: Mapping[str, Any] | bytes | None) -> bytes:
    """None is POST-as-GET (empty payload, RFC 8555 §6.3)."""
    if payload is None:
        return b""
    if isinstance(payload, bytes):
        return payload
    return json.dumps(payload).encode()


def flattened(key: Key, header: Mapping[str, Any], payload: bytes) -> dict[str, str]:
    """A flattened JWS (RFC 7515 §7.2.2) over exactly ``header`` and ``payload``."""
    protected = b64(json.dumps(dict(header)).encode())
    encoded_payload = b64(payload)
    signature = key.sign(f"{protected}.{encoded_payload}".encode("ascii"))
    return {"protected": protected, "payload": encoded_payload, "signature": b64(signature)}


def http_client(served: ServedCertctl) -> httpx.Client:
    """HTTPS to ``served`` trusting only its root, never through an environment proxy."""
    ctx = ssl.create_default_context(cafile=str(served.root_pem_path))
    return httpx.Client(verify=ctx, trust_env=False, timeout=HTTP_TIMEOUT_S)


@dataclass(frozen=True)
class Account:
    key: Key
    url: str  # the kid

    @property
    def id(self) -> str:
        return self.url.rsplit("/", 1)[1]


class Wire:
    """An HTTP client for one served instance and one ACME directory (one profile)."""

    def __init__(self, served: ServedCertctl, directory_path: str = "/acme/directory") -> None:
        self.served = served
        self.directory_url = served.base_url + directory_path
        self.http = http_client(served)
        response = self.http.get(self.directory_url)
        assert response.status_code == 200, response.text
        self.directory: dict[str, Any] = response.json()

    def new_http(self) -> httpx.Client:
        """Another connection pool to the same server (for truly parallel requests)."""
        return http_client(self.served)

    def close(self) -> None:
        self.http.close()

    def __getitem__(self, name: str) -> str:
        url: str = self.directory[name]
        return url

    # -- plumbing ------------------------------------------------------------------------

    def nonce(self) -> str:
        response = self.http.head(self["newNonce"])
        assert response.status_code == 200, response.status_code
        return response.headers["Replay-Nonce"]

    def post(
        self,
        url: str,
        body: bytes | Mapping[str, Any],
        *,
        content_type: str = JOSE,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        data = body if isinstance(body, bytes) else json.dumps(dict(body)).encode()
        return self.http.post(
            url, content=data, headers={"Content-Type": content_type, **(headers or {})}
        )

    def header(
        self,
        key: Key,
        url: str,
        *,
        kid: str | None = None,
        nonce: str | None = None,
    ) -> dict[str, Any]:
        """A correct protected header: jwk when ``kid`` is None (RFC 8555 §6.2)."""
        header: dict[str, Any] = {"alg": key.alg, "nonce": nonce or self.nonce(), "url": url}
        if kid is None:
            header["jwk"] = key.jwk
        else:
            header["kid"] = kid
        return header

    def signed(
        self,
        key: Key,
        url: str,
        payload: Mapping[str, Any] | bytes | None,
        *,
        kid: str | None = None,
        nonce: str | None = None,
        post_to: str | None = None,
    ) -> httpx.Response:
        """POST a correctly signed JWS for ``url`` (to ``post_to`` when given)."""
        header = self.header(key, url, kid=kid, nonce=nonce)
        return self.post(post_to or url, flattened(key, header, payload_bytes(payload)))

    # -- ACME operations -----------------------------------------------------------------

    def new_account(self, key: Key | None = None, **payload: Any) -> Account:
        key = key or Key.ec256()
        body = {"termsOfServiceAgreed": True} | payload
        response = self.signed(key, self["newAccount"], body)
        assert response.status_code == 201, response.text
        return Account(key, response.headers["Location"])

    def as_account(
        self, account: Account, url: str, payload: Mapping[str, Any] | bytes | None = None
    ) -> httpx.Response:
        """A kid request of ``account``; POST-as-GET when ``payload`` is None."""
        return self.signed(account.key, url, payload, kid=account.url)

    def new_order(self, account: Account, *names: str, **extra: Any) -> httpx.Response:
        identifiers = [{"type": "dns", "value": n} for n in names]
        return self.as_account(account, self["newOrder"], {"identifiers": identifiers} | extra)

    def ready_order(self, account: Account, *names: str) -> tuple[str, dict[str, Any]]:
        """(order URL, order) for a new order; trust_authenticated makes it ready at once."""
        response = self.new_order(account, *names)
        assert response.status_code == 201, response.text
        order: dict[str, Any] = response.json()
        assert order["status"] == "ready", order
        return response.headers["Location"], order

    def finalize(
        self, account: Account, order: Mapping[str, Any], csr_der: bytes
    ) -> httpx.Response:
        return self.as_account(account, order["finalize"], {"csr": b64(csr_der)})

    def issue(self, account: Account, *names: str) -> tuple[str, dict[str, Any], Key]:
        """A whole issuance: (order URL, the valid order, the certificate key)."""
        order_url, order = self.ready_order(account, *names)
        cert_key = Key.ec256()
        response = self.finalize(account, order, csr_der(cert_key, names))
        assert response.status_code == 200, response.text
        valid: dict[str, Any] = response.json()
        assert valid["status"] == "valid", valid
        return order_url, valid, cert_key


def race(wire: Wire, url: str, bodies: Sequence[Mapping[str, str]]) -> list[httpx.Response]:
    """POST each of ``bodies`` to ``url`` from a thread of its own at once, each on a client
    connected beforehand, so the requests really are in flight together. The answers come
    in the order of ``bodies``."""
    barrier = threading.Barrier(len(bodies))
    results: list[httpx.Response | BaseException | None] = [None] * len(bodies)
    https = [wire.new_http() for _ in bodies]

    def use(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[i] = https[i].post(url, json=dict(bodies[i]), headers={"Content-Type": JOSE})
        except BaseException as exc:  # reported below, in the test's thread
            results[i] = exc

    try:
        for http in https:
            assert http.head(wire["newNonce"]).status_code == 200
        threads = [threading.Thread(target=use, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    finally:
        for http in https:
            http.close()
    responses = []
    for result in results:
        assert isinstance(result, httpx.Response), result
        responses.append(result)
    return responses


def csr_der(key: Key, names: tuple[str, ...] | list[str], *, common_name: bool = False) -> bytes:
    """A DER PKCS#10 request for ``names`` (SAN dNSNames), signed by ``key``."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])] if common_name else [])
    )
    builder = builder.add_extension(
        x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
    )
    csr = builder.sign(key.private, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.DER)


def assert_acme_headers(response: httpx.Response, directory_url: str) -> str:
    """RFC 8555 §6.5, §7.1: a Replay-Nonce and ``Link: <directory>;rel="index"``.

    Returns the nonce.
    """
    nonce: str | None = response.headers.get("Replay-Nonce")
    assert nonce, f"no Replay-Nonce on {response.status_code} {response.url}"
    assert NONCE_RE.fullmatch(nonce), nonce
    links = response.headers.get_list("Link", split_commas=True)
    assert f'<{directory_url}>;rel="index"' in [link.strip() for link in links], links
    return nonce


def assert_problem(
    response: httpx.Response, status: int, problem: str, directory_url: str
) -> dict[str, Any]:
    """The response is ``problem`` (a URN suffix) with ``status``, and still an ACME
    response: problem+json, a fresh Replay-Nonce and the index link. Returns the doc."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].split(";")[0] == PROBLEM, response.headers
    doc: dict[str, Any] = response.json()
    assert doc["type"] == URN + problem, doc
    assert doc.get("status", status) == status, doc
    assert_acme_headers(response, directory_url)
    return doc


def link_targets(response: httpx.Response | requests.Response, rel: str) -> list[str]:
    """Targets of the response's ``Link`` header fields with ``rel`` (RFC 8288)."""
    if isinstance(response, httpx.Response):
        value = ", ".join(response.headers.get_list("Link"))
    else:
        value = response.headers.get("Link", "")
    return [url for url, r in re.findall(r'<([^>]*)>\s*;\s*rel="([^"]*)"', value) if r == rel]


@dataclass(frozen=True)
class RawResponse:
    status: int
    headers: dict[str, list[str]]  # lower-case names
    body: bytes

    def header(self, name: str) -> str:
        values = self.headers.get(name.lower(), [])
        assert len(values) == 1, (name, values)
        return values[0]


def raw_exchange(
    served: ServedCertctl,
    head: bytes,
    chunks: list[bytes],
    timeout: float = 10.0,
    *,
    pause: float = 0.0,
) -> RawResponse:
    """Send ``head`` and ``chunks`` over one TLS connection, then read one response.

    The caller decides how much of a declared body is ever sent, which is how a test
    shows that the server answered without waiting for the rest; ``pause`` seconds
    between chunks make each arrive in a read of its own.
    """
    ctx = ssl.create_default_context(cafile=str(served.root_pem_path))
    with (
        socket.create_connection((served.host, served.port), timeout=timeout) as sock,
        ctx.wrap_socket(sock, server_hostname=served.host) as tls,
    ):
        tls.sendall(head)
        for chunk in chunks:
            if pause:
                time.sleep(pause)
            tls.sendall(chunk)
        data = b""
        while b"\r\n\r\n" not in data:
            received = tls.recv(65536)
            assert received, f"connection closed before a response: {data!r}"
            data += received
        raw_head, _, body = data.partition(b"\r\n\r\n")
        status_line, *lines = raw_head.decode("latin-1").split("\r\n")
        headers: dict[str, list[str]] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        length = int(headers.get("content-length", ["0"])[0])
        while len(body) < length:
            received = tls.recv(65536)
            assert received, "connection closed inside the response body"
            body += received
    return RawResponse(int(status_line.split()[1]), headers, body[:length])
