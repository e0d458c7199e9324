"""What the end-to-end tests share: the system's handle, a GraphQL caller, data made through
the API, and :class:`ServedApp` for the few tests that need an API of their own.

The system itself is built by ``tests/e2e/conftest.py`` (the ``stack`` fixture).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from playwright.async_api import Page, expect
from temporalio.client import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from booking.devstack.net import free_port
from booking.devstack.stack import Stack
from booking.settings import Settings
from booking.tokens import mint_token
from tests.helpers import Rental

API_KEY = "e2e-api-key-0123456789"
JWT_SECRET = "e2e-jwt-secret-0123456789abcdef-0123456789"
WEBHOOK_SECRET = "e2e-webhook-secret-0123456789abcdef"
RSA_KID = "e2e-rsa-key"
# Headless, and nothing that would reach for the internet (this machine has none).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass
class Api:
    url: str
    ws_url: str
    settings: Settings
    log_file: Path | None = None

    def client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=headers or {}, timeout=30)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file else ""


@dataclass
class E2EStack:
    """The running system: two API processes, a worker process, Temporal and Postgres."""

    api: Api
    api2: Api  # a second API process (own pool, own LISTEN connection)
    pool: asyncpg.Pool
    client: Client
    settings: Settings
    rsa_private_key: rsa.RSAPrivateKey
    parts: Stack
    env: dict[str, str]  # the API processes' environment
    mailbox_dir: Path  # what the worker mailed: one .eml per message (booking.maildir)

    async def extra_api(self, name: str, **values: str) -> Api:
        """One more ``booking api`` process, with ``values`` over the stack's environment
        (with BOOKING_TLS_CERTFILE, it serves HTTPS: its CA must be in ``parts.tls_verify``)."""
        env = {**self.env, **values}
        settings = Settings.model_validate(env)
        process = self.parts.spawn_api(
            env,
            name=name,
            log_file=self.parts.root / f"{name}.log",
            scheme="https" if settings.tls else "http",
        )
        await self.parts.wait_ready([name])
        ws_url = process.url.replace("http", "ws", 1) + "/graphql"
        return Api(process.url, ws_url, settings, process.child.log_file)

    def stop_api(self, name: str) -> None:
        self.parts.stop_part(name)

    def token(self, user_id: str, groups: list[str], ttl: int = 600) -> str:
        return mint_token(JWT_SECRET, user_id, groups, ttl_seconds=ttl)

    def bearer(self, user_id: str, *groups: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, list(groups))}"}

    @property
    def key(self) -> dict[str, str]:
        return {"x-api-key": API_KEY}


class ServedApp:
    """An ASGI app of the test's own (an API in an unusual configuration, a JWKS endpoint) on
    a free port, served by uvicorn in this event loop."""

    def __init__(self, app: Any, *, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> ServedApp:
        self.task = asyncio.create_task(self.server.serve())
        async with asyncio.timeout(30):
            while not self.server.started:
                if self.task.done():
                    self.task.result()
                await asyncio.sleep(0.05)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(self.task, 15)


@dataclass
class Gql:
    """POST a GraphQL operation; return the parsed body (and keep the response)."""

    http: httpx.AsyncClient

    async def __call__(
        self, query: str, variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        response = await self.http.post(
            "/graphql", json={"query": query, "variables": variables or {}}, **kwargs
        )
        self.last = response
        body: dict[str, Any] = response.json()
        return body


# -- data made through the API itself ------------------------------------------------------

USER_FIELDS = "id firstName lastName email verified userType createdOn updatedOn"
BOOKING_FIELDS = (
    "id userId apartmentId startDate endDate bookingStatus updateOn createdOn amountDue "
    "currency holdExpiresAt paidAt cancellationReason workflowId"
)


async def create_user(gql: Gql, user_type: str = "TENANT", user_id: str | None = None) -> str:
    user_id = user_id or f"user-{uuid.uuid4().hex[:12]}"
    body = await gql(
        """mutation ($input: UserInput!) { createUserAccount(input: $input) { id } }""",
        {
            "input": {
                "id": user_id,
                "firstName": "Eve",
                "lastName": "End-to-End",
                "email": f"{user_id}@example.com",
                "verified": True,
                "userType": user_type,
            }
        },
    )
    assert "errors" not in body, body
    created: str = body["data"]["createUserAccount"]["id"]
    return created


async def create_apartment(
    gql: Gql, *, rent: int = 125_000, currency: str = "EUR", owner: str | None = None
) -> tuple[str, str]:
    """A new building with one VACANT apartment: (building id, apartment id)."""
    owner = owner or await create_user(gql, "ADMIN")
    body = await gql(
        """mutation ($input: BuildingInput!) { createBuilding(input: $input) { id } }""",
        {
            "input": {
                "name": "E2E House",
                "userId": owner,
                "numberOfApartments": 1,
                "address": {
                    "streetAddress": "1 Test Street",
                    "postalCode": "10115",
                    "city": "Berlin",
                    "country": "DE",
                },
            }
        },
    )
    assert "errors" not in body, body
    building_id: str = body["data"]["createBuilding"]["id"]
    body = await gql(
        """mutation ($input: ApartmentInput) { createApartment(input: $input) { id } }""",
        {
            "input": {
                "apartmentNumber": "1A",
                "buildingId": building_id,
                "numberOfRooms": 2,
                "kitchen": True,
                "apartmentType": "DOUBLE_ROOM",
                "apartmentStatus": "VACANT",
                "monthlyRent": rent,
                "currency": currency,
            }
        },
    )
    assert "errors" not in body, body
    apartment_id: str = body["data"]["createApartment"]["id"]
    return building_id, apartment_id


RESERVE = f"""
mutation ($input: ReserveApartmentInput!) {{
  reserveApartment(input: $input) {{ {BOOKING_FIELDS} }}
}}
"""
PAY = f"""
mutation ($input: PayBookingInput!) {{ payBooking(input: $input) {{ {BOOKING_FIELDS} }} }}
"""
CANCEL = f"""mutation ($id: ID!) {{ cancelBooking(id: $id) {{ {BOOKING_FIELDS} }} }}"""
APARTMENT_STATUS = (
    """query ($id: ID!) { getApartment(id: $id) { apartmentStatus tenant { id } } }"""
)


async def paid_lease(
    admin: Gql, tenant: str, apartment: str, nights: int, reference: str | None = None
) -> dict[str, Any]:
    """A stay of ``nights`` from tonight, reserved and paid (``reference``) through the API."""
    body = await admin(
        RESERVE,
        {
            "input": {
                "apartmentId": apartment,
                "userId": tenant,
                "startDate": days_ahead(0),
                "endDate": days_ahead(nights),
            }
        },
    )
    booking: dict[str, Any] = body["data"]["reserveApartment"]
    payment = {
        "bookingId": booking["id"],
        "amount": booking["amountDue"],
        "currency": "EUR",
        "paymentReference": reference or f"ref-{uuid.uuid4()}",
    }
    paid = await admin(PAY, {"input": payment})
    assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid
    return booking


def reserve_input(apartment_id: str, user_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "input": {
            "apartmentId": apartment_id,
            "userId": user_id,
            # From tonight: the apartment's status (read for today) shows the stay at once.
            "startDate": days_ahead(0),
            "endDate": days_ahead(181),
            **extra,
        }
    }


def days_ahead(days: int) -> str:
    """An AWSDate ``days`` from today."""
    return (date.today() + timedelta(days=days)).isoformat()


def error_types(body: dict[str, Any]) -> list[str]:
    return [e["errorType"] for e in body.get("errors", [])]


APPSYNC_ERROR_KEYS = {"message", "errorType", "errorInfo", "path", "locations", "data"}


def claims(**overrides: Any) -> dict[str, Any]:
    """JWT claims of an admin, valid for ten minutes, with ``overrides``."""
    values: dict[str, Any] = {
        "sub": "someone",
        "cognito:groups": ["Admins"],
        "exp": int(time.time()) + 600,
    }
    values.update(overrides)
    return values


def hs256_over(payload_json: str, secret: str = JWT_SECRET) -> str:
    """An HS256 token over this exact JSON text (PyJWT would refuse to write some of it)."""

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(payload_json.encode())
    signature = hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def bad_credentials() -> dict[str, dict[str, str]]:
    """Every kind of missing or invalid credential, as headers: each must get 401."""
    return {
        "none": {},
        "wrong-api-key": {"x-api-key": "not-a-key"},
        "empty-authorization": {"Authorization": ""},
        "forged-jwt": {
            "Authorization": jwt.encode(claims(), "forger-secret-0123456789abcdef-0123456789")
        },
        "expired-jwt": {
            "Authorization": jwt.encode(claims(exp=int(time.time()) - 120), JWT_SECRET)
        },
        "alg-none": {"Authorization": jwt.encode(claims(), "", algorithm="none")},
        "tampered": {
            "Authorization": jwt.encode(claims(), JWT_SECRET)[:-4] + "AAAA",
        },
    }


# -- graphql-transport-ws ----------------------------------------------------------------

TRANSPORT_WS = Subprotocol("graphql-transport-ws")


async def open_transport_ws(url: str, payload: dict[str, Any]) -> ClientConnection:
    """A graphql-transport-ws connection, initialised with ``payload`` and acknowledged."""
    ws = await connect(url, subprotocols=[TRANSPORT_WS])
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
    assert ack["type"] == "connection_ack", ack
    return ws


async def next_message(ws: ClientConnection, within: float = 10) -> dict[str, Any]:
    """The next message that is not a ping or pong."""
    while True:
        message = json.loads(await asyncio.wait_for(ws.recv(), within))
        if message["type"] in ("ping", "pong"):
            continue
        return dict(message)


# -- the tenant page in Chromium ---------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_MS = 20_000


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"web-{name}.png"), full_page=True)


async def open_signed_in(page: Page, stack: E2EStack, rental: Rental, query: str = "") -> None:
    await page.goto(f"{stack.api.url}/?building={rental.building_id}{query}")
    await page.get_by_test_id("token-input").fill(stack.token(rental.user_id, ["Tenants"]))
    await page.get_by_test_id("sign-in").click()
    await expect(page.get_by_test_id("whoami")).to_contain_text(rental.user_id)


# -- one subscription over each of the three WebSocket protocols the API speaks ---------------

GRAPHQL_WS = Subprotocol("graphql-ws")
# Reads the subscription's next message payload ({"data": ...} or {"errors": ...}).
Follow = Callable[[ClientConnection], Awaitable[dict[str, Any]]]
Subscriber = Callable[[str, str, str, dict[str, Any]], Awaitable[tuple[ClientConnection, Follow]]]


async def subscribe_transport_ws(
    url: str, token: str, query: str, variables: dict[str, Any]
) -> tuple[ClientConnection, Follow]:
    """graphql-transport-ws (graphql-ws the library, Apollo's current clients)."""
    ws = await open_transport_ws(url, {"Authorization": token})
    payload = {"query": query, "variables": variables, "operationName": "S"}
    await ws.send(json.dumps({"id": "op", "type": "subscribe", "payload": payload}))

    async def follow(conn: ClientConnection) -> dict[str, Any]:
        message = await next_message(conn)
        assert message["type"] == "next" and message["id"] == "op", message
        return dict(message["payload"])

    return ws, follow


async def subscribe_graphql_ws(
    url: str, token: str, query: str, variables: dict[str, Any]
) -> tuple[ClientConnection, Follow]:
    """The legacy subscriptions-transport-ws protocol (``graphql-ws`` subprotocol)."""
    ws = await connect(url, subprotocols=[GRAPHQL_WS])
    await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": token}}))
    start = {"query": query, "variables": variables, "operationName": "S"}
    await ws.send(json.dumps({"id": "op", "type": "start", "payload": start}))

    async def follow(conn: ClientConnection) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(conn.recv(), 10))
            if message["type"] not in ("ka", "connection_ack"):
                assert message["type"] == "data" and message["id"] == "op", message
                return dict(message["payload"])

    return ws, follow


async def subscribe_appsync(
    url: str, token: str, query: str, variables: dict[str, Any]
) -> tuple[ClientConnection, Follow]:
    """AppSync's real-time protocol (``/graphql/realtime``, the header in the URL)."""
    auth = {"host": url.split("://", 1)[1].split("/", 1)[0], "Authorization": token}
    header = base64.b64encode(json.dumps(auth).encode()).decode()
    ws = await connect(f"{url}/realtime?header={header}&payload=e30=", subprotocols=[GRAPHQL_WS])
    await ws.send(json.dumps({"type": "connection_init"}))
    data = json.dumps({"query": query, "variables": variables, "operationName": "S"})
    await ws.send(json.dumps({"id": "op", "type": "start", "payload": {"data": data}}))

    async def follow(conn: ClientConnection) -> dict[str, Any]:
        while True:
            message = json.loads(await asyncio.wait_for(conn.recv(), 10))
            if message["type"] in ("data", "error"):
                assert message["id"] == "op", message
                return dict(message["payload"])

    return ws, follow


SUBSCRIBERS: dict[str, Subscriber] = {
    "graphql-transport-ws": subscribe_transport_ws,
    "graphql-ws": subscribe_graphql_ws,
    "appsync": subscribe_appsync,
}
