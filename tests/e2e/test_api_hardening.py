"""Review findings, end to end: nested accounts, reused idempotency keys, Temporal deadlines,
and fresh data for every operation on one WebSocket."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus
from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Subprotocol

from api.app import create_app
from api.errors import ServiceUnavailable
from api.operations import BookingCommands
from booking.contract import BookingInput, PaymentInput, booking_id_for, workflow_id_for
from booking.store.bookings import BookingRow
from tests.e2e.helpers import (
    CANCEL,
    PAY,
    RESERVE,
    E2EStack,
    Gql,
    ServedApp,
    create_apartment,
    create_user,
    days_ahead,
    error_types,
    reserve_input,
)
from workflows.booking import ApartmentBookingWorkflow

pytestmark = pytest.mark.e2e


def _pay(booking_id: str, amount: int) -> dict[str, Any]:
    return {
        "input": {
            "bookingId": booking_id,
            "amount": amount,
            "currency": "EUR",
            "paymentReference": f"ref-{uuid.uuid4()}",
        }
    }


# -- 2: nested accounts ----------------------------------------------------------------------

NESTED = """
query ($id: ID!, $b: String!) {
  getApartment(id: $id) { tenant { id email firstName } caretaker { id email } }
  getAllApartmentsPerBuilding(buildingId: $b) { tenant { id } caretaker { id } }
}
"""


async def test_nested_accounts_are_shown_only_to_who_may_read_them(
    stack: E2EStack, admin: Gql
) -> None:
    tenant, other = await create_user(admin), await create_user(admin)
    caretaker = await create_user(admin, "CARETAKER")
    building, _ = await create_apartment(admin)
    body = await admin(
        """mutation ($input: ApartmentInput) { createApartment(input: $input) { id } }""",
        {
            "input": {
                "apartmentNumber": "2B",
                "buildingId": building,
                "numberOfRooms": 1,
                "kitchen": False,
                "apartmentType": "SINGLE_ROOM",
                "apartmentStatus": "VACANT",
                "monthlyRent": 3_000,
                "currency": "EUR",
                "caretakerId": caretaker,
            }
        },
    )
    assert "errors" not in body, body
    apartment = body["data"]["createApartment"]["id"]
    booking = (await admin(RESERVE, reserve_input(apartment, tenant)))["data"]["reserveApartment"]
    paid = await admin(PAY, _pay(booking["id"], 3_000))
    assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid

    async def seen_by(headers: dict[str, str]) -> tuple[Any, Any, list[Any]]:
        async with stack.api.client(headers) as http:
            answer = await Gql(http)(NESTED, {"id": apartment, "b": building})
        assert "errors" not in answer, answer
        one = answer["data"]["getApartment"]
        listed = [
            a
            for a in answer["data"]["getAllApartmentsPerBuilding"]
            if a["caretaker"] or a["tenant"]
        ]
        return one["tenant"], one["caretaker"], listed

    # Another tenant: both accounts hidden, in the single read and in the list.
    assert await seen_by(stack.bearer(other, "Tenants")) == (None, None, [])
    # The tenant sees itself, not the caretaker.
    own, hidden, listed = await seen_by(stack.bearer(tenant, "Tenants"))
    assert own["id"] == tenant and own["email"] == f"{tenant}@example.com"
    assert hidden is None and listed == [{"tenant": {"id": tenant}, "caretaker": None}]
    # Admins (JWT or API key) and Caretakers see both.
    for headers in (stack.bearer("boss", "Admins"), stack.key, stack.bearer("care", "Caretakers")):
        own, care, listed = await seen_by(headers)
        assert own["id"] == tenant and care["id"] == caretaker
        assert listed == [{"tenant": {"id": tenant}, "caretaker": {"id": caretaker}}]


# -- 3: an idempotency key reused for another booking -----------------------------------------


async def test_a_reused_idempotency_key_with_other_input_is_refused(
    stack: E2EStack, admin: Gql
) -> None:
    tenant = await create_user(admin)
    _, first = await create_apartment(admin, rent=2_000)
    _, second = await create_apartment(admin, rent=2_000)
    key = f"key-{uuid.uuid4()}"
    async with stack.api.client(stack.bearer(tenant, "Tenants")) as http:
        gql = Gql(http)
        body = await gql(RESERVE, reserve_input(first, tenant, idempotencyKey=key))
        booking_id = body["data"]["reserveApartment"]["id"]

        async def refused(**changes: Any) -> None:
            variables = reserve_input(first, tenant, idempotencyKey=key)
            variables["input"].update(changes)
            answer = await gql(RESERVE, variables)
            assert error_types(answer) == ["ValidationError"], answer
            assert answer["errors"][0]["message"] == (
                "idempotencyKey already used for a different booking"
            )

        # While its workflow runs: another apartment, other dates.
        await refused(apartmentId=second)
        await refused(endDate=days_ahead(200))
        await refused(startDate=days_ahead(1))
        status = "query ($id: ID!) { getApartment(id: $id) { apartmentStatus } }"
        assert (await gql(status, {"id": second}))["data"]["getApartment"] == {
            "apartmentStatus": "VACANT"
        }
        # The same request still answers the same booking.
        again = await gql(RESERVE, reserve_input(first, tenant, idempotencyKey=key))
        assert again["data"]["reserveApartment"]["id"] == booking_id

        # After its workflow closed (answered from the database): the same.
        cancelled = await gql(CANCEL, {"id": booking_id})
        assert cancelled["data"]["cancelBooking"]["bookingStatus"] == "CANCELLED"
        # It stays open for late payments; end it now to reach the closed-execution path.
        handle = stack.client.get_workflow_handle(workflow_id_for(booking_id))
        await handle.terminate("test: closed execution")
        assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED
        await refused(apartmentId=second)
        again = await gql(RESERVE, reserve_input(first, tenant, idempotencyKey=key))
        assert again["data"]["reserveApartment"]["id"] == booking_id


# -- 5: Temporal calls have a deadline ----------------------------------------------------------


async def test_calls_to_temporal_without_a_worker_answer_service_unavailable(
    stack: E2EStack, admin: Gql
) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    # Nobody polls this task queue: every start and update waits for a worker forever.
    slow = stack.settings.model_copy(
        update={"task_queue": f"nobody-{uuid.uuid4().hex[:8]}", "temporal_call_timeout_seconds": 1}
    )
    key = f"key-{uuid.uuid4()}"
    async with (
        ServedApp(create_app(slow, pool=stack.pool, client=stack.client)) as served,
        stack.api.client(stack.key) as http,
    ):
        http.base_url = f"http://127.0.0.1:{served.port}"
        gql = Gql(http)
        started = datetime.now(UTC)
        body = await gql(RESERVE, reserve_input(apartment, tenant, idempotencyKey=key))
        assert (datetime.now(UTC) - started).total_seconds() < 10
        assert error_types(body) == ["ServiceUnavailable"], body
        message = body["errors"][0]["message"]
        assert "busy or down" in message and "same idempotencyKey" in message
        assert body["data"] is None

        # A catalog row needs no workflow: it is written even while no worker answers.
        user_id = f"user-{uuid.uuid4().hex[:12]}"
        body = await gql(
            """mutation ($input: UserInput!) { createUserAccount(input: $input) { id } }""",
            {
                "input": {
                    "id": user_id,
                    "firstName": "Slow",
                    "lastName": "Path",
                    "email": f"{user_id}@example.com",
                    "verified": True,
                    "userType": "TENANT",
                }
            },
        )
        assert body == {"data": {"createUserAccount": {"id": user_id}}}, body
    booking_id = booking_id_for(tenant, key)
    await stack.client.get_workflow_handle(workflow_id_for(booking_id)).terminate("test over")


async def test_pay_and_cancel_without_a_worker_answer_service_unavailable(stack: E2EStack) -> None:
    queue = f"nobody-{uuid.uuid4().hex[:8]}"
    slow = stack.settings.model_copy(
        update={"task_queue": queue, "temporal_call_timeout_seconds": 1}
    )
    booking_id = f"unpolled-{uuid.uuid4().hex[:8]}"
    booking_input = BookingInput(
        booking_id=booking_id,
        apartment_id="nowhere",
        user_id="nobody",
        start_date=date(2031, 1, 1),
        end_date=date(2031, 2, 1),
        hold_seconds=60,
    )
    handle = await stack.client.start_workflow(
        ApartmentBookingWorkflow.run,
        booking_input,
        id=workflow_id_for(booking_id),
        task_queue=queue,
    )
    now = datetime.now(UTC)
    row = BookingRow(
        id=booking_id,
        workflow_id=handle.id,
        user_id="nobody",
        apartment_id="nowhere",
        start_date=date(2031, 1, 1),
        end_date=date(2031, 2, 1),
        booking_status="PENDING",
        amount_due=1_000,
        currency="EUR",
        hold_expires_at=None,
        paid_at=None,
        cancellation_reason=None,
        lease_ended_at=None,
        idempotency_key=None,
        created_on=now,
        update_on=now,
    )
    commands = BookingCommands(stack.client, slow)
    try:
        with pytest.raises(ServiceUnavailable, match="same paymentReference"):
            async with asyncio.timeout(10):
                await commands.pay(row, PaymentInput(1_000, "EUR", "ref-slow"))
        with pytest.raises(ServiceUnavailable, match="busy or down"):
            async with asyncio.timeout(10):
                await commands.cancel(row)
    finally:
        await handle.terminate("test over")


# -- 8: every operation on one WebSocket reads fresh data --------------------------------------

PROTOCOL = Subprotocol("graphql-transport-ws")
APARTMENT = "query ($id: ID!) { getApartment(id: $id) { apartmentStatus } }"
WATCH = """
subscription ($id: ID!) { onBookingStatusChanged(id: $id) { bookingStatus
  apartment { apartmentStatus } } }
