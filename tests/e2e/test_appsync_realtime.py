"""AppSync's real-time protocol on /graphql/realtime, spoken frame by frame over a real socket.

The real clients (Amplify JS, gql's AppSyncWebsocketsTransport) are in test_appsync_clients.py;
here every rule of the protocol is tried on its own, including what those clients never send.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Awaitable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from api import realtime
from api.app import create_app
from api.realtime import CONNECTION_TIMEOUT_MS, MAX_SUBSCRIPTIONS_PER_CONNECTION
from tests.e2e.helpers import (
    PAY,
    RESERVE,
    E2EStack,
    Gql,
    ServedApp,
    bad_credentials,
    create_apartment,
    create_user,
    reserve_input,
)

pytestmark = pytest.mark.e2e

GRAPHQL_WS = Subprotocol("graphql-ws")
SUBSCRIPTION = (
    "subscription ($id: ID!) { onBookingStatusChanged(id: $id) { id bookingStatus user { id } } }"
)


def realtime_url(stack: E2EStack) -> str:
    return stack.api.ws_url + "/realtime"


def host(stack: E2EStack) -> str:
    return stack.api.url.split("://", 1)[1]


def b64(value: object, *, url_safe: bool = False, padding: bool = True) -> str:
    raw = json.dumps(value).encode()
    text = (base64.urlsafe_b64encode if url_safe else base64.b64encode)(raw).decode()
    return text if padding else text.rstrip("=")


async def open_with_query(stack: E2EStack, auth: dict[str, str]) -> ClientConnection:
    """Credentials as ?header=&payload= (older Amplify, gql)."""
    url = f"{realtime_url(stack)}?header={b64({'host': host(stack), **auth})}&payload=e30="
    return await connect(url, subprotocols=[GRAPHQL_WS])


async def open_with_subprotocol(stack: E2EStack, auth: dict[str, str]) -> ClientConnection:
    """Credentials as a header-<base64url, no padding> subprotocol (Amplify v6)."""
    encoded = b64({"host": host(stack), **auth}, url_safe=True, padding=False)
    return await connect(
        realtime_url(stack), subprotocols=[GRAPHQL_WS, Subprotocol(f"header-{encoded}")]
    )


async def initialised(ws: Connection) -> dict[str, Any]:
    await ws.send(json.dumps({"type": "connection_init"}))
    return await receive(ws)


async def receive(ws: Connection, within: float = 10) -> dict[str, Any]:
    """The next frame that is not a keep-alive, within ``within`` seconds in all."""
    async with asyncio.timeout(within):
        while True:
            message = json.loads(await ws.recv())
            if message.get("type") != "ka":
                return dict(message)


def start(op: str, booking_id: str, auth: dict[str, str] | None, **extra: Any) -> str:
    payload: dict[str, Any] = {
        "data": json.dumps({"query": SUBSCRIPTION, "variables": {"id": booking_id}})
    }
    if auth is not None:
        payload["extensions"] = {"authorization": auth}
    return json.dumps({"id": op, "type": "start", "payload": payload, **extra})


async def booking_of_new_tenant(admin: Gql, rent: int) -> tuple[str, str]:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=rent)
    body = await admin(RESERVE, reserve_input(apartment, tenant))
    return tenant, body["data"]["reserveApartment"]["id"]


async def pay(admin: Gql, booking_id: str, amount: int) -> None:
    paid = await admin(
        PAY,
        {
            "input": {
                "bookingId": booking_id,
                "amount": amount,
                "currency": "EUR",
                "paymentReference": f"rt-{uuid.uuid4()}",
            }
        },
    )
    assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid


async def test_api_key_in_query_parameters_sees_pending_then_approved(
    stack: E2EStack, admin: Gql
) -> None:
    tenant, booking_id = await booking_of_new_tenant(admin, 1_100)
    auth = {"host": host(stack), **stack.key}
    async with await open_with_query(stack, stack.key) as ws:
        assert ws.subprotocol == "graphql-ws"
        ack = await initialised(ws)
        assert ack == {"type": "connection_ack", "payload": {"connectionTimeoutMs": 300_000}}
        # AppSync sends a keep-alive right after the ack, then one well inside the timeout.
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ka"}
        await ws.send(start("sub-1", booking_id, auth))
        assert await receive(ws) == {"id": "sub-1", "type": "start_ack"}
        first = await receive(ws)
        assert first == {
            "id": "sub-1",
            "type": "data",
            "payload": {
                "data": {
                    "onBookingStatusChanged": {
                        "id": booking_id,
                        "bookingStatus": "PENDING",
                        "user": {"id": tenant},
                    }
                }
            },
        }
        await pay(admin, booking_id, 1_100)
        second = await receive(ws)
        assert second["payload"]["data"]["onBookingStatusChanged"]["bookingStatus"] == "APPROVED"
        await ws.send(json.dumps({"id": "sub-1", "type": "stop"}))
        assert await receive(ws) == {"id": "sub-1", "type": "complete"}


@pytest.mark.parametrize("bearer", ["", "Bearer "])
async def test_tenant_jwt_in_subprotocol_subscribes_to_own_booking(
    stack: E2EStack, admin: Gql, bearer: str
) -> None:
    tenant, booking_id = await booking_of_new_tenant(admin, 1_200)
    auth = {"Authorization": bearer + stack.token(tenant, ["Tenants"])}
    async with await open_with_subprotocol(stack, auth) as ws:
        assert ws.subprotocol == "graphql-ws"
        assert (await initialised(ws))["type"] == "connection_ack"
        await ws.send(start("a", booking_id, {"host": host(stack), **auth}))
        assert (await receive(ws))["type"] == "start_ack"
        data = await receive(ws)
        assert data["payload"]["data"]["onBookingStatusChanged"]["user"] == {"id": tenant}


async def test_keepalive_arrives_well_inside_the_connection_timeout(stack: E2EStack) -> None:
    keepalive = stack.settings.ws_keepalive_seconds
    assert keepalive * 1000 < CONNECTION_TIMEOUT_MS / 4
    async with await open_with_query(stack, stack.key) as ws:
        await initialised(ws)
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ka"}
        assert json.loads(await asyncio.wait_for(ws.recv(), keepalive + 5)) == {"type": "ka"}


# Encodings of the authorization object that are not one; then every bad credential of the
# HTTP auth matrix (tests/e2e/helpers.py), in both forms clients send it.
BAD_ENCODINGS = {
    "none": None,
    "header not base64": "%%%not-base64%%%",
    "header not JSON": base64.b64encode(b"not json").decode(),
    "header a JSON list": b64(["x-api-key", "k"]),
    "header too long": "A" * 8_100,
}


@pytest.mark.parametrize("case", list(BAD_ENCODINGS))
async def test_unreadable_credentials_refuse_the_upgrade_with_401(
    stack: E2EStack, case: str
) -> None:
    header = BAD_ENCODINGS[case]
    url = realtime_url(stack) + ("" if header is None else f"?header={header}&payload=e30=")
    await _refused_with_401(connect(url, subprotocols=[GRAPHQL_WS]))


@pytest.mark.parametrize("form", ["query", "subprotocol"])
@pytest.mark.parametrize("case", list(bad_credentials()))
async def test_bad_credentials_refuse_the_upgrade_with_401(
    stack: E2EStack, case: str, form: str
) -> None:
    auth = bad_credentials()[case]
    opener = open_with_query if form == "query" else open_with_subprotocol
    await _refused_with_401(opener(stack, auth))


async def test_undecodable_subprotocol_credentials_refuse_the_upgrade_with_401(
    stack: E2EStack,
) -> None:
    for value in ("header-!!!", "header-", "header-" + "A" * 8_100):
        subprotocols = [GRAPHQL_WS, Subprotocol(value)]
        await _refused_with_401(connect(realtime_url(stack), subprotocols=subprotocols))


async def _refused_with_401(opening: Awaitable[ClientConnection]) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await opening
    response = refused.value.response
    assert response.status_code == 401
    body = json.loads(response.body or b"{}")
    assert body["errors"][0]["errorType"] == "UnauthorizedException"
    assert body["errors"][0]["errorCode"] == 401
    assert body["errors"][0]["message"]


@pytest.mark.parametrize("where", ["url", "header"])
async def test_an_upgrade_too_long_for_the_websocket_parser_is_answered_400(
    stack: E2EStack, where: str
) -> None:
    """Not left hanging until the client's own timeout."""
    url = realtime_url(stack) + ("?header=" + "A" * 9_000 if where == "url" else "")
    headers = {"x-padding": "B" * 9_000} if where == "header" else {}
    with pytest.raises(InvalidStatus) as refused:
        await asyncio.wait_for(
            connect(url, subprotocols=[GRAPHQL_WS], additional_headers=headers), 5
        )
    assert refused.value.response.status_code == 400


