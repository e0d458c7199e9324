"""A whole booking system made of real processes, for the fault tests (tests/test_faults.py).

Every part is its own OS process, so a fault is real: ``kill -9`` of the worker, a stop and
start of the Temporal dev server on its persisted SQLite file, a stop and start of Postgres
on its data directory, a restart of the API process. Nothing is mocked.

- Postgres: ``EmbeddedPostgres`` on a data directory and port of its own;
- Temporal: ``temporal server start-dev --db-filename`` (``TemporalDevServer``);
- the worker: ``python worker.py``; the API: ``python -m booking.cli api``, both configured
  only through the environment, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from temporalio.client import Client

from booking.converter import DATA_CONVERTER
from booking.db import create_pool, migrate
from booking.devstack.binaries import find_binary
from booking.devstack.net import tcp_open
from booking.devstack.postgres import EmbeddedPostgres, free_port
from booking.devstack.temporal_server import TemporalDevServer
from booking.webhook_signing import SIGNATURE_HEADER, webhook_signature

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "fault-api-key-0123456789"
JWT_SECRET = "fault-jwt-secret-0123456789abcdef"
WEBHOOK_SECRET = "fault-webhook-secret-0123456789"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


@dataclass
class Proc:
    name: str
    args: list[str]
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            out.write(f"\n=== start {time.strftime('%H:%M:%S')} ===\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                self.args,
                env=self.env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 25) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def tail(self) -> str:
        return f"--- {self.name} ({self.log}) ---\n{_tail(self.log)}"


@dataclass
class Timings:
    """What a scenario measured, for RELIABILITY.md."""

    values: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value


class FaultStack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.postgres = EmbeddedPostgres(data_dir=root / "pg", durable=True)
        self.temporal_port = free_port()
        self.temporal = TemporalDevServer(
            binary=find_binary("temporal"),
            host="127.0.0.1",
            port=self.temporal_port,
            ui_port=free_port(),
            metrics_port=free_port(),
            db_file=root / "temporal.db",
        )
        self.api_port = free_port()
        self.task_queue = f"faults-{uuid.uuid4().hex[:8]}"
        self.temporal_proc = Proc(
            "temporal", self.temporal.args(), dict(os.environ), root / "temporal.log"
        )
        self.worker: Proc | None = None
        self.api: Proc | None = None
        self.pool: asyncpg.Pool | None = None
        self.client: Client | None = None

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        return self.postgres.dsn

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKING_")}
        env.update(
            {
                "DATABASE_URL": self.dsn,
                "TEMPORAL_ADDRESS": self.temporal.address,
                "TEMPORAL_NAMESPACE": "default",
                "BOOKING_TASK_QUEUE": self.task_queue,
                "BOOKING_API_KEYS": API_KEY,
                "BOOKING_JWT_SECRET": JWT_SECRET,
                "BOOKING_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "BOOKING_API_HOST": "127.0.0.1",
                "BOOKING_API_PORT": str(self.api_port),
                "BOOKING_LOG_LEVEL": "INFO",
                "BOOKING_DB_POOL_MIN": "1",
                "BOOKING_DB_POOL_MAX": "20",
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    async def start(self) -> None:
        self.postgres.start()
        await migrate(self.dsn)
        self.pool = await create_pool(self.dsn, min_size=1, max_size=20)
        await self.start_temporal()
        self.worker = Proc(
            "worker",
            [sys.executable, str(ROOT / "worker.py")],
            self.child_env(),
            self.root / "worker.log",
        )
        self.api = Proc(
            "api",
            [sys.executable, "-m", "booking.cli", "api"],
            self.child_env(),
            self.root / "api.log",
        )
        self.worker.start()
        await self.start_api()

    async def start_temporal(self) -> None:
        self.temporal_proc.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not self.temporal_proc.alive():
                raise RuntimeError(f"Temporal dev server exited\n{self.temporal_proc.tail()}")
            try:
                client = await Client.connect(self.temporal.address, data_converter=DATA_CONVERTER)
                await client.service_client.check_health()
                self.client = client
                return
            except Exception:
                await asyncio.sleep(0.2)
        raise RuntimeError(f"Temporal dev server did not start\n{self.temporal_proc.tail()}")

    def kill_temporal(self) -> None:
        """A crash: nothing flushed or closed (its SQLite file must recover from its log)."""
        self.temporal_proc.kill()

    async def start_api(self) -> None:
        assert self.api is not None
        self.api.start()
        await self.wait_api_ready()

    async def wait_api_ready(self, limit: float = 60) -> None:
        assert self.api is not None
        deadline = time.monotonic() + limit
        async with httpx.AsyncClient(timeout=2) as http:
            while time.monotonic() < deadline:
                if not self.api.alive():
                    raise RuntimeError(f"API exited\n{self.api.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.api_url}/readyz")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"API not ready\n{self.api.tail()}")

    def stop_postgres(self) -> None:
        self.postgres.stop()

    def start_postgres(self) -> None:
        deadline = time.monotonic() + 20
        while tcp_open(self.postgres.host, self.postgres.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.postgres.start()

    async def close(self) -> None:
        for proc in (self.api, self.worker):
            if proc is not None:
                proc.stop(signal.SIGTERM, timeout=15)
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 10)
        self.temporal_proc.stop(signal.SIGTERM)
        self.postgres.stop()
        # The logs stay (small, and what one reads after a failure); the data goes.
        shutil.rmtree(self.postgres.data_dir, ignore_errors=True)
        for leftover in self.root.glob("temporal.db*"):
            leftover.unlink(missing_ok=True)

    def tails(self) -> str:
        procs = [p for p in (self.worker, self.api, self.temporal_proc) if p is not None]
        return "\n".join(p.tail() for p in procs)

    # -- data and traffic --------------------------------------------------------------

    async def make_apartments(self, count: int, *, rent: int = 100_000) -> list[tuple[str, str]]:
        """``count`` VACANT apartments, each with a tenant of its own: [(apartment, user)]."""
        assert self.pool is not None
        tag = uuid.uuid4().hex[:8]
        owner = f"owner-{tag}"
        building = f"bld-{tag}"
        pairs = [(f"apt-{tag}-{i}", f"tenant-{tag}-{i}") for i in range(count)]
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                """INSERT INTO users (id, first_name, last_name, email, verified, user_type)
                   VALUES ($1, 'Owner', 'Fault', $2, true, 'ADMIN')""",
                owner,
                f"{owner}@example.com",
            )
            await conn.execute(
                """INSERT INTO buildings (id, user_id, name, street_address, postal_code, city,
                                          country, number_of_apartments)
                   VALUES ($1, $2, 'Fault House', '1 Crash Road', '12345', 'Faultville',
                           'DE', $3)""",
                building,
                owner,
                count,
            )
            await conn.executemany(
                """INSERT INTO users (id, first_name, last_name, email, verified, user_type)
                   VALUES ($1, 'Tenant', 'Fault', $1 || '@example.com', true, 'TENANT')""",
                [(user,) for _, user in pairs],
            )
            await conn.executemany(
                """INSERT INTO apartments (id, apartment_number, building_id, apartment_type,
                                           kitchen, number_of_rooms, monthly_rent, currency)
                   VALUES ($1, $1, $2, 'SINGLE_ROOM', true, 1, $3, 'EUR')""",
                [(apartment, building, rent) for apartment, _ in pairs],
            )
        return pairs

    async def graphql(
        self, http: httpx.AsyncClient, query: str, variables: dict[str, Any]
    ) -> httpx.Response:
        return await http.post(
            f"{self.api_url}/graphql",
            json={"query": query, "variables": variables},
            headers={"x-api-key": API_KEY},
        )

    async def reserve(
        self,
        http: httpx.AsyncClient,
        apartment_id: str,
        user_id: str,
        hold_seconds: int,
        *,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        start = date.today() + timedelta(days=1)
        response = await self.graphql(
            http,
            """mutation($input: ReserveApartmentInput!) {
                 reserveApartment(input: $input) {
                   id bookingStatus amountDue currency holdExpiresAt apartmentId
                 }
               }""",
            {
                "input": {
                    "apartmentId": apartment_id,
                    "userId": user_id,
                    "startDate": start.isoformat(),
                    "endDate": (start + timedelta(days=30)).isoformat(),
                    "holdSeconds": hold_seconds,
                    "idempotencyKey": idempotency_key or f"key-{apartment_id}",
                }
            },
        )
        body = response.json()
        if response.status_code != 200 or body.get("errors"):
            raise RuntimeError(f"reserve failed: {response.status_code} {body}")
        booking: dict[str, Any] = body["data"]["reserveApartment"]
        return booking

    async def pay_mutation(
        self, http: httpx.AsyncClient, booking: dict[str, Any], reference: str
    ) -> httpx.Response:
        return await self.graphql(
            http,
            """mutation($input: PayBookingInput!) {
                 payBooking(input: $input) { id bookingStatus paidAt }
               }""",
            {
                "input": {
                    "bookingId": booking["id"],
                    "amount": booking["amountDue"],
                    "currency": booking["currency"],
                    "paymentReference": reference,
                }
            },
        )

    async def pay_webhook(
        self,
        http: httpx.AsyncClient,
        booking: dict[str, Any],
        reference: str,
        event_id: str,
    ) -> httpx.Response:
        body = json.dumps(
            {
                "id": event_id,
                "bookingId": booking["id"],
                "amount": booking["amountDue"],
                "currency": booking["currency"],
                "paymentReference": reference,
            }
        ).encode()
        headers = {
            SIGNATURE_HEADER: webhook_signature(WEBHOOK_SECRET, body, int(time.time())),
            "content-type": "application/json",
        }
        return await http.post(f"{self.api_url}/webhooks/payments", content=body, headers=headers)

    # -- checks --------------------------------------------------------------------------

    async def wait_settled(self, booking_ids: list[str], limit: float) -> float:
        """Wait until none of the bookings is PENDING; return the seconds it took."""
        assert self.pool is not None
        started = time.monotonic()
        deadline = started + limit
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                pending = await self.pool.fetchval(
                    "SELECT count(*) FROM bookings WHERE id = ANY($1::text[]) "
                    "AND booking_status = 'PENDING'",
                    booking_ids,
                )
                if pending == 0:
                    return time.monotonic() - started
            await asyncio.sleep(0.25)
        raise AssertionError(f"bookings still PENDING after {limit} s\n{self.tails()}")

    async def outcome(self, booking_ids: list[str]) -> dict[str, dict[str, Any]]:
        """booking id -> status, reason, apartment status, payments [(reference, outcome)]."""
        assert self.pool is not None
        rows = await self.pool.fetch(
            """SELECT b.id, b.booking_status, b.cancellation_reason, b.paid_at,
                      a.apartment_status, a.tenant_id, b.user_id,
                      COALESCE(
                        (SELECT json_agg(json_build_array(p.payment_reference, p.outcome)
                                         ORDER BY p.id)
                           FROM payments p WHERE p.booking_id = b.id), '[]') AS payments
                 FROM bookings b JOIN apartments a ON a.id = b.apartment_id
                WHERE b.id = ANY($1::text[])""",
            booking_ids,
        )
        return {
            r["id"]: {
                "status": r["booking_status"],
                "reason": r["cancellation_reason"],
                "apartment": r["apartment_status"],
                "tenant_ok": r["tenant_id"] == r["user_id"],
                "payments": [tuple(p) for p in json.loads(r["payments"])],
            }
            for r in rows
        }


def now_utc() -> datetime:
    return datetime.now(UTC)
