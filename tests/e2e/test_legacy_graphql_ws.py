"""The legacy Apollo ``graphql-ws`` protocol on /graphql, for older Apollo clients.

(A real client of it, gql's WebsocketsTransport, subscribes in test_appsync_clients.py.)
Same rules as graphql-transport-ws: credentials in connection_init, every message's shape
checked before Strawberry reads it, errors AppSync-shaped.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from tests.e2e.helpers import (
    APPSYNC_ERROR_KEYS,
    RESERVE,
    E2EStack,
    Gql,
    bad_credentials,
    create_apartment,
    create_user,
    reserve_input,
)

pytestmark = pytest.mark.e2e

APOLLO = Subprotocol("graphql-ws")
SUBSCRIPTION = "subscription ($id: ID!) { onBookingStatusChanged(id: $id) { id bookingStatus } }"


async def opened(stack: E2EStack, payload: dict[str, Any]) -> ClientConnection:
    ws = await connect(stack.api.ws_url, subprotocols=[APOLLO])
    assert ws.subprotocol == "graphql-ws"
    await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
    return ws


async def receive(ws: ClientConnection, within: float = 10) -> dict[str, Any]:
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") != "ka":
                return dict(message)


async def test_subscribe_and_stop(stack: E2EStack, admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=3_100)
    booking = (await admin(RESERVE, reserve_input(apartment, tenant)))["data"]["reserveApartment"]
    ws = await opened(stack, {"Authorization": stack.token(tenant, ["Tenants"])})
    async with ws:
        assert (await receive(ws))["type"] == "connection_ack"
        start = {"query": SUBSCRIPTION, "variables": {"id": booking["id"]}}
        await ws.send(json.dumps({"id": "1", "type": "start", "payload": start}))
        data = await receive(ws)
        assert data["type"] == "data" and data["id"] == "1"
        assert data["payload"]["data"]["onBookingStatusChanged"]["bookingStatus"] == "PENDING"
        await ws.send(json.dumps({"id": "1", "type": "stop"}))
        assert await receive(ws) == {"type": "complete", "id": "1"}


@pytest.mark.parametrize("case", list(bad_credentials()))
async def test_bad_credentials_get_connection_error_and_a_close(stack: E2EStack, case: str) -> None:
    ws = await opened(stack, bad_credentials()[case])
    async with ws:
        refused = await receive(ws)
        assert refused["type"] == "connection_error"
        assert refused["payload"]["errors"][0]["errorType"] == "UnauthorizedException"
        with pytest.raises(ConnectionClosed):
            await receive(ws)


MALFORMED = {
    "not an object": [1, 2],
    "no type": {"id": "1"},
    "type a number": {"type": 5},
    "start without id": {"type": "start", "payload": {"query": SUBSCRIPTION}},
    "start id a number": {"type": "start", "id": 3, "payload": {"query": SUBSCRIPTION}},
    "start without payload": {"type": "start", "id": "1"},
    "query not a string": {"type": "start", "id": "1", "payload": {"query": ["x"]}},
    "variables a list": {
        "type": "start",
        "id": "1",
        "payload": {"query": SUBSCRIPTION, "variables": [1]},
    },
    "stop without id": {"type": "stop"},
}


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_message_closes_with_4400(stack: E2EStack, case: str) -> None:
    ws = await opened(stack, stack.key)
    async with ws:
        assert (await receive(ws))["type"] == "connection_ack"
        await ws.send(json.dumps(MALFORMED[case]))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400, case


async def test_errors_are_appsync_shaped(stack: E2EStack, admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=3_200)
    booking = (await admin(RESERVE, reserve_input(apartment, tenant)))["data"]["reserveApartment"]
    ws = await opened(stack, {"Authorization": stack.token("intruder", ["Tenants"])})
    async with ws:
        assert (await receive(ws))["type"] == "connection_ack"
        invalid = {"query": "subscription { onBookingStatusChanged { id } }"}
        await ws.send(json.dumps({"id": "bad", "type": "start", "payload": invalid}))
        error = await receive(ws)
        assert error["type"] == "error" and error["id"] == "bad"
        assert error["payload"]["errorType"] == "ValidationError"
        assert set(error["payload"]) == APPSYNC_ERROR_KEYS
        theirs = {"query": SUBSCRIPTION, "variables": {"id": booking["id"]}}
        await ws.send(json.dumps({"id": "theirs", "type": "start", "payload": theirs}))
        refused = await receive(ws)
        assert refused["payload"]["data"] is None
        assert [e["errorType"] for e in refused["payload"]["errors"]] == ["Unauthorized"]
