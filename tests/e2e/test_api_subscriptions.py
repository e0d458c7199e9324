"""onBookingStatusChanged over a real WebSocket (graphql-transport-ws), fed by LISTEN/NOTIFY."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from api.notify import APPLICATION_NAME
from tests.e2e.helpers import (
    CANCEL,
    PAY,
    RESERVE,
    TRANSPORT_WS,
    E2EStack,
    Gql,
    create_apartment,
    create_user,
    next_message,
    open_transport_ws,
    reserve_input,
)
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

SUBSCRIPTION = """
subscription ($id: ID!) {
  onBookingStatusChanged(id: $id) {
    id bookingStatus cancellationReason paidAt user { id } apartment { apartmentStatus }
  }
}
"""
# The promise: a transition reaches subscribers within a second.
DELIVERY_SECONDS = 1.0


async def _subscribe(ws: ClientConnection, booking_id: str, op: str = "1") -> None:
    await ws.send(
        json.dumps(
            {
                "id": op,
                "type": "subscribe",
                "payload": {"query": SUBSCRIPTION, "variables": {"id": booking_id}},
            }
        )
    )


async def _reserved(stack: E2EStack, admin: Gql, rent: int) -> tuple[str, str, Gql]:
    """A tenant's fresh PENDING booking, and a client signed in as that tenant (unopened)."""
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=rent)
    body = await admin(RESERVE, reserve_input(apartment, tenant))
    return (
        tenant,
        body["data"]["reserveApartment"]["id"],
        Gql(stack.api.client(stack.bearer(tenant, "Tenants"))),
    )


async def test_subscriber_sees_pending_then_approved(stack: E2EStack, admin: Gql) -> None:
    tenant, booking_id, gql = await _reserved(stack, admin, 4_200)
    # Subscribe on the *other* API instance: the change is made through the first one,
    # so only Postgres' NOTIFY can carry it across.
    ws = await open_transport_ws(
        stack.api2.ws_url, {"Authorization": stack.token(tenant, ["Tenants"])}
    )
    async with ws, gql.http:
        await _subscribe(ws, booking_id)
        first = await next_message(ws)
        assert first["type"] == "next", first
        assert first["payload"]["data"]["onBookingStatusChanged"]["bookingStatus"] == "PENDING"
        assert first["payload"]["data"]["onBookingStatusChanged"]["apartment"] == {
            "apartmentStatus": "RESERVED"
        }

        paid = await gql(
            PAY,
            {
                "input": {
                    "bookingId": booking_id,
                    "amount": 4_200,
                    "currency": "EUR",
                    "paymentReference": f"ref-{uuid.uuid4()}",
                }
            },
        )
        answered = time.monotonic()
        assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED"
        update = await next_message(ws)
        latency = time.monotonic() - answered
        booking = update["payload"]["data"]["onBookingStatusChanged"]
        assert booking["bookingStatus"] == "APPROVED"
        assert booking["paidAt"] is not None and booking["user"] == {"id": tenant}
        assert booking["apartment"] == {"apartmentStatus": "OCCUPIED"}
        assert latency < DELIVERY_SECONDS, latency

        await ws.send(json.dumps({"id": "1", "type": "complete"}))


async def test_subscriber_sees_pending_then_cancelled(stack: E2EStack, admin: Gql) -> None:
    tenant, booking_id, gql = await _reserved(stack, admin, 3_000)
    ws = await open_transport_ws(
        stack.api.ws_url, {"headers": {"x-api-key": stack.key["x-api-key"]}}
    )
    async with ws, gql.http:
        await _subscribe(ws, booking_id)
        assert (await next_message(ws))["payload"]["data"]["onBookingStatusChanged"][
            "bookingStatus"
        ] == "PENDING"
        cancelled = await gql(CANCEL, {"id": booking_id})
        assert cancelled["data"]["cancelBooking"]["bookingStatus"] == "CANCELLED"
        update = await next_message(ws, within=DELIVERY_SECONDS)
        assert update["payload"]["data"]["onBookingStatusChanged"] == {
            "id": booking_id,
            "bookingStatus": "CANCELLED",
            "cancellationReason": "TENANT_CANCELLED",
            "paidAt": None,
            "user": {"id": tenant},
            "apartment": {"apartmentStatus": "VACANT"},
        }


async def test_subscription_to_another_tenants_booking_is_refused(
    stack: E2EStack, admin: Gql
) -> None:
    _, booking_id, gql = await _reserved(stack, admin, 1_000)
    ws = await open_transport_ws(
        stack.api.ws_url, {"Authorization": stack.token("intruder", ["Tenants"])}
    )
    async with ws, gql.http:
        await _subscribe(ws, booking_id)
        message = await next_message(ws)
        assert message["type"] == "next"
        errors = message["payload"]["errors"]
        assert [e["errorType"] for e in errors] == ["Unauthorized"]
        assert set(errors[0]) == {"message", "errorType", "errorInfo", "path", "locations", "data"}


