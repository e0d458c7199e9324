"""A local certificate authority for ``booking dev --tls``: HTTPS and WSS on this machine.

AppSync clients (Amplify) always dial ``wss://``, so trying one against ``booking dev`` needs
TLS with a certificate the client trusts. :func:`ensure_local_tls` creates, once, a CA under
``<data-dir>/tls/`` (``ca.pem``, its key ``ca-key.pem`` readable by the owner only) and a
server certificate for ``localhost``, ``127.0.0.1`` and ``::1`` signed by it (``server.pem``,
``server-key.pem``). Later runs reuse both; the server certificate is issued again when it
is missing, about to expire, or was not signed by the CA on disk. Trust ``ca.pem`` once
(browser, ``NODE_EXTRA_CA_CERTS``, Python's ``ssl`` / ``SSL_CERT_FILE``) and every run is
trusted. The CA's key never leaves the data directory; delete the directory to forget it.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
SERVER_DAYS = 397  # the longest browsers accept for a server certificate
RENEW_BEFORE = dt.timedelta(days=30)
SERVER_NAMES = ("localhost",)
SERVER_ADDRESSES = ("127.0.0.1", "::1")


@dataclass(frozen=True)
class LocalTls:
    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key_file(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "server.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "server-key.pem"


def ensure_local_tls(directory: Path, *, now: dt.datetime | None = None) -> LocalTls:
    """The CA and a valid server certificate under ``directory``, made where missing."""
    now = now or dt.datetime.now(dt.UTC)
    tls = LocalTls(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    if not (tls.ca_file.exists() and tls.ca_key_file.exists()):
        _write_ca(tls, now)
        tls.cert_file.unlink(missing_ok=True)
    ca_cert = x509.load_pem_x509_certificate(tls.ca_file.read_bytes())
    if not _server_cert_good(tls, ca_cert, now):
        _write_server(tls, ca_cert, now)
    return tls


def _write_ca(tls: LocalTls, now: dt.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    common_name = f"booking dev local CA ({os.uname().nodename})"
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "booking dev"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(tls.ca_key_file, key)
    tls.ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_server(tls: LocalTls, ca_cert: x509.Certificate, now: dt.datetime) -> None:
    ca_key = serialization.load_pem_private_key(tls.ca_key_file.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in SERVER_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in SERVER_ADDRESSES]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(tls.key_file, key)
    tls.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _server_cert_good(tls: LocalTls, ca_cert: x509.Certificate, now: dt.datetime) -> bool:
    if not (tls.cert_file.exists() and tls.key_file.exists()):
        return False
    try:
        cert = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return cert.not_valid_after_utc - RENEW_BEFORE > now


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created owner-only, never world-readable even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(path, 0o600)
