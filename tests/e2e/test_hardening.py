"""Hardening through the real API processes: query cost, truthful answers, bounded stays,
credentials that expire, key rotation, and the HTTP server's own limits.

Each test tries a class found from outside, not only the one example that was found.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from booking.webhook_signing import SIGNATURE_HEADER, webhook_signature
from tests.e2e.helpers import (
    BOOKING_FIELDS,
    PAY,
    RESERVE,
    WEBHOOK_SECRET,
    E2EStack,
    Gql,
    ServedApp,
    create_apartment,
    create_user,
    days_ahead,
    error_types,
)
from tests.helpers import eventually, insert_apartment, make_rental

pytestmark = pytest.mark.e2e

INTERNAL = ("Error:", "asyncpg", "temporalio", "Traceback", "_key", "_fkey", "constraint")


def _stay(start_in_days: int, nights: int) -> dict[str, str]:
    start = date.today() + timedelta(days=start_in_days)
    return {"startDate": start.isoformat(), "endDate": (start + timedelta(days=nights)).isoformat()}


async def _reserve(gql: Gql, apartment: str, tenant: str, **stay: str) -> dict[str, Any]:
    return await gql(
        RESERVE, {"input": {"apartmentId": apartment, "userId": tenant, **(stay or _stay(7, 60))}}
    )


# -- query cost ------------------------------------------------------------------------------


async def test_a_costly_query_is_refused_before_anything_runs(stack: E2EStack, admin: Gql) -> None:
    rental = await make_rental(stack.pool)
    for _ in range(259):  # 260 apartments, as in the report
        await insert_apartment(stack.pool, rental.building_id)
    nested = (
        f'{{getAllApartmentsPerBuilding(buildingId: "{rental.building_id}")'
        "{building{apartments{id apartmentStatus}}}}"
    )
    aliased = (
        "{"
        + " ".join(
            f'a{i}: getAllApartmentsPerBuilding(buildingId: "{rental.building_id}")'
            "{building{apartments{id apartmentStatus}}}"
            for i in range(3)
        )
        + "}"
    )
    paged = "{getAllBuildings(pagination: {limit: 100}){items{apartments{id apartmentStatus}}}}"
    stay = f'startDate: "{days_ahead(1)}", endDate: "{days_ahead(8)}"'
    searched = (
        f"{{searchApartments(input: {{{stay}, limit: 100}})"
        "{items{building{apartments{id apartmentStatus}}}}}"
    )

    async def healthz_seconds() -> float:
        async with stack.api.client() as http:
            started = time.perf_counter()
            assert (await http.get("/healthz")).status_code == 200
            return time.perf_counter() - started

    for query in (nested, aliased, paged, searched):
        attempts = [admin(query) for _ in range(3)]
        bodies, probe = await asyncio.gather(asyncio.gather(*attempts), healthz_seconds())
        for body in bodies:
            assert error_types(body) == ["ValidationError"], body
            assert "BOOKING_GRAPHQL_MAX_COST" in body["errors"][0]["message"]
            assert body["data"] is None
        assert probe < 0.5, f"/healthz waited {probe:.2f} s behind a refused query"

    # What a client really asks for passes: every apartment of the building, many fields.
    wide = await admin(
        f"""{{ getAllApartmentsPerBuilding(buildingId: "{rental.building_id}") {{
                 id apartmentNumber apartmentType apartmentStatus kitchen numberOfRooms
                 monthlyRent currency createdOn building {{ id name }} }} }}"""
    )
    assert "errors" not in wide, wide
    assert len(wide["data"]["getAllApartmentsPerBuilding"]) == 260
    # The search's page is its input's limit: ten apartments with their buildings' lists pass.
    few = await admin(
        f'{{searchApartments(input: {{{stay}, limit: 10, buildingId: "{rental.building_id}"}})'
        "{items{building{apartments{id}}}}}"
    )
    assert "errors" not in few, few
    assert len(few["data"]["searchApartments"]["items"]) == 10


async def test_a_list_longer_than_the_bound_is_refused_not_cut_short(
    stack: E2EStack, admin: Gql
) -> None:
    rental = await make_rental(stack.pool)
    async with stack.pool.acquire() as conn:
        await conn.executemany(
            """INSERT INTO apartments (id, apartment_number, building_id, apartment_type,
                                       kitchen, number_of_rooms, monthly_rent, currency)
               VALUES ($1, $1, $2, 'SINGLE_ROOM', true, 1, 1000, 'EUR')""",
            [(f"{rental.building_id}-{i}", rental.building_id) for i in range(500)],
        )
    body = await admin(
        f'{{ getAllApartmentsPerBuilding(buildingId: "{rental.building_id}") {{ id }} }}'
    )
    assert error_types(body) == ["ResultTooLarge"], body
    assert "500" in body["errors"][0]["message"]


async def test_several_operations_need_an_operation_name(admin: Gql) -> None:
    document = 'query A { __typename } mutation B { deleteUserAccount(id: "nobody") }'
    body = await admin(document)
    assert error_types(body) == ["ValidationError"]
    assert "operationName" in body["errors"][0]["message"]
    named = await admin.http.post("/graphql", json={"query": document, "operationName": "A"})
    assert named.json() == {"data": {"__typename": "Query"}}


# -- bounded stays and the price of one ------------------------------------------------------


@pytest.mark.parametrize(
    "stay",
    [
        {"startDate": "2027-01-01", "endDate": "9999-12-31"},
        {"startDate": "9999-01-01", "endDate": "9999-02-01"},
        _stay(7, 1831),
        _stay(-1, 30),
    ],
    ids=["till-9999", "starts-in-9999", "over-max-stay", "in-the-past"],
)
async def test_stays_beyond_the_bounds_are_refused(admin: Gql, stay: dict[str, str]) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    body = await _reserve(admin, apartment, tenant, **stay)
    assert error_types(body) == ["ValidationError"], body
    status = await admin(
        "query ($id: ID!) { getApartment(id: $id) { apartmentStatus } }", {"id": apartment}
    )
    assert status["data"]["getApartment"]["apartmentStatus"] == "VACANT"


@pytest.mark.parametrize(
    ("nights", "due"),
    [(3, 12_346), (29, 119_341), (30, 123_456), (365, 123_456), (1830, 123_456)],
)
async def test_amount_due_is_one_months_rent_prorated_for_short_stays(
    admin: Gql, nights: int, due: int
) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=123_456)
    body = await _reserve(admin, apartment, tenant, **_stay(7, nights))
    assert "errors" not in body, body
    # ceil(123,456 x nights / 30) for a stay under 30 nights, one month's rent from there on.
    assert body["data"]["reserveApartment"]["amountDue"] == due


# -- truthful answers about money ------------------------------------------------------------


def _signed(payload: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(payload).encode()
    return body, {
        SIGNATURE_HEADER: webhook_signature(WEBHOOK_SECRET, body, int(time.time())),
        "content-type": "application/json",
    }


async def test_a_reference_refunded_by_the_webhook_cannot_pay_later(
    stack: E2EStack, admin: Gql
) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=50_000)
    booking = (await _reserve(admin, apartment, tenant))["data"]["reserveApartment"]
    reference = f"ref-{uuid.uuid4().hex}"
    body, headers = _signed(
        {
            "id": f"evt-{uuid.uuid4()}",
            "bookingId": booking["id"],
            "amount": 1,
            "currency": "EUR",
            "paymentReference": reference,
        }
    )
    async with stack.api.client() as http:
        assert (
            await http.post("/webhooks/payments", content=body, headers=headers)
        ).status_code == 202
    await eventually(
        lambda: stack.pool.fetchval(
            "SELECT count(*) FROM refunds WHERE booking_id = $1", booking["id"]
        ),
        what="the wrong amount's refund",
    )
    paid = await admin(
        PAY,
        {
            "input": {
                "bookingId": booking["id"],
                "amount": 50_000,
                "currency": "EUR",
                "paymentReference": reference,
            }
        },
    )
    assert error_types(paid) == ["PaymentRejected"], paid
    assert paid["data"] is None
    applied = await stack.pool.fetchval(
        "SELECT count(*) FROM payments WHERE booking_id = $1 AND outcome = 'APPLIED'",
        booking["id"],
    )
    assert applied == 0


async def test_one_tenants_reference_never_blocks_anothers(stack: E2EStack, admin: Gql) -> None:
    reference = f"my-first-payment-{uuid.uuid4().hex[:6]}"
    for _ in range(2):  # two tenants, two apartments, the same reference
        tenant = await create_user(admin)
        _, apartment = await create_apartment(admin, rent=70_000)
        booking = (await _reserve(admin, apartment, tenant))["data"]["reserveApartment"]
        async with stack.api.client(stack.bearer(tenant, "Tenants")) as http:
            paid = await Gql(http)(
                PAY,
                {
                    "input": {
                        "bookingId": booking["id"],
                        "amount": 70_000,
                        "currency": "EUR",
                        "paymentReference": reference,
                    }
                },
            )
        assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid


@pytest.mark.parametrize("bad", ["\x00", "\x07bell", "esc\x1b[31m", "tab\there", "\x85next"])
async def test_control_characters_are_refused_in_every_id_and_reference(
    admin: Gql, bad: str
) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    for field, value in (("apartmentId", bad), ("userId", bad), ("idempotencyKey", bad)):
        values = {"apartmentId": apartment, "userId": tenant, **_stay(7, 60), field: value}
        body = await admin(RESERVE, {"input": values})
        assert error_types(body) == ["ValidationError"], (field, body)
        assert "control characters" in body["errors"][0]["message"]
        assert not any(marker in body["errors"][0]["message"] for marker in INTERNAL)
    booking = (await _reserve(admin, apartment, tenant))["data"]["reserveApartment"]
    paid = await admin(
        PAY,
        {
            "input": {
                "bookingId": booking["id"],
                "amount": booking["amountDue"],
                "currency": "EUR",
                "paymentReference": f"ref{bad}",
            }
        },
    )
    assert error_types(paid) == ["ValidationError"], paid
    assert not any(marker in paid["errors"][0]["message"] for marker in INTERNAL)


# -- sessions and keys ----------------------------------------------------------------------


SUBSCRIPTION = (
    f"subscription ($id: ID!) {{ onBookingStatusChanged(id: $id) {{ {BOOKING_FIELDS} }} }}"
)


async def test_a_subscription_ends_when_its_token_expires(stack: E2EStack, admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    booking = (await _reserve(admin, apartment, tenant))["data"]["reserveApartment"]
    token = stack.token(tenant, ["Tenants"], ttl=3)
    started = time.monotonic()
    async with connect(stack.api.ws_url, subprotocols=[Subprotocol("graphql-transport-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(
            json.dumps(
                {
                    "id": "1",
                    "type": "subscribe",
                    "payload": {"query": SUBSCRIPTION, "variables": {"id": booking["id"]}},
                }
            )
        )
        first = json.loads(await ws.recv())
        assert first["payload"]["data"]["onBookingStatusChanged"]["bookingStatus"] == "PENDING"
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401
    # Closed at the expiry (3 s, plus the token's 5 s of leeway at most), not never.
    assert time.monotonic() - started < 10


@pytest.fixture
async def rotating_jwks() -> AsyncIterator[tuple[str, list[dict[str, Any]], list[int]]]:
    """A JWKS endpoint whose keys the test changes, counting how often it is fetched."""
    keys: list[dict[str, Any]] = []
    fetches = [0]

    async def jwks(_request: Request) -> JSONResponse:
        fetches[0] += 1
        return JSONResponse({"keys": keys})

    async with ServedApp(Starlette(routes=[Route("/jwks.json", jwks)])) as served:
        yield f"{served.url}/jwks.json", keys, fetches


def _jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {**public, "kid": kid, "alg": "RS256", "use": "sig"}


def _rs256(key: rsa.RSAPrivateKey, kid: str, sub: str = "rotating-user") -> str:
    claims = {"sub": sub, "cognito:groups": ["Tenants"], "exp": int(time.time()) + 300}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def test_a_key_published_after_start_is_used_and_made_up_kids_cost_little(
    stack: E2EStack, rotating_jwks: tuple[str, list[dict[str, Any]], list[int]]
) -> None:
    url, keys, fetches = rotating_jwks
    first = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys.append(_jwk(first, "key-1"))
    api = await stack.extra_api("api-jwks", BOOKING_JWKS_URL=url)
    query = {"query": "{ __typename }"}
    try:
        async with api.client() as http:

            async def status(token: str) -> int:
                response = await http.post("/graphql", json=query, headers={"Authorization": token})
                return response.status_code

            assert await status(_rs256(first, "key-1")) == 200
            # The provider rotates: a new key appears. No restart of the API.
            second = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            keys.append(_jwk(second, "key-2"))
            assert (
                await eventually(
                    lambda: status(_rs256(second, "key-2")),
                    lambda code: code == 200,
                    within=15,
                    interval=1,
                    what="a token signed with the new key being accepted",
                )
                == 200
            )
            # A flood of tokens with made-up kids: each refused, the JWKS hardly fetched.
            before = fetches[0]
            started = time.monotonic()
            for i in range(40):
                assert await status(_rs256(first, f"made-up-{i}")) == 401
            minutes = (time.monotonic() - started) / 60
            assert fetches[0] - before <= 1 + 6 * minutes + 1, (fetches[0] - before, minutes)
    finally:
        stack.stop_api("api-jwks")


# -- the HTTP server's own limits --------------------------------------------------------------


async def _open_raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def test_a_client_trickling_its_headers_is_cut_off(stack: E2EStack) -> None:
    reader, writer = await _open_raw(stack.api.url)
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: api\r\n")  # ... and never the blank line
    await writer.drain()
    started = time.monotonic()
    closed = await asyncio.wait_for(reader.read(), 15)  # EOF once the server closes
    writer.close()
    assert closed == b""
    assert 1.5 < time.monotonic() - started < 6  # BOOKING_HTTP_HEADER_TIMEOUT_SECONDS=2


async def test_connections_beyond_the_limit_get_503_at_once(stack: E2EStack) -> None:
    api = await stack.extra_api("api-limited", BOOKING_HTTP_MAX_CONNECTIONS="4")
    held = [await _open_raw(api.url) for _ in range(4)]
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            response = await http.get(f"{api.url}/healthz")
        assert response.status_code == 503
    finally:
        for _, writer in held:
            writer.close()
        stack.stop_api("api-limited")
