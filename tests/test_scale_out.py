"""Scale out, shown on one machine: two workers and two APIs behind a load balancer.

The production layout promises ``--scale worker=3`` and API replicas behind a balancer.
This builds it from real processes (``booking.devstack.Stack``): one Postgres, one Temporal
server, two ``booking worker`` processes, two ``booking api`` processes, and Debian's nginx
balancing between the APIs (WebSockets passed through). Through the balancer it runs every
booking path: reserve, pay, cancel, a hold's expiry, a webhook event delivered twice (to
either API: one payment), persisted queries (a miss on the other process costs one round
trip), a subscription. Then clients book and pay under load while one worker and one API
are killed with SIGKILL: nothing is lost, doubled or left stuck.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from booking.db import create_pool, migrate
from booking.devstack.net import free_port
from booking.devstack.stack import Stack
from booking.doctor import examine
from booking.webhook_signing import SIGNATURE_HEADER, webhook_signature
from tests.helpers import (
    eventually,
    insert_apartment,
    insert_building,
    insert_user,
    make_rental,
    nginx_config,
)
from tests.system_packages import NGINX, ensure

pytestmark = pytest.mark.faults

API_KEY = "scale-out-api-key-0123456789"
WEBHOOK_SECRET = "scale-out-webhook-secret-0123456789-abc"
# Inside http { }: round robin over the two API processes, WebSockets upgraded.
BALANCER = """
  access_log off;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  upstream api {{
    server 127.0.0.1:{one} max_fails=1 fail_timeout=3s;
    server 127.0.0.1:{two} max_fails=1 fail_timeout=3s;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      # A request a dead API never answered goes to the other (GraphQL POSTs included:
      # every mutation here is idempotent by its key or reference).
      proxy_next_upstream error timeout http_502 non_idempotent;
      proxy_read_timeout 60s;
    }}
  }}