async def test_without_the_graphql_ws_subprotocol_the_upgrade_is_refused(stack: E2EStack) -> None:
    url = f"{realtime_url(stack)}?header={b64({'host': 'h', **stack.key})}&payload=e30="
    with pytest.raises(InvalidStatus) as refused:
        await connect(url)
    assert refused.value.response.status_code == 400


async def test_other_tenants_booking_gets_unauthorized_error_and_never_data(
    stack: E2EStack, admin: Gql
) -> None:
    _, booking_id = await booking_of_new_tenant(admin, 1_300)
    intruder = {"Authorization": stack.token("intruder", ["Tenants"])}
    async with await open_with_subprotocol(stack, intruder) as ws:
        await initialised(ws)
        await ws.send(start("x", booking_id, intruder))
        refused = await receive(ws)
        assert refused["type"] == "error" and refused["id"] == "x", refused
        assert [e["errorType"] for e in refused["payload"]["errors"]] == ["Unauthorized"]
        # Nothing follows for it, not even when the booking changes.
        await pay(admin, booking_id, 1_300)
        with pytest.raises(TimeoutError):
            await receive(ws, within=1.5)


async def test_start_runs_as_the_caller_its_authorization_names(
    stack: E2EStack, admin: Gql
) -> None:
    """A connection opened with the API key, a start that names an intruding tenant."""
    _, booking_id = await booking_of_new_tenant(admin, 1_400)
    async with await open_with_query(stack, stack.key) as ws:
        await initialised(ws)
        intruder = {"Authorization": stack.token("intruder", ["Tenants"])}
        await ws.send(start("y", booking_id, intruder))
        refused = await receive(ws)
        assert refused["type"] == "error"
        assert refused["payload"]["errors"][0]["errorType"] == "Unauthorized"
        await ws.send(start("z", booking_id, {"x-api-key": "wrong-key-0123456789"}))
        refused = await receive(ws)
        assert refused["type"] == "error" and refused["id"] == "z"
        assert refused["payload"]["errors"][0]["errorType"] == "UnauthorizedException"


