"""Upstream TLS as hosts meet it: always verified, against the system's bundle or SSL_CERT_FILE.

The sandbox speaks plain HTTP, so a small TLS terminator on 127.0.0.1 stands in front of it with
a certificate from a throwaway CA. The one TLS context every client shares (`http_io.tls_context`)
is made once per process, from its environment: the server given SSL_CERT_FILE runs over stdio as a
host launches it; the one without runs in the test's own process, whose trust (the system's, or any
SSL_CERT_FILE the run has) cannot include a CA made a moment ago.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import Agent, sandbox_env
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from mcp import Client
from test_stdio import _base_env, stdio_agent

from nonecap_mcp.config import load_settings
from nonecap_mcp.sandbox import SANDBOX_WALLET_KEY, Sandbox
from nonecap_mcp.tools import build_server

pytestmark = pytest.mark.anyio


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: tuple[str, ec.EllipticCurvePrivateKey] | None,
                 *, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name, signer = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer_name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                        critical=False)  # fmt: skip
    return builder.sign(signer, hashes.SHA256())


def _pem(path: Path, *parts: bytes) -> Path:
    path.write_bytes(b"".join(parts))
    return path


@contextmanager
def tls_front(target: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An https://127.0.0.1:PORT that forwards to the plain `target` (host:port), and the file of
    the throwaway CA that signed its certificate."""
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("nonecap-test-ca", ca_key, None, ca=True)
    leaf = _certificate("127.0.0.1", leaf_key, ("nonecap-test-ca", ca_key), ca=False)
    ca_file = _pem(tmp_path / "ca.pem", ca.public_bytes(serialization.Encoding.PEM))
    key_bytes = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())  # fmt: skip
    chain = _pem(tmp_path / "leaf.pem", leaf.public_bytes(serialization.Encoding.PEM), key_bytes)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain)
    host, port = target.rsplit(":", 1)
    listener = socket.create_server(("127.0.0.1", 0))

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                end.close()

    def serve(raw: socket.socket) -> None:
        try:
            secure = context.wrap_socket(raw, server_side=True)  # an untrusting client fails the handshake here
        except (OSError, ssl.SSLError):
            raw.close()
            return
        upstream = socket.create_connection((host, int(port)))
        threading.Thread(target=pipe, args=(upstream, secure), daemon=True).start()
        pipe(secure, upstream)

    def accept() -> None:
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(raw,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}", ca_file
    finally:
        listener.close()


async def test_an_https_upstream_is_trusted_through_ssl_cert_file_and_refused_without_it(
        sandbox: Sandbox, tmp_path: Path) -> None:
    """A corporate CA in SSL_CERT_FILE is honoured by every rail (credits API, x402 price table,
    the chain's RPC); without it the certificate is refused, nothing is sent in the clear, and the
    agent is told it could not connect, never to turn verification off."""
    (tmp_path / "trusted").mkdir()
    with tls_front(sandbox.url.removeprefix("http://"), tmp_path) as (https, ca_file):
        upstream = {"NONECAP_API_BASE": https, "NONECAP_X402_BASE": https, "NONECAP_BASE_RPC_URL": f"{https}/rpc",
                    "NONECAP_WALLET_PRIVATE_KEY": SANDBOX_WALLET_KEY}  # fmt: skip
        trusted = _base_env(**sandbox_env(sandbox, **upstream), SSL_CERT_FILE=str(ca_file))
        async with stdio_agent(trusted, tmp_path / "trusted") as agent:
            balance = await agent.ok("get_balance")
            assert balance["credits_balance"] == 100 and balance["usdc_balance"] is not None, balance
            pricing = await agent.ok("get_pricing")
            assert pricing["x402_pay_to"] and not any("unavailable" in note for note in pricing["notes"]), pricing
        sandbox.clear_requests()
        async with Client(build_server(load_settings(sandbox_env(sandbox, **upstream))), mode="legacy") as client:
            text = await Agent(client).error("list_solves")
        assert "connection_error" in text and '"action": "retry"' in text and "verify" not in text.lower()
        assert sandbox.requests == []  # the handshake failed: nothing reached the API
