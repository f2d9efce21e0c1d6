"""A local certificate authority for the stage's TLS listener (wss:// and https://).

Handlers written for AWS build the @connections endpoint as
``https://{domainName}/{stage}``; for that to work unmodified, the stage serves
TLS with a server certificate for 127.0.0.1 and localhost, signed by a CA made
at stage start. The stage's workers trust that CA (``AWS_CA_BUNDLE`` for boto3,
``NODE_EXTRA_CA_CERTS`` for Node.js); nothing else does. The CA's private key
never leaves memory; the server's key is written next to its certificate, in a
private directory that lives as long as the stage.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=30)
CLOCK_SKEW = datetime.timedelta(hours=1)
LOCAL_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class LocalCertificates:
    ca_pem: bytes
    cert_pem: bytes
    """The server certificate, then the CA's: the chain a TLS server presents."""
    key_pem: bytes


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fanbench local stage"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _subject_names(hosts: tuple[str, ...]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def issue(now: datetime.datetime, hosts: tuple[str, ...] = LOCAL_NAMES) -> LocalCertificates:
    """A fresh CA and a server certificate it signs, for ``hosts`` (IP addresses or names)."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("fanbench local stage CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(_subject_names(hosts)), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem = ca.public_bytes(serialization.Encoding.PEM)
    return LocalCertificates(
        ca_pem=ca_pem,
        cert_pem=cert.public_bytes(serialization.Encoding.PEM) + ca_pem,
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context

    def client_context(self) -> ssl.SSLContext:
        """What a client that trusts the stage's CA (and only it) uses."""
        return ssl.create_default_context(cafile=str(self.ca_file))


def write_certificates(directory: Path, host: str) -> TlsFiles:
    """Issue certificates for ``host`` (and 127.0.0.1, localhost) into ``directory``."""
    certificates = issue(datetime.datetime.now(datetime.UTC), (host, *LOCAL_NAMES))
    files = TlsFiles(directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    files.ca_file.write_bytes(certificates.ca_pem)
    files.cert_file.write_bytes(certificates.cert_pem)
    descriptor = os.open(files.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as key_file:
        key_file.write(certificates.key_pem)
    return files