"""


class _Socket:
    """One graphql-transport-ws connection; answers sorted by operation id."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pending: dict[str, list[dict[str, Any]]] = {}

    async def start(self, op: str, query: str, variables: dict[str, Any]) -> None:
        payload = {"query": query, "variables": variables}
        await self.ws.send(json.dumps({"id": op, "type": "subscribe", "payload": payload}))

    async def next(self, op: str) -> dict[str, Any]:
        async with asyncio.timeout(10):
            while not self.pending.get(op):
                message = json.loads(await self.ws.recv())
                if message["type"] in ("next", "error"):
                    self.pending.setdefault(message["id"], []).append(message)
        message = self.pending[op].pop(0)
        assert message["type"] == "next", message
        data: dict[str, Any] = message["payload"]["data"]
        return data

    async def query(self, op: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        await self.start(op, query, variables)
        return await self.next(op)


async def test_each_operation_on_one_websocket_reads_fresh_data(
    stack: E2EStack, admin: Gql
) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=1_500)
    async with connect(stack.api.ws_url, subprotocols=[PROTOCOL]) as raw:
        await raw.send(json.dumps({"type": "connection_init", "payload": stack.key}))
        assert json.loads(await asyncio.wait_for(raw.recv(), 5))["type"] == "connection_ack"
        ws = _Socket(raw)
        status = {"id": apartment}

        assert await ws.query("q1", APARTMENT, status) == {
            "getApartment": {"apartmentStatus": "VACANT"}
        }
        booking = (await admin(RESERVE, reserve_input(apartment, tenant)))["data"][
            "reserveApartment"
        ]
        # Same connection, a later operation: not the first one's cached answer.
        assert await ws.query("q2", APARTMENT, status) == {
            "getApartment": {"apartmentStatus": "RESERVED"}
        }
        # A long-lived subscription and queries side by side on the connection.
        await ws.start("s1", WATCH, {"id": booking["id"]})
        first = (await ws.next("s1"))["onBookingStatusChanged"]
        assert first == {"bookingStatus": "PENDING", "apartment": {"apartmentStatus": "RESERVED"}}
        paid = await admin(PAY, _pay(booking["id"], 1_500))
        assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED"
        update = (await ws.next("s1"))["onBookingStatusChanged"]
        assert update == {"bookingStatus": "APPROVED", "apartment": {"apartmentStatus": "OCCUPIED"}}
        assert await ws.query("q3", APARTMENT, status) == {
            "getApartment": {"apartmentStatus": "OCCUPIED"}
        }
        await raw.send(json.dumps({"id": "s1", "type": "complete"}))