@pytest.mark.parametrize(
    "payload", [{}, {"x-api-key": "wrong"}, {"Authorization": "Bearer not-a-jwt"}]
)
async def test_websocket_without_valid_credentials_is_closed(
    stack: E2EStack, payload: dict[str, Any]
) -> None:
    async with connect(stack.api.ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def test_subscription_validation_errors_have_appsync_shape(stack: E2EStack) -> None:
    ws = await open_transport_ws(stack.api.ws_url, stack.key)
    async with ws:
        await ws.send(
            json.dumps(
                {
                    "id": "9",
                    "type": "subscribe",
                    "payload": {"query": "subscription { onBookingStatusChanged { id } }"},
                }
            )
        )
        message = await next_message(ws)
    assert message["type"] == "error"
    assert [e["errorType"] for e in message["payload"]] == ["ValidationError"]


async def test_updates_survive_a_lost_listen_connection(stack: E2EStack, admin: Gql) -> None:
    tenant, booking_id, gql = await _reserved(stack, admin, 2_500)
    ws = await open_transport_ws(
        stack.api.ws_url, {"Authorization": stack.token(tenant, ["Tenants"])}
    )
    async with ws, gql.http:
        await _subscribe(ws, booking_id)
        assert (await next_message(ws))["payload"]["data"]["onBookingStatusChanged"][
            "bookingStatus"
        ] == "PENDING"
        killed = await stack.pool.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
                WHERE application_name = $1""",
            APPLICATION_NAME,
        )
        assert killed >= 1
        # The API notices, reconnects and reports ready again.
        async with stack.api.client() as http:
            await eventually(
                lambda: http.get("/readyz"),
                lambda ready: ready.status_code == 200,
                what="the API reporting ready again",
            )
        paid = await gql(
            PAY,
            {
                "input": {
                    "bookingId": booking_id,
                    "amount": 2_500,
                    "currency": "EUR",
                    "paymentReference": f"ref-{uuid.uuid4()}",
                }
            },
        )
        assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED"
        update = await next_message(ws, within=5)
        assert update["payload"]["data"]["onBookingStatusChanged"]["bookingStatus"] == "APPROVED"


@pytest.mark.parametrize(
    ("query", "operation_name"),
    [
        ("subscription A { __typename } subscription B { __typename }", None),  # which one?
        ("subscription A { __typename }", "Missing"),  # no such operation
    ],
    ids=["ambiguous", "unknown-name"],
)
async def test_a_subscription_that_names_nothing_to_run_is_an_error(
    stack: E2EStack, query: str, operation_name: str | None
) -> None:
    ws = await open_transport_ws(stack.api.ws_url, {"x-api-key": stack.key["x-api-key"]})
    payload: dict[str, Any] = {"query": query}
    if operation_name is not None:
        payload["operationName"] = operation_name
    await ws.send(json.dumps({"id": "bad", "type": "subscribe", "payload": payload}))
    error = await next_message(ws)
    assert (error["type"], error["id"]) == ("error", "bad"), error
    assert {e["errorType"] for e in error["payload"]} == {"ValidationError"}
    await ws.close()


async def test_a_subscription_that_does_not_parse_closes_with_4400(stack: E2EStack) -> None:
    """Not a bare `complete`, as if it had ended well: the protocol's close for a malformed
    subscribe, with the syntax error as its reason."""
    ws = await open_transport_ws(stack.api.ws_url, {"x-api-key": stack.key["x-api-key"]})
    query = "subscription { onBookingStatusChanged(id: "
    await ws.send(json.dumps({"id": "bad", "type": "subscribe", "payload": {"query": query}}))
    with pytest.raises(ConnectionClosed) as closed:
        await next_message(ws)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    assert closed.value.rcvd.reason.startswith("Syntax Error")


async def test_a_subscription_that_does_not_parse_is_an_error_on_the_legacy_protocol(
    stack: E2EStack,
) -> None:
    """Never a silent end: the legacy protocol answers the operation with `error`."""
    async with connect(stack.api.ws_url, subprotocols=[Subprotocol("graphql-ws")]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": stack.key}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription { onBookingStatusChanged(id: "
        await ws.send(json.dumps({"id": "bad", "type": "start", "payload": {"query": query}}))
        while (message := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] == "ka":
            pass
    assert (message["type"], message["id"]) == ("error", "bad"), message
    assert message["payload"]["errorType"] == "BadRequestException"
    assert "Syntax Error" in message["payload"]["message"]


async def test_an_invalid_subscription_is_an_error_for_that_operation_alone(
    stack: E2EStack, admin: Gql
) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    booking = (await admin(RESERVE, reserve_input(apartment, tenant)))["data"]["reserveApartment"]
    ws = await open_transport_ws(stack.api.ws_url, {"x-api-key": stack.key["x-api-key"]})
    await ws.send(
        json.dumps(
            {
                "id": "invalid",
                "type": "subscribe",
                "payload": {"query": "subscription { onBookingStatusChanged(id: 1) { nope } }"},
            }
        )
    )
    error = await next_message(ws)
    assert (error["type"], error["id"]) == ("error", "invalid")
    assert error["payload"][0]["errorType"]
    # The connection lives on: a valid subscription on it still works.
    await _subscribe(ws, booking["id"], op="good")
    first = await next_message(ws)
    assert first["id"] == "good" and first["type"] == "next"
    await ws.close()
