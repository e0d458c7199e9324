"""A whole booking system made of real processes, for the fault tests (tests/test_faults.py).

Built with ``booking.devstack.Stack``, like every stack of ours: every part is its own OS
process, so a fault is real: ``kill -9`` of the worker, a crash and restart of the Temporal
dev server on its persisted SQLite file, a stop and start of Postgres on its data directory,
a restart of the API process. Nothing is mocked.

The worker runs as ``python worker.py`` (the other entry point runs in every other stack),
the API as ``booking api``, both configured only through the environment, as in production.
Nothing restarts a part here but the test itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
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

from booking import catalog
from booking.db import create_pool, migrate
from booking.devstack.stack import ApiProcess, Stack, tail
from booking.store.catalog import ApartmentData, BuildingData, UserData
from booking.webhook_signing import SIGNATURE_HEADER, webhook_signature
from tests.helpers import eventually
from tests.smtp import SmtpInbox

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "fault-api-key-0123456789"
JWT_SECRET = "fault-jwt-secret-0123456789abcdef"
WEBHOOK_SECRET = "fault-webhook-secret-0123456789-0123456789"
DB_TIMEOUT_SECONDS = 2


@dataclass
class Timings:
    """What a scenario measured, for RELIABILITY.md."""

    values: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, key: str, value: Any) -> None:
        self.values[key] = value


class FaultStack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.parts = Stack(root)
        self.parts.task_queue = f"faults-{uuid.uuid4().hex[:8]}"
        self.pool: asyncpg.Pool | None = None
        self.api: ApiProcess | None = None
        # The worker's mail server: real SMTP in this process, recording every delivery.
        self.smtp = SmtpInbox()

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        return self.parts.dsn

    @property
    def client(self) -> Client:
        return self.parts.temporal

    @property
    def api_url(self) -> str:
        assert self.api is not None
        return self.api.url

    async def start(self) -> None:
        await self.parts.start_postgres(data_dir=self.root / "pg")
        await migrate(self.dsn)
        self.pool = await create_pool(self.dsn, min_size=1, max_size=20)
        await self.parts.start_temporal(db_file=self.root / "temporal.db", within=60)
        self.smtp.start()
        env = self.parts.child_env(
            {
                **self.smtp.settings,
                "BOOKING_API_KEYS": API_KEY,
                "BOOKING_JWT_SECRET": JWT_SECRET,
                "BOOKING_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "BOOKING_LOG_LEVEL": "INFO",
                "BOOKING_DB_POOL_MIN": "1",
                "BOOKING_DB_POOL_MAX": "20",
                "BOOKING_DB_TIMEOUT_SECONDS": str(DB_TIMEOUT_SECONDS),
            }
        )
        self.parts.spawn_worker(
            env,
            command=[sys.executable, str(ROOT / "worker.py")],
            log_file=self.root / "worker.log",
        )
        self.api = self.parts.spawn_api(env, log_file=self.root / "api.log")
        await self.parts.wait_ready(["api"])

    # Faults and recoveries, each on one part.

    def kill_worker(self) -> None:
        """SIGKILL: no drain, no goodbye."""
        self.parts.kill("worker")

    async def start_worker(self) -> None:
        await self.parts.restart("worker", wait=False)

    def kill_temporal(self) -> None:
        """A crash: nothing flushed or closed (its SQLite file must recover from its log)."""
        self.parts.kill("temporal")

    async def start_temporal(self) -> None:
        await self.parts.restart("temporal")

    def kill_api(self) -> None:
        self.parts.kill("api")

    async def start_api(self) -> None:
        await self.parts.restart("api")

    def stop_postgres(self) -> None:
        self.parts.stop_postgres()

    def pause_postgres(self) -> None:
        """SIGSTOP every Postgres process: connections stay open, nothing answers."""
        for pid in self._postgres_pids():
            os.kill(pid, signal.SIGSTOP)

    def resume_postgres(self) -> None:
        for pid in self._postgres_pids():
            os.kill(pid, signal.SIGCONT)

    def _postgres_pids(self) -> list[int]:
        """The postmaster and its children (each backend runs in a session of its own, so
        one signal to the postmaster's process group does not reach them)."""
        assert self.parts.postgres is not None and self.parts.postgres.process is not None
        postmaster = self.parts.postgres.process.pid
        found = [postmaster]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                        found.append(int(entry.name))
        return found

    def start_postgres(self) -> None:
        self.parts.restart_postgres()

    def alive(self, name: str) -> bool:
        return self.parts.child(name).alive()

    async def close(self) -> None:
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 10)
        await asyncio.to_thread(self.parts.stop)
        self.smtp.stop()
        # The logs stay (small, and what one reads after a failure); the data goes.
        shutil.rmtree(self.root / "pg", ignore_errors=True)
        for leftover in self.root.glob("temporal.db*"):
            leftover.unlink(missing_ok=True)

    def tails(self) -> str:
        return "\n".join(
            f"--- {child.name} ({child.log_file}) ---\n{tail(child.log_file, 30)}"
            for child in self.parts.supervisor.children
        )

    # -- data and traffic --------------------------------------------------------------

    async def make_apartments(self, count: int, *, rent: int = 100_000) -> list[tuple[str, str]]:
        """``count`` VACANT apartments, each with a tenant of its own: [(apartment, user)]."""
        assert self.pool is not None
        tag = uuid.uuid4().hex[:8]
        owner = f"owner-{tag}"
        building = f"bld-{tag}"
        pairs = [(f"apt-{tag}-{i}", f"tenant-{tag}-{i}") for i in range(count)]
        async with self.pool.acquire() as conn, conn.transaction():
            # As the API writes catalog rows (booking.catalog), in one transaction.
            await catalog.create_user(
                conn,
                UserData(owner, "Owner", "Fault", f"{owner}@example.com", True, "ADMIN"),
                actor="fault-stack",
            )
            await catalog.create_building(
                conn,
                BuildingData(
                    building,
                    owner,
                    "Fault House",
                    "1 Crash Road",
                    "12345",
                    "Faultville",
                    "DE",
                    count,
                ),
                actor="fault-stack",
            )
            for apartment, user in pairs:
                await catalog.create_user(
                    conn,
                    UserData(user, "Tenant", "Fault", f"{user}@example.com", True, "TENANT"),
                    actor="fault-stack",
                )
                await catalog.create_apartment(
                    conn,
                    ApartmentData(
                        id=apartment,
                        apartment_number=apartment,
                        building_id=building,
                        number_of_rooms=1,
                        kitchen=True,
                        apartment_type="SINGLE_ROOM",
                        apartment_status="VACANT",
                        monthly_rent=rent,
                        currency="EUR",
                    ),
                    actor="fault-stack",
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
        pool = self.pool
        assert pool is not None
        started = time.monotonic()

        async def pending() -> int | None:
            # Postgres itself may be the part that is down.
            with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                count: int = await pool.fetchval(
                    "SELECT count(*) FROM bookings WHERE id = ANY($1::text[]) "
                    "AND booking_status = 'PENDING'",
                    booking_ids,
                )
                return count
            return None

        try:
            await eventually(pending, lambda n: n == 0, within=limit, interval=0.25)
        except AssertionError as exc:
            raise AssertionError(f"bookings still PENDING: {exc}\n{self.tails()}") from None
        return time.monotonic() - started

    async def outcome(self, booking_ids: list[str]) -> dict[str, dict[str, Any]]:
        """booking id -> status, reason, apartment status (on the stay's first night),
        payments [(reference, outcome)]."""
        assert self.pool is not None
        rows = await self.pool.fetch(
            """SELECT b.id, b.booking_status, b.cancellation_reason, b.paid_at,
                      a.apartment_status, a.tenant_id, b.user_id,
                      COALESCE(
                        (SELECT json_agg(json_build_array(p.payment_reference, p.outcome)
                                         ORDER BY p.id)
                           FROM payments p WHERE p.booking_id = b.id), '[]') AS payments
                 FROM bookings b
                 CROSS JOIN LATERAL (SELECT * FROM apartments_on(b.start_date) o
                                      WHERE o.id = b.apartment_id) a
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
