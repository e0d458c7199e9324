"""The payment webhook through the real API on the Temporal dev server.

Proves the two cross-process guarantees of the deduplication (api/webhooks.py) on the real
server: the event id recorded in the workflow history is seen by an API instance that never
saw the event, and two instances racing past that check collapse into one signal because
the signal's request id is derived from the event id.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from temporalio.api.enums.v1 import EventType

from api.webhooks import PaymentEvent, PaymentWebhook
from booking.contract import workflow_id_for
from booking.webhook_signing import SIGNATURE_HEADER, webhook_signature
from tests.e2e.helpers import (
    RESERVE,
    E2EStack,
    Gql,
    ServedApp,
    create_apartment,
    create_user,
    reserve_input,
)
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "e2e-webhook-secret-abcdef0123456789"


@pytest.fixture
async def two_apis(stack: E2EStack) -> AsyncIterator[tuple[str, str]]:
    from api.app import create_app

    settings = stack.settings.model_copy(update={"webhook_secret": WEBHOOK_SECRET})
    async with ServedApp(create_app(settings)) as one, ServedApp(create_app(settings)) as two:
        yield f"http://127.0.0.1:{one.port}", f"http://127.0.0.1:{two.port}"


async def _hold(admin: Gql) -> dict[str, Any]:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    body = await admin(RESERVE, reserve_input(apartment, tenant))
    assert "errors" not in body, body
    booking: dict[str, Any] = body["data"]["reserveApartment"]
    return booking


def _signed(booking: dict[str, Any], event_id: str, reference: str) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(
        {
            "id": event_id,
            "bookingId": booking["id"],
            "amount": booking["amountDue"],
            "currency": booking["currency"],
            "paymentReference": reference,
        }
    ).encode()
    return body, {SIGNATURE_HEADER: webhook_signature(WEBHOOK_SECRET, body, int(time.time()))}


async def _signals(stack: E2EStack, booking_id: str) -> int:
    handle = stack.client.get_workflow_handle(workflow_id_for(booking_id))
    signalled = EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
    return len([e async for e in handle.fetch_history_events() if e.event_type == signalled])


async def _status(stack: E2EStack, booking_id: str, want: str) -> str:
    status: str = await eventually(
        lambda: stack.pool.fetchval(
            "SELECT booking_status FROM bookings WHERE id = $1", booking_id
        ),
        lambda status: status == want,
        what=f"booking {booking_id} becoming {want}",
    )
    return status


async def test_an_event_paid_through_one_api_is_a_duplicate_at_the_other(
    stack: E2EStack, admin: Gql, two_apis: tuple[str, str]
) -> None:
    booking = await _hold(admin)
    reference = f"pay-{uuid.uuid4().hex}"
    body, headers = _signed(booking, f"evt-{uuid.uuid4().hex}", reference)
    async with httpx.AsyncClient(timeout=30) as http:
        first = await http.post(f"{two_apis[0]}/webhooks/payments", content=body, headers=headers)
        assert first.status_code == 202, first.text
        assert await _status(stack, booking["id"], "APPROVED") == "APPROVED"
        # The other API process never saw the event; the workflow history did.
        again = await http.post(f"{two_apis[1]}/webhooks/payments", content=body, headers=headers)
        assert again.status_code == 409, again.text
        assert again.json()["errors"][0]["errorType"] == "DuplicateEvent"
    assert await _signals(stack, booking["id"]) == 1
    payments = await stack.pool.fetch(
        "SELECT payment_reference, outcome FROM payments WHERE booking_id = $1", booking["id"]
    )
    assert [(p["payment_reference"], p["outcome"]) for p in payments] == [(reference, "APPLIED")]


async def test_racing_instances_collapse_into_one_signal_on_the_server(
    stack: E2EStack, admin: Gql
) -> None:
    booking = await _hold(admin)
    event = PaymentEvent(
        id=f"evt-{uuid.uuid4().hex}",
        booking_id=booking["id"],
        amount=booking["amountDue"],
        currency=booking["currency"],
        payment_reference=f"pay-{uuid.uuid4().hex}",
        received_at=datetime.now(UTC),
    )
    settings = stack.settings.model_copy(update={"webhook_secret": WEBHOOK_SECRET})

    def source() -> Any:
        return stack.client

    # Both passed the history check before either signalled: the server keeps one.
    instances = [PaymentWebhook(settings, source) for _ in range(3)]
    workflow_id = workflow_id_for(booking["id"])
    await asyncio.gather(*(w._signal(stack.client, workflow_id, event) for w in instances))
    assert await _status(stack, booking["id"], "APPROVED") == "APPROVED"
    assert await _signals(stack, booking["id"]) == 1
