"""The service on a secured Temporal frontend: TLS that demands a client certificate.

The dev server has no TLS of its own, so Debian's nginx stands in front of it as a secured
cluster's frontend would: TLS with our CA's server certificate, ``ssl_verify_client on``
against the same CA, ``grpc_pass`` to the dev server. The worker and the API are configured
exactly as the ``temporal`` CLI would be (``TEMPORAL_ADDRESS``, ``TEMPORAL_TLS_*``:
``booking.temporal``), and a booking is reserved and paid through them. Without its
certificate, or trusting the wrong CA, a worker fails within seconds with one clear line.
"""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from booking.db import migrate
from booking.devstack.net import free_port
from booking.devstack.stack import Stack
from booking.devstack.tls import LocalTls, ensure_local_tls
from tests.helpers import eventually, nginx_config, pay_through_api, reserve_through_api
from tests.system_packages import NGINX, ensure

pytestmark = pytest.mark.e2e

API_KEY = "tls-api-key-0123456789"
# Inside http { }: TLS that demands our CA's client certificate, gRPC to the dev server.
FRONTEND = """
  access_log off;
  server {{
    listen 127.0.0.1:{port} ssl http2;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_client_certificate {ca};
    ssl_verify_client on;
    # Workers long-poll for tasks (up to about a minute).
    grpc_read_timeout 300s;
    grpc_send_timeout 300s;
    client_body_timeout 300s;
    location / {{
      grpc_pass grpc://127.0.0.1:{temporal};
    }}
  }}
"""


def _client_certificate(tls: LocalTls, directory: Path) -> tuple[Path, Path]:
    """A client certificate signed by the local CA, as a cluster's operator would issue."""
    now = dt.datetime.now(dt.UTC)
    ca_cert = x509.load_pem_x509_certificate(tls.ca_file.read_bytes())
    ca_key = serialization.load_pem_private_key(tls.ca_key_file.read_bytes(), password=None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "booking-worker")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_file, key_file = directory / "client.pem", directory / "client-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@dataclass
class Secured:
    stack: Stack
    api_url: str
    env: dict[str, str]  # the worker's and API's: the secured frontend, with their certificate
    other_ca: Path  # a CA that did not sign the frontend's certificate


@pytest.fixture(scope="module")
async def secured(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Secured]:
    root = tmp_path_factory.mktemp("temporal-tls")
    stack = Stack(root)
    try:
        dsn = await stack.start_postgres(durable=False)
        await migrate(dsn)
        await stack.start_temporal(db_file=None)
        stack.task_queue = f"tls-{uuid.uuid4().hex[:6]}"
        tls = ensure_local_tls(root / "tls")
        client_cert, client_key = _client_certificate(tls, root / "tls")
        other_ca = ensure_local_tls(root / "other-tls").ca_file
        port = free_port()
        conf = root / "nginx.conf"
        frontend = FRONTEND.format(
            port=port,
            cert=tls.cert_file,
            key=tls.key_file,
            ca=tls.ca_file,
            temporal=stack.temporal_address.rsplit(":", 1)[1],
        )
        conf.write_text(nginx_config(root, frontend))
        stack.spawn(
            "frontend",
            [ensure(NGINX), "-p", str(root), "-c", str(conf)],
            env=dict(os.environ),
            log_file=root / "nginx.out",
        )
        env = stack.child_env(
            {
                "BOOKING_API_KEYS": API_KEY,
                "BOOKING_JWT_SECRET": "tls-jwt-secret-0123456789-0123456789-abcd",
                "BOOKING_WEBHOOK_SECRET": "tls-webhook-secret-0123456789-0123456789",
                "BOOKING_LOG_LEVEL": "INFO",
                # As the temporal CLI is configured for a secured cluster.
                "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
                "TEMPORAL_TLS": "true",
                "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(tls.ca_file),
                "TEMPORAL_TLS_SERVER_NAME": "localhost",
                "TEMPORAL_TLS_CLIENT_CERT_PATH": str(client_cert),
                "TEMPORAL_TLS_CLIENT_KEY_PATH": str(client_key),
            }
        )
        stack.spawn_worker(env, log_file=root / "worker.log")
        api = stack.spawn_api(env, log_file=root / "api.log")
        await stack.wait_ready(["worker", "api"])
        yield Secured(stack, api.url, env, other_ca)
    finally:
        stack.stop()


async def test_reserve_and_pay_through_a_frontend_that_demands_a_client_certificate(
    secured: Secured,
) -> None:
    headers = {"x-api-key": API_KEY}
    async with httpx.AsyncClient(base_url=secured.api_url, headers=headers, timeout=30) as http:
        booking = await reserve_through_api(http, "tls")
        assert await pay_through_api(http, booking) == "APPROVED"

        async def ready() -> int:
            return (await http.get("/readyz")).status_code

        assert await eventually(ready, lambda status: status == 200, what="/readyz") == 200


@pytest.mark.parametrize("mistake", ["no client certificate", "another CA"])
def test_a_worker_configured_wrong_fails_fast_with_one_line(secured: Secured, mistake: str) -> None:
    env = dict(secured.env)
    if mistake == "no client certificate":
        del env["TEMPORAL_TLS_CLIENT_CERT_PATH"], env["TEMPORAL_TLS_CLIENT_KEY_PATH"]
    else:
        env["TEMPORAL_TLS_SERVER_CA_CERT_PATH"] = str(secured.other_ca)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode != 0, done
    assert took < 30, took
    errors = [line for line in done.stderr.splitlines() if line.strip()]
    assert errors, done
    address = env["TEMPORAL_ADDRESS"]
    assert any(f"cannot reach Temporal at {address} (TLS)" in line for line in errors), errors
    assert "Traceback" not in done.stderr, done.stderr
