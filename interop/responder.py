"""Challenge responders for the clients that leave serving the proof to the operator.

uacme, dehydrated, acme-tiny and the ``acme`` library put http-01 files in a webroot,
and uacme and dehydrated hand over tls-alpn-01 proofs (a digest, or a ready certificate)
instead of answering on port 443 themselves. :class:`Responder` stands in for the web
server an operator would have there: a plain HTTP server on the validation HTTP port
serving the webroot, and a TLS server on the validation TLS port answering
``acme-tls/1`` handshakes with the certificate for the requested name:

- ``<alpn dir>/<name>.crt.pem`` and ``.key.pem`` as dehydrated writes them, else
- a self-signed certificate made from ``<alpn dir>/<name>.digest`` (the base64url
  SHA-256 of the key authorization, as uacme's hook receives it) with the critical
  acmeIdentifier extension of RFC 8737.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import functools
import http.server
import socket
import ssl
import threading
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID, ObjectIdentifier

ACME_TLS_1 = "acme-tls/1"
ACME_IDENTIFIER_OID = ObjectIdentifier("1.3.6.1.5.5.7.1.31")
HOST = "127.0.0.1"


def alpn_certificate(name: str, digest_b64url: str, directory: Path) -> tuple[Path, Path]:
    """Write a tls-alpn-01 certificate and key for ``name``; return their paths."""
    digest = base64.urlsafe_b64decode(digest_b64url + "=" * (-len(digest_b64url) % 4))
    if len(digest) != 32:
        raise ValueError(f"tls-alpn-01 digest for {name} is {len(digest)} bytes, not 32")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        # OCTET STRING (0x04) of 32 bytes (0x20) holding the digest.
        .add_extension(
            x509.UnrecognizedExtension(ACME_IDENTIFIER_OID, b"\x04\x20" + digest),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / f"{name}.generated.crt.pem"
    key_path = directory / f"{name}.generated.key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


class Responder:
    """HTTP (webroot) and TLS-ALPN responders on the lab's validation ports."""

    def __init__(self, webroot: Path, alpn_dir: Path, http_port: int, tls_port: int) -> None:
        self.webroot = webroot
        self.alpn_dir = alpn_dir
        self.http_port = http_port
        self.tls_port = tls_port
        self._http: http.server.ThreadingHTTPServer | None = None
        self._tls: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()

    def __enter__(self) -> Responder:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.webroot.mkdir(parents=True, exist_ok=True)
        self.alpn_dir.mkdir(parents=True, exist_ok=True)
        self._stopping.clear()
        handler = functools.partial(_QuietHandler, directory=str(self.webroot))
        self._http = http.server.ThreadingHTTPServer((HOST, self.http_port), handler)
        self._http.daemon_threads = True
        tls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tls.bind((HOST, self.tls_port))
        tls.listen(16)
        tls.settimeout(0.2)
        self._tls = tls
        self._threads = [
            threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.1}),
            threading.Thread(target=self._serve_tls, args=(tls,)),
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = []
        if self._tls is not None:
            self._tls.close()
            self._tls = None

    # -- tls-alpn-01 --------------------------------------------------------------------

    def _context_for(self, name: str) -> ssl.SSLContext | None:
        ready = (self.alpn_dir / f"{name}.crt.pem", self.alpn_dir / f"{name}.key.pem")
        digest = self.alpn_dir / f"{name}.digest"
        if ready[0].is_file() and ready[1].is_file():
            cert, key = ready
        elif digest.is_file():
            cert, key = alpn_certificate(name, digest.read_text().strip(), self.alpn_dir)
        else:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.set_alpn_protocols([ACME_TLS_1])
        ctx.load_cert_chain(cert, key)
        return ctx

    def _sni(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: object) -> int | None:
        ctx = self._context_for(name or "")
        if ctx is None:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        sock.context = ctx
        return None

    def _serve_tls(self, listener: socket.socket) -> None:
        base = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        base.set_alpn_protocols([ACME_TLS_1])
        base.sni_callback = self._sni
        while not self._stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._handshake, args=(base, conn), daemon=True).start()

    @staticmethod
    def _handshake(base: ssl.SSLContext, conn: socket.socket) -> None:
        conn.settimeout(5)
        with contextlib.suppress(OSError), base.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1)  # the validator closes after the handshake
        conn.close()