def _messages(booking_id: str) -> dict[str, tuple[str, str]]:
    """Frames the protocol does not allow -> (expected errorType, expected id or '')."""
    data = json.dumps({"query": SUBSCRIPTION, "variables": {"id": booking_id}})
    return {
        "not an object": (json.dumps([1, 2]), "BadRequestException"),
        "no type": (json.dumps({"id": "1"}), "BadRequestException"),
        "unknown type": (json.dumps({"type": "subscribe", "id": "1"}), "UnsupportedOperation"),
        "start without id": (
            json.dumps({"type": "start", "payload": {"data": data}}),
            "BadRequestException",
        ),
        "start id a number": (
            json.dumps({"type": "start", "id": 7, "payload": {"data": data}}),
            "BadRequestException",
        ),
        "start without payload": (json.dumps({"type": "start", "id": "1"}), "BadRequestException"),
        "data not a string": (
            json.dumps({"type": "start", "id": "1", "payload": {"data": {"query": "x"}}}),
            "BadRequestException",
        ),
        "data not JSON": (
            json.dumps({"type": "start", "id": "1", "payload": {"data": "{nope"}}),
            "BadRequestException",
        ),
        "data without query": (
            json.dumps({"type": "start", "id": "1", "payload": {"data": "{}"}}),
            "BadRequestException",
        ),
        "variables a list": (
            json.dumps(
                {
                    "type": "start",
                    "id": "1",
                    "payload": {"data": json.dumps({"query": SUBSCRIPTION, "variables": [1]})},
                }
            ),
            "BadRequestException",
        ),
        "a query, not a subscription": (
            json.dumps(
                {
                    "type": "start",
                    "id": "1",
                    "payload": {"data": json.dumps({"query": "{ getBuildings { items { id } } }"})},
                }
            ),
            "ValidationError",
        ),
        "not valid GraphQL": (
            json.dumps(
                {"type": "start", "id": "1", "payload": {"data": json.dumps({"query": "sub {"})}}
            ),
            "ValidationError",
        ),
        "missing variable": (
            json.dumps(
                {
                    "type": "start",
                    "id": "1",
                    "payload": {"data": json.dumps({"query": SUBSCRIPTION})},
                }
            ),
            "ValidationError",
        ),
        "authorization a string": (
            json.dumps(
                {
                    "type": "start",
                    "id": "1",
                    "payload": {"data": data, "extensions": {"authorization": "key"}},
                }
            ),
            "UnauthorizedException",
        ),
    }


