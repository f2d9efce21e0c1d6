"""The shared port's routing rule and the local certificate authority (fast, no stage)."""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
from pathlib import Path

import pytest
from cryptography import x509

from loadtest.stage.shared_port import is_websocket_upgrade
from loadtest.stage.tls import issue, write_certificates

NOW = datetime.datetime(2026, 11, 30, tzinfo=datetime.UTC)


@pytest.mark.parametrize(
    ("head", "upgrade"),
    [
        (b"GET /local HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade", True),
        (b"GET /local HTTP/1.1\r\nupgrade:  WebSocket \r\nConnection: upgrade", True),
        (b"GET /local HTTP/1.1\r\nUpgrade: h2c, websocket", True),
        (b"POST /local/@connections/abc HTTP/1.1\r\nHost: x\r\nContent-Length: 2", False),
        (b"GET /local HTTP/1.1\r\nUpgrade: h2c\r\nConnection: Upgrade", False),
        (b"GET /upgrade:websocket HTTP/1.1\r\nHost: x", False),  # the request line is no header
        (b"GET / HTTP/1.1\r\nX-Upgrade: websocket", False),
    ],
)
def test_only_a_websocket_upgrade_goes_to_the_gateway(head: bytes, upgrade: bool) -> None:
    assert is_websocket_upgrade(head) is upgrade


def test_the_server_certificate_names_loopback_and_is_signed_by_the_ca() -> None:
    certificates = issue(NOW, ("127.0.0.1", "localhost"))
    ca = x509.load_pem_x509_certificate(certificates.ca_pem)
    server, chained_ca = x509.load_pem_x509_certificates(certificates.cert_pem)
    assert chained_ca == ca
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert server.not_valid_before_utc < NOW < server.not_valid_after_utc


def test_a_client_trusting_the_ca_completes_a_handshake_and_others_do_not(tmp_path: Path) -> None:
    files = write_certificates(tmp_path, "127.0.0.1")
    assert files.key_file.stat().st_mode & 0o077 == 0  # the key is private
    server_context = files.server_context()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept_two() -> None:
            for _ in range(2):
                conn, _address = listener.accept()
                with conn, server_context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"ok")

        def server_side() -> None:
            with contextlib.suppress(ssl.SSLError, OSError):  # the untrusting client aborts
                accept_two()

        thread = threading.Thread(target=server_side, daemon=True)
        thread.start()
        with (
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            files.client_context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            assert tls.recv(2) == b"ok"
        with (
            pytest.raises(ssl.SSLCertVerificationError),
            socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1"),
        ):
            pass
        thread.join(5)
