"""Booking operations over real HTTP, through the real worker and Temporal dev server."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest

from api.operations import step_function_arn
from tests.e2e.helpers import (
    APARTMENT_STATUS,
    BOOKING_FIELDS,
    CANCEL,
    PAY,
    RESERVE,
    E2EStack,
    Gql,
    create_apartment,
    create_user,
    days_ahead,
    error_types,
    reserve_input,
)
from workflows.booking import ApartmentBookingWorkflow

pytestmark = pytest.mark.e2e


async def _status(gql: Gql, apartment_id: str) -> str:
    body = await gql(APARTMENT_STATUS, {"id": apartment_id})
    status: str = body["data"]["getApartment"]["apartmentStatus"]
    return status


async def test_reserve_then_pay_approves_and_occupies(stack: E2EStack, admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=99_000, currency="EUR")
    async with stack.api.client(stack.bearer(tenant, "Tenants")) as http:
        gql = Gql(http)
        body = await gql(RESERVE, reserve_input(apartment, tenant))
        assert "errors" not in body, body
        booking = body["data"]["reserveApartment"]
        assert booking["bookingStatus"] == "PENDING"
        assert booking["amountDue"] == 99_000 and booking["currency"] == "EUR"
        assert booking["userId"] == tenant and booking["apartmentId"] == apartment
        assert (booking["startDate"], booking["endDate"]) == (days_ahead(0), days_ahead(181))
        assert booking["holdExpiresAt"].endswith("Z")
        assert booking["workflowId"] == f"booking-{booking['id']}"
        assert await _status(gql, apartment) == "RESERVED"

        wrong = await gql(
            PAY,
            {
                "input": {
                    "bookingId": booking["id"],
                    "amount": 1,
                    "currency": "EUR",
                    "paymentReference": f"ref-{uuid.uuid4()}",
                }
            },
        )
        assert error_types(wrong) == ["PaymentRejected"]
        assert wrong["data"] is None

        reference = f"ref-{uuid.uuid4()}"
        pay = {
            "input": {
                "bookingId": booking["id"],
                "amount": 99_000,
                "currency": "EUR",
                "paymentReference": reference,
            }
        }
        body = await gql(PAY, pay)
        assert "errors" not in body, body
        paid = body["data"]["payBooking"]
        assert paid["bookingStatus"] == "APPROVED"
        assert paid["paidAt"] is not None
        assert (await gql(APARTMENT_STATUS, {"id": apartment}))["data"]["getApartment"] == {
            "apartmentStatus": "OCCUPIED",
            "tenant": {"id": tenant},
        }
        # The same payment again changes nothing and answers like the first.
        again = await gql(PAY, pay)
        assert again["data"]["payBooking"]["bookingStatus"] == "APPROVED"
        assert again["data"]["payBooking"]["paidAt"] == paid["paidAt"]

        late_cancel = await gql(CANCEL, {"id": booking["id"]})
        assert error_types(late_cancel) == ["BookingNotCancellable"]

        got = await gql(
            f"query ($id: ID!) {{ getBooking(id: $id) {{ {BOOKING_FIELDS} user {{ id }} }} }}",
            {"id": booking["id"]},
        )
        assert got["data"]["getBooking"]["bookingStatus"] == "APPROVED"
        assert got["data"]["getBooking"]["user"] == {"id": tenant}


async def test_second_reserve_is_unavailable_and_cancel_frees(stack: E2EStack, admin: Gql) -> None:
    first, second = await create_user(admin), await create_user(admin)
    _, apartment = await create_apartment(admin)
    body = await admin(RESERVE, reserve_input(apartment, first))
    booking = body["data"]["reserveApartment"]
    taken = await admin(RESERVE, reserve_input(apartment, second))
    assert error_types(taken) == ["ApartmentUnavailable"]
    assert taken["errors"][0]["path"] == ["reserveApartment"]

    cancelled = await admin(CANCEL, {"id": booking["id"]})
    assert "errors" not in cancelled, cancelled
    assert cancelled["data"]["cancelBooking"]["bookingStatus"] == "CANCELLED"
    assert cancelled["data"]["cancelBooking"]["cancellationReason"] == "TENANT_CANCELLED"
    assert await _status(admin, apartment) == "VACANT"

    # Free again: the other tenant gets it now.
    body = await admin(RESERVE, reserve_input(apartment, second))
    assert body["data"]["reserveApartment"]["bookingStatus"] == "PENDING"


async def test_same_idempotency_key_returns_the_same_booking(admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    key = f"key-{uuid.uuid4()}"
    answers = await asyncio.gather(
        *(admin(RESERVE, reserve_input(apartment, tenant, idempotencyKey=key)) for _ in range(3))
    )
    ids = {a["data"]["reserveApartment"]["id"] for a in answers}
    assert len(ids) == 1, answers
    rows = await admin(
        "query ($a: String!) { getAllBookingsPerApartment(apartmentId: $a) { id } }",
        {"a": apartment},
    )
    assert [b["id"] for b in rows["data"]["getAllBookingsPerApartment"]] == list(ids)


async def test_hold_expires_in_real_time(admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=5_000)
    body = await admin(RESERVE, reserve_input(apartment, tenant, holdSeconds=1))
    booking = body["data"]["reserveApartment"]
    assert booking["bookingStatus"] == "PENDING"
    expires = datetime.fromisoformat(booking["holdExpiresAt"])
    await asyncio.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1.5)
    late = await admin(
        PAY,
        {
            "input": {
                "bookingId": booking["id"],
                "amount": 5_000,
                "currency": "EUR",
                "paymentReference": f"ref-{uuid.uuid4()}",
            }
        },
    )
    assert error_types(late) == ["BookingExpired"]
    got = await admin(
        "query ($id: ID!) { getBooking(id: $id) { bookingStatus cancellationReason } }",
        {"id": booking["id"]},
    )
    assert got["data"]["getBooking"] == {
        "bookingStatus": "CANCELLED",
        "cancellationReason": "EXPIRED",
    }
    assert await _status(admin, apartment) == "VACANT"


async def test_create_apartment_booking_places_a_hold(stack: E2EStack, admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    mutation = (
        """mutation ($input: CreateBookingInput!) { createApartmentBooking(input: $input) }"""
    )
    booking_input = {
        "userId": tenant,
        "apartmentId": apartment,
        "startDate": days_ahead(0),
        "endDate": days_ahead(28),
    }
    async with stack.api.client(stack.bearer(tenant, "Tenants")) as http:
        gql = Gql(http)
        refused = await gql(mutation, {"input": {**booking_input, "bookingStatus": "APPROVED"}})
        assert error_types(refused) == ["ValidationError"]
        body = await gql(mutation, {"input": {**booking_input, "bookingStatus": "PENDING"}})
        assert body == {"data": {"createApartmentBooking": True}}
        assert await _status(gql, apartment) == "RESERVED"
        listed = await gql(
            "query ($a: String!) { getAllBookingsPerApartment(apartmentId: $a) "
            "{ userId bookingStatus startDate } }",
            {"a": apartment},
        )
        assert listed["data"]["getAllBookingsPerApartment"] == [
            {"userId": tenant, "bookingStatus": "PENDING", "startDate": days_ahead(0)}
        ]


async def test_bad_booking_input_is_a_validation_error(admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    for extra in (
        {"endDate": days_ahead(-1)},  # before startDate
        {"holdSeconds": 0},
        {"holdSeconds": 86_401},
    ):
        body = await admin(RESERVE, reserve_input(apartment, tenant, **extra))
        assert error_types(body) == ["ValidationError"], (extra, body)
    body = await admin(RESERVE, reserve_input("no-such-apartment", tenant))
    assert error_types(body) == ["ApartmentNotFound"]
    body = await admin(
        PAY,
        {
            "input": {
                "bookingId": "no-such-booking",
                "amount": 1,
                "currency": "EUR",
                "paymentReference": "r",
            }
        },
    )
    assert error_types(body) == ["BookingNotFound"]
    body = await admin(CANCEL, {"id": "no-such-booking"})
    assert error_types(body) == ["BookingNotFound"]
    assert await _status(admin, apartment) == "VACANT"


async def test_step_functions_tutorial_call_works_unchanged(stack: E2EStack, admin: Gql) -> None:
    arn = step_function_arn(stack.settings.temporal_namespace)
    execution = f"tutorial-{uuid.uuid4().hex[:8]}"
    # The tutorial's exact mutation document.
    body = await admin(
        """mutation add($input: StepFunctionsInput!) {
             addStepFunction(input: $input) { id arn }
           }""",
        {"input": {"id": execution, "arn": arn}},
    )
    assert body == {"data": {"addStepFunction": {"id": execution, "arn": arn}}}
    listed = await admin("query { getStepFunctions { id arn } }")
    assert {"id": execution, "arn": arn} in listed["data"]["getStepFunctions"]
    # It started a real booking execution under that id, for the demo apartment and tenant.
    handle = stack.client.get_workflow_handle_for(ApartmentBookingWorkflow.run, execution)
    description = await handle.describe()
    assert description.workflow_type == "ApartmentBookingWorkflow"
    state = await handle.query(ApartmentBookingWorkflow.state)
    assert (state.apartment_id, state.user_id) == ("1234567", "demo-tenant")
    assert state.status in ("PENDING", "REJECTED")  # REJECTED: an earlier run holds 1234567

    wrong = await admin(
        """mutation ($input: StepFunctionsInput!) { addStepFunction(input: $input) { id } }""",
        {"input": {"id": f"x-{execution}", "arn": "arn:aws:states:eu-west-1:1:stateMachine:x"}},
    )
    assert error_types(wrong) == ["ValidationError"]
    assert wrong["data"] == {"addStepFunction": None}


async def test_a_spent_idempotency_key_is_refused_after_its_execution_closed(admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    key = f"key-{uuid.uuid4()}"
    # A request the API refuses from a read starts no execution and spends no key.
    body = await admin(RESERVE, reserve_input(f"missing-{apartment}", tenant, idempotencyKey=key))
    assert error_types(body) == ["ApartmentNotFound"]
    # The tenant at the hold limit: the workflow refuses this one; its execution closes.
    held = []
    for _ in range(3):
        _, other = await create_apartment(admin)
        held.append(
            (await admin(RESERVE, reserve_input(other, tenant)))["data"]["reserveApartment"]
        )
    body = await admin(RESERVE, reserve_input(apartment, tenant, idempotencyKey=key))
    assert error_types(body) == ["HoldLimitReached"]
    await admin(CANCEL, {"id": held[0]["id"]})
    # The key is spent: the same key again is refused, even with a slot free now.
    body = await admin(RESERVE, reserve_input(apartment, tenant, idempotencyKey=key))
    assert error_types(body) == ["ValidationError"]
    assert "idempotencyKey" in body["errors"][0]["message"]
    assert await _status(admin, apartment) == "VACANT"
    for booking in held[1:]:
        await admin(CANCEL, {"id": booking["id"]})


@pytest.mark.parametrize(
    "fields",
    [
        # What the workflow's answer gives: answered without reading the row again.
        "__typename id userId apartmentId startDate endDate bookingStatus createdOn amountDue "
        "currency holdExpiresAt paidAt cancellationReason workflowId leaseEndedAt holdExtensions",
        # updateOn moved with the payment; a related object; a fragment: read as before.
        "id bookingStatus updateOn",
        "id bookingStatus apartment { id apartmentStatus }",
        "...F",
    ],
)
async def test_pay_booking_answers_the_booking_as_it_now_is(
    stack: E2EStack, admin: Gql, fields: str
) -> None:
    """Whatever payBooking's selection, its answer is what getBooking reads right after."""
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    held = (await admin(RESERVE, reserve_input(apartment, tenant)))["data"]["reserveApartment"]
    fragment = (
        f"fragment F on Booking {{ {BOOKING_FIELDS} holdExtensions }}" if "..." in fields else ""
    )
    pay = f"""mutation ($input: PayBookingInput!) {{ payBooking(input: $input) {{ {fields} }} }}
              {fragment}"""
    payment = {
        "bookingId": held["id"],
        "amount": held["amountDue"],
        "currency": held["currency"],
        "paymentReference": f"ref-{uuid.uuid4().hex[:8]}",
    }
    answer = await admin(pay, {"input": payment})
    assert "errors" not in answer, answer
    paid = answer["data"]["payBooking"]
    get = f"""query ($id: ID!) {{ getBooking(id: $id) {{ {fields} }} }} {fragment}"""
    now = (await admin(get, {"id": held["id"]}))["data"]["getBooking"]
    assert paid == now
    assert paid.get("bookingStatus", "APPROVED") == "APPROVED"
    if "updateOn" in paid:
        assert paid["updateOn"] != held.get("updateOn")