async def test_every_malformed_frame_gets_an_appsync_error_and_the_connection_lives(
    stack: E2EStack, admin: Gql
) -> None:
    _, booking_id = await booking_of_new_tenant(admin, 1_500)
    async with await open_with_query(stack, stack.key) as ws:
        await initialised(ws)
        for name, (frame, error_type) in _messages(booking_id).items():
            await ws.send(frame)
            answer = await receive(ws)
            assert answer["type"] == "error", (name, answer)
            assert [e["errorType"] for e in answer["payload"]["errors"]] == [error_type], name
            assert all(e["message"] for e in answer["payload"]["errors"]), name
        # After all of them the connection still serves a good subscription.
        await ws.send(start("good", booking_id, None))
        assert (await receive(ws))["type"] == "start_ack"
        assert (await receive(ws))["type"] == "data"


async def test_start_before_connection_init_and_duplicate_ids_are_refused(
    stack: E2EStack, admin: Gql
) -> None:
    _, booking_id = await booking_of_new_tenant(admin, 1_600)
    async with await open_with_query(stack, stack.key) as ws:
        await ws.send(start("early", booking_id, None))
        early = await receive(ws)
        assert early["type"] == "error" and early["id"] == "early"
        await initialised(ws)
        await ws.send(json.dumps({"type": "connection_init"}))
        assert (await receive(ws))["type"] == "error"
        await ws.send(start("same", booking_id, None))
        assert (await receive(ws))["type"] == "start_ack"
        assert (await receive(ws))["type"] == "data"
        await ws.send(start("same", booking_id, None))
        duplicate = await receive(ws)
        assert duplicate["type"] == "error" and duplicate["id"] == "same"


async def test_subscriptions_per_connection_are_limited(stack: E2EStack, admin: Gql) -> None:
    _, booking_id = await booking_of_new_tenant(admin, 1_700)
    async with await open_with_query(stack, stack.key) as ws:
        await initialised(ws)
        for i in range(MAX_SUBSCRIPTIONS_PER_CONNECTION):
            await ws.send(start(f"s{i}", booking_id, None))
        acked = 0
        while acked < MAX_SUBSCRIPTIONS_PER_CONNECTION:
            message = await receive(ws)
            acked += message["type"] == "start_ack"
        await ws.send(start("one-too-many", booking_id, None))
        while True:
            message = await receive(ws)
            if message.get("id") == "one-too-many":
                break
        assert message["type"] == "error"
        assert message["payload"]["errors"][0]["errorType"] == "LimitExceededException"


async def test_a_frame_that_is_not_json_ends_the_connection_with_connection_error(
    stack: E2EStack,
) -> None:
    async with await open_with_query(stack, stack.key) as ws:
        await initialised(ws)
        await ws.send("{not json")
        error = await receive(ws)
        assert error["type"] == "connection_error"
        assert error["payload"]["errors"][0]["errorType"] == "BadRequestException"
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


async def test_connection_closes_when_its_token_expires(stack: E2EStack, admin: Gql) -> None:
    tenant, booking_id = await booking_of_new_tenant(admin, 1_800)
    auth = {"Authorization": stack.token(tenant, ["Tenants"], ttl=3)}
    async with await open_with_subprotocol(stack, auth) as ws:
        await initialised(ws)
        await ws.send(start("t", booking_id, auth))
        assert (await receive(ws))["type"] == "start_ack"
        assert (await receive(ws))["type"] == "data"
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws, within=15)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_subscription_ends_when_its_start_token_expires(stack: E2EStack, admin: Gql) -> None:
    tenant, booking_id = await booking_of_new_tenant(admin, 1_900)
    short = {"Authorization": stack.token(tenant, ["Tenants"], ttl=3)}
    async with await open_with_query(stack, stack.key) as ws:
        await initialised(ws)
        await ws.send(start("short", booking_id, short))
        assert (await receive(ws))["type"] == "start_ack"
        assert (await receive(ws))["type"] == "data"
        ended = await receive(ws, within=15)
        assert ended["type"] == "error" and ended["id"] == "short"
        assert ended["payload"]["errors"][0]["errorType"] == "UnauthorizedException"


async def test_no_connection_init_in_time_ends_the_connection(
    stack: E2EStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process (the 10 s of the real API shortened), so that the test is quick."""
    monkeypatch.setattr(realtime, "CONNECTION_INIT_TIMEOUT_SECONDS", 0.5)
    app = create_app(stack.settings, pool=stack.pool, client=stack.client)
    async with ServedApp(app) as served:
        header = b64({"host": "h", **stack.key})
        url = f"{served.url.replace('http', 'ws', 1)}/graphql/realtime?header={header}&payload=e30="
        async with connect(url, subprotocols=[GRAPHQL_WS]) as ws:
            error = await receive(ws, within=5)
            assert error["type"] == "connection_error"
            assert error["payload"]["errors"][0]["errorType"] == "ConnectionInitTimeout"
            with pytest.raises(ConnectionClosed) as closed:
                await receive(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4408