"""
RESERVE = """mutation ($input: ReserveApartmentInput!) {
  reserveApartment(input: $input) { id bookingStatus amountDue currency holdExpiresAt } }"""
PAY = """mutation ($input: PayBookingInput!) { payBooking(input: $input) { id bookingStatus } }"""
CANCEL = (
    """mutation ($id: ID!) { cancelBooking(id: $id) { id bookingStatus cancellationReason } }"""
)
GET = """query ($id: ID!) { getBooking(id: $id) { id bookingStatus cancellationReason } }"""


@dataclass
class ScaledOut:
    stack: Stack
    url: str  # the balancer
    pool: asyncpg.Pool

    async def gql(
        self, http: httpx.AsyncClient, query: str, variables: dict[str, Any]
    ) -> dict[str, Any]:
        response = await http.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables},
            headers={"x-api-key": API_KEY},
        )
        assert response.status_code < 500, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
async def system(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ScaledOut]:
    root = tmp_path_factory.mktemp("scale-out")
    stack = Stack(root)
    pool = None
    try:
        dsn = await stack.start_postgres(durable=False)
        await migrate(dsn)
        pool = await create_pool(dsn, min_size=1, max_size=10)
        await stack.start_temporal(db_file=None)
        stack.task_queue = f"scale-{uuid.uuid4().hex[:6]}"
        env = stack.child_env(
            {
                "BOOKING_API_KEYS": API_KEY,
                "BOOKING_JWT_SECRET": "scale-out-jwt-secret-0123456789-0123456789",
                "BOOKING_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "BOOKING_DB_POOL_MAX": "10",
                "BOOKING_LOG_LEVEL": "INFO",
            }
        )
        for name in ("worker-1", "worker-2"):
            stack.spawn_worker(env, name=name, log_file=root / f"{name}.log")
        apis = [
            stack.spawn_api(env, name=n, log_file=root / f"{n}.log") for n in ("api-1", "api-2")
        ]
        await stack.wait_ready(["worker-1", "worker-2", "api-1", "api-2"])
        port = free_port()
        conf = root / "nginx.conf"
        balancer = BALANCER.format(port=port, one=apis[0].port, two=apis[1].port)
        conf.write_text(nginx_config(root, balancer))
        stack.spawn(
            "balancer",
            [ensure(NGINX), "-p", str(root), "-c", str(conf)],
            env=dict(os.environ),
            log_file=root / "nginx.out",
        )
        url = f"http://127.0.0.1:{port}"

        async def up() -> int:
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(f"{url}/readyz")).status_code
            except httpx.HTTPError:
                return 0

        await eventually(up, lambda status: status == 200, what="the balancer")
        yield ScaledOut(stack, url, pool)
    finally:
        if pool is not None:
            await pool.close()
        stack.stop()


def _stay() -> dict[str, str]:
    start = date.today()  # from tonight: the apartment's status shows it at once
    return {"startDate": start.isoformat(), "endDate": (start + timedelta(days=60)).isoformat()}


async def _reserve(
    system: ScaledOut, http: httpx.AsyncClient, apartment: str, user: str, **extra: Any
) -> dict[str, Any]:
    body = await system.gql(
        http, RESERVE, {"input": {"apartmentId": apartment, "userId": user, **_stay(), **extra}}
    )
    assert "errors" not in body, body
    booking: dict[str, Any] = body["data"]["reserveApartment"]
    return booking


async def test_every_booking_path_through_the_balancer(system: ScaledOut) -> None:
    pool = system.pool
    async with httpx.AsyncClient(timeout=30) as http:
        # Reserve and pay.
        rental = await make_rental(pool)
        booking = await _reserve(system, http, rental.apartment_id, rental.user_id)
        payment = {
            "bookingId": booking["id"],
            "amount": booking["amountDue"],
            "currency": booking["currency"],
            "paymentReference": f"ref-{uuid.uuid4()}",
        }
        paid = await system.gql(http, PAY, {"input": payment})
        assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid
        # Cancel.
        other = await make_rental(pool)
        held = await _reserve(system, http, other.apartment_id, other.user_id)
        cancelled = await system.gql(http, CANCEL, {"id": held["id"]})
        assert cancelled["data"]["cancelBooking"]["cancellationReason"] == "TENANT_CANCELLED"
        # A hold's expiry, fired by whichever worker has it.
        third = await make_rental(pool)
        short = await _reserve(system, http, third.apartment_id, third.user_id, holdSeconds=2)
        expired = await eventually(
            lambda: system.gql(http, GET, {"id": short["id"]}),
            lambda body: body["data"]["getBooking"]["bookingStatus"] == "CANCELLED",
            within=30,
            what="the short hold expiring",
        )
        assert expired["data"]["getBooking"]["cancellationReason"] == "EXPIRED"

        # One webhook event delivered four times: the balancer spreads them over both APIs.
        fourth = await make_rental(pool)
        hold = await _reserve(system, http, fourth.apartment_id, fourth.user_id)
        event = json.dumps(
            {
                "id": f"evt-{uuid.uuid4()}",
                "bookingId": hold["id"],
                "amount": hold["amountDue"],
                "currency": hold["currency"],
                "paymentReference": f"ref-{uuid.uuid4()}",
            }
        ).encode()
        statuses: Counter[int] = Counter()
        for _ in range(4):
            headers = {
                SIGNATURE_HEADER: webhook_signature(WEBHOOK_SECRET, event, int(time.time())),
                "content-type": "application/json",
            }
            response = await http.post(
                f"{system.url}/webhooks/payments", content=event, headers=headers
            )
            statuses[response.status_code] += 1
        assert statuses == {202: 1, 409: 3}, statuses
        payments = await eventually(
            lambda: pool.fetch("SELECT outcome FROM payments WHERE booking_id = $1", hold["id"]),
            what="the webhook's payment",
        )
        assert [p["outcome"] for p in payments] == ["APPLIED"]

        # Persisted queries: the hash alone, and once the query too on a miss (per process).
        query = "query Apartment($id: ID!) { getApartment(id: $id) { id apartmentStatus } }"
        sha = hashlib.sha256(query.encode()).hexdigest()
        extensions = json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha}})
        round_trips = 0
        for _ in range(6):
            params = {
                "extensions": extensions,
                "variables": json.dumps({"id": rental.apartment_id}),
            }
            answer = (
                await http.get(
                    f"{system.url}/graphql", params=params, headers={"x-api-key": API_KEY}
                )
            ).json()
            round_trips += 1
            if answer.get("errors", [{}])[0].get("errorType") == "PersistedQueryNotFound":
                answer = (
                    await http.get(
                        f"{system.url}/graphql",
                        params={**params, "query": query},
                        headers={"x-api-key": API_KEY},
                    )
                ).json()
                round_trips += 1
            assert answer["data"]["getApartment"]["apartmentStatus"] == "OCCUPIED", answer
        assert round_trips <= 6 + 2  # at most one miss per API process

    # A subscription through the balancer sees a payment made through the other API.
    fifth = await make_rental(pool)
    async with httpx.AsyncClient(timeout=30) as http:
        booking = await _reserve(system, http, fifth.apartment_id, fifth.user_id)
    ws_url = system.url.replace("http", "ws", 1) + "/graphql"
    async with connect(ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"x-api-key": API_KEY}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {
                        "query": "subscription ($id: ID!) "
                        "{ onBookingStatusChanged(id: $id) { bookingStatus } }",
                        "variables": {"id": booking["id"]},
                    },
                }
            )
        )
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["payload"]["data"]["onBookingStatusChanged"]["bookingStatus"] == "PENDING"
        async with httpx.AsyncClient(timeout=30) as http:
            for _ in range(2):  # the balancer alternates: at least one goes to the other API
                await system.gql(http, GET, {"id": booking["id"]})
            payment = {
                "bookingId": booking["id"],
                "amount": booking["amountDue"],
                "currency": booking["currency"],
                "paymentReference": f"ref-{uuid.uuid4()}",
            }
            await system.gql(http, PAY, {"input": payment})
        change = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert change["payload"]["data"]["onBookingStatusChanged"]["bookingStatus"] == "APPROVED"


async def test_a_worker_and_an_api_killed_under_load_lose_nothing(system: ScaledOut) -> None:
    pool = system.pool
    owner = await insert_user(pool, user_type="ADMIN")
    building = await insert_building(pool, owner, apartments=40)
    pairs = [(await insert_apartment(pool, building), await insert_user(pool)) for _ in range(40)]
    outcomes: dict[str, tuple[str, str]] = {}  # apartment -> (booking id, reference)
    retries: Counter[str] = Counter()

    async def client(apartment: str, user: str) -> None:
        key, reference = f"key-{apartment}", f"ref-{apartment}"
        async with httpx.AsyncClient(timeout=30) as http:
            booking = None
            while booking is None:
                try:
                    body = await system.gql(
                        http,
                        RESERVE,
                        {
                            "input": {
                                "apartmentId": apartment,
                                "userId": user,
                                "idempotencyKey": key,
                                **_stay(),
                            }
                        },
                    )
                except (httpx.HTTPError, AssertionError) as exc:
                    retries[type(exc).__name__] += 1
                    await asyncio.sleep(0.3)
                    continue
                if body.get("errors"):
                    retries[body["errors"][0]["errorType"]] += 1
                    await asyncio.sleep(0.3)
                    continue
                booking = body["data"]["reserveApartment"]
            while True:
                try:
                    body = await system.gql(
                        http,
                        PAY,
                        {
                            "input": {
                                "bookingId": booking["id"],
                                "amount": booking["amountDue"],
                                "currency": booking["currency"],
                                "paymentReference": reference,
                            }
                        },
                    )
                except (httpx.HTTPError, AssertionError) as exc:
                    retries[type(exc).__name__] += 1
                    await asyncio.sleep(0.3)
                    continue
                if body.get("errors"):
                    retries[body["errors"][0]["errorType"]] += 1
                    await asyncio.sleep(0.3)
                    continue
                assert body["data"]["payBooking"]["bookingStatus"] == "APPROVED", body
                outcomes[apartment] = (booking["id"], reference)
                return

    async def kill_midway() -> None:
        await asyncio.sleep(1.0)
        system.stack.kill("worker-1")
        system.stack.kill("api-1")

    await asyncio.gather(*(client(a, u) for a, u in pairs), kill_midway())
    assert len(outcomes) == len(pairs)
    booking_ids = [b for b, _ in outcomes.values()]
    rows = await pool.fetch(
        """SELECT b.id, b.booking_status, a.apartment_status,
                  (SELECT count(*) FROM payments p WHERE p.booking_id = b.id
                    AND p.outcome = 'APPLIED') AS applied
             FROM bookings b
             CROSS JOIN LATERAL (SELECT * FROM apartments_on(b.start_date) o
                                  WHERE o.id = b.apartment_id) a
            WHERE b.id = ANY($1::text[])""",
        booking_ids,
    )
    assert len(rows) == len(pairs)  # one booking per apartment, none doubled
    assert {(r["booking_status"], r["apartment_status"], r["applied"]) for r in rows} == {
        ("APPROVED", "OCCUPIED", 1)
    }
    bookings_per_apartment = await pool.fetch(
        "SELECT apartment_id, count(*) FROM bookings WHERE apartment_id = ANY($1::text[]) "
        "GROUP BY apartment_id HAVING count(*) > 1",
        [a for a, _ in pairs],
    )
    assert bookings_per_apartment == []
    findings = await examine(pool, system.stack.temporal)
    assert [f for f in findings if f.booking_id in set(booking_ids)] == []
    print(f"scale out under kills: {len(pairs)} bookings, client retries {dict(retries)}")
    # The survivors carry on alone.
    assert system.stack.child("worker-2").alive() and system.stack.child("api-2").alive()
    await system.stack.restart("worker-1")
    await system.stack.restart("api-1")
