"""The local CA of `booking dev --tls`: made once, reused, renewed when it must be."""

from __future__ import annotations

import datetime as dt
import ssl
from pathlib import Path

from cryptography import x509

from booking.devstack.tls import RENEW_BEFORE, SERVER_DAYS, ensure_local_tls


def _names(cert_file: Path) -> set[str]:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return {str(n) for n in san.get_values_for_type(x509.DNSName)} | {
        str(a) for a in san.get_values_for_type(x509.IPAddress)
    }


def test_the_ca_signs_a_certificate_for_localhost_and_loopback(tmp_path: Path) -> None:
    tls = ensure_local_tls(tmp_path / "tls")
    assert _names(tls.cert_file) == {"localhost", "127.0.0.1", "::1"}
    for key in (tls.key_file, tls.ca_key_file):
        assert key.stat().st_mode & 0o077 == 0, key
    assert (tmp_path / "tls").stat().st_mode & 0o077 == 0
    # The key matches the certificate, and the CA issued it.
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    cert = x509.load_pem_x509_certificate(tls.cert_file.read_bytes())
    ca = x509.load_pem_x509_certificate(tls.ca_file.read_bytes())
    cert.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0


def test_a_second_run_reuses_both(tmp_path: Path) -> None:
    first = ensure_local_tls(tmp_path / "tls")
    ca, cert = first.ca_file.read_bytes(), first.cert_file.read_bytes()
    second = ensure_local_tls(tmp_path / "tls")
    assert second.ca_file.read_bytes() == ca
    assert second.cert_file.read_bytes() == cert


def test_a_certificate_near_its_end_is_issued_again_by_the_same_ca(tmp_path: Path) -> None:
    first = ensure_local_tls(tmp_path / "tls")
    ca, cert = first.ca_file.read_bytes(), first.cert_file.read_bytes()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=SERVER_DAYS) - RENEW_BEFORE / 2
    renewed = ensure_local_tls(tmp_path / "tls", now=later)
    assert renewed.ca_file.read_bytes() == ca  # still trusted: the same CA
    assert renewed.cert_file.read_bytes() != cert
    fresh = x509.load_pem_x509_certificate(renewed.cert_file.read_bytes())
    assert fresh.not_valid_after_utc > later + RENEW_BEFORE


def test_a_new_ca_means_a_new_certificate(tmp_path: Path) -> None:
    first = ensure_local_tls(tmp_path / "tls")
    cert = first.cert_file.read_bytes()
    first.ca_file.unlink()
    again = ensure_local_tls(tmp_path / "tls")
    assert again.cert_file.read_bytes() != cert
    ca = x509.load_pem_x509_certificate(again.ca_file.read_bytes())
    x509.load_pem_x509_certificate(again.cert_file.read_bytes()).verify_directly_issued_by(ca)


def test_a_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    mine = ensure_local_tls(tmp_path / "mine")
    other = ensure_local_tls(tmp_path / "other")
    mine.cert_file.write_bytes(other.cert_file.read_bytes())
    mine.key_file.write_bytes(other.key_file.read_bytes())
    fixed = ensure_local_tls(tmp_path / "mine")
    ca = x509.load_pem_x509_certificate(fixed.ca_file.read_bytes())
    x509.load_pem_x509_certificate(fixed.cert_file.read_bytes()).verify_directly_issued_by(ca)
