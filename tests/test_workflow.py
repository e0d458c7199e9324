"""ApartmentBookingWorkflow end to end: real worker, real Postgres, time-skipping server.

Every path of the issue: paid, expired exactly at the deadline, cancelled, late payment ->
refund, duplicate payment, wrong amount, wrong currency, lease end a year later, and the
payment/timer race. Histories of these runs are what tests/test_replay.py replays.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment

from booking.contract import (
    BookingState,
    PaymentInput,
    booking_id_for,
    start_search_attributes,
    workflow_id_for,
)
from booking.search_attributes import APARTMENT_ID, BOOKING_STATUS, HOLD_EXPIRES_AT, TENANT_ID
from tests.helpers import (
    apartment_row,
    booking_input,
    booking_row,
    events,
    eventually,
    make_rental,
    payment_for,
    record_history,
    reserve_with_start,
    start_and_hold,
    stay_start_events,
    update_refusal,
)
from workflows.booking import ApartmentBookingWorkflow

Handle = WorkflowHandle[ApartmentBookingWorkflow, BookingState]


async def _refunds(pool: asyncpg.Pool, booking_id: str) -> list[tuple[str, str, str | None]]:
    rows = await pool.fetch(
        """SELECT p.payment_reference, p.outcome, r.reason
             FROM payments p LEFT JOIN refunds r ON r.payment_id = p.id
            WHERE p.booking_id = $1 ORDER BY p.id""",
        booking_id,
    )
    return [(r["payment_reference"], r["outcome"], r["reason"]) for r in rows]


@pytest.mark.usefixtures("worker")
async def test_paid_then_lease_ends_a_year_later(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=900, lease_days=365)
    handle, held = await start_and_hold(client, data, task_queue)

    assert held.status == "PENDING"
    assert (held.amount_due, held.currency) == (rental.monthly_rent, rental.currency)
    assert held.hold_expires_at is not None
    row = await booking_row(pool, data.booking_id)
    assert row is not None and row["booking_status"] == "PENDING"
    assert row["hold_expires_at"] == held.hold_expires_at
    assert row["workflow_id"] == workflow_id_for(data.booking_id)
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "RESERVED"

    payment = payment_for(held)
    paid = await handle.execute_update(ApartmentBookingWorkflow.pay, payment)
    assert paid.status == "APPROVED" and paid.paid_at is not None
    assert paid.paid_at < held.hold_expires_at
    row = await booking_row(pool, data.booking_id)
    assert row is not None
    assert (row["booking_status"], row["paid_at"]) == ("APPROVED", paid.paid_at)
    apartment = await apartment_row(pool, rental.apartment_id)
    assert (apartment["apartment_status"], apartment["tenant_id"]) == ("OCCUPIED", rental.user_id)
    assert await _refunds(pool, data.booking_id) == [(payment.payment_reference, "APPLIED", None)]

    # The workflow now sleeps a year to the lease end; the test server skips it.
    started = datetime.now(UTC)
    final = await handle.result()
    assert (datetime.now(UTC) - started) < timedelta(seconds=20)
    lease_end = datetime.combine(data.end_date, time.min, tzinfo=UTC)
    assert final.status == "APPROVED"
    assert final.lease_ended_at == lease_end
    row = await booking_row(pool, data.booking_id)
    assert row is not None and row["lease_ended_at"] == lease_end
    apartment = await apartment_row(pool, rental.apartment_id)
    assert (apartment["apartment_status"], apartment["tenant_id"]) == ("VACANT", None)
    logged = await events(pool, data.booking_id)
    # A year is a lease: its rent's own events (tests/test_workflow_lease.py checks them).
    assert [e for e in logged if not e[2].startswith("RENT_")] == [
        (None, "PENDING", "RESERVED"),
        ("PENDING", "APPROVED", "PAID"),
        # Booked ahead (it starts tomorrow): the workflow woke at its first night.
        *stay_start_events(paid.paid_at, data.start_date),
        ("APPROVED", "APPROVED", "LEASE_ENDED"),
    ]
    # Nobody paid the eleven later months: each was issued and went overdue.
    reasons = [e[2] for e in logged]
    assert reasons.count("RENT_ISSUED") == reasons.count("RENT_OVERDUE") == 11
    started_at = await pool.fetchval(
        "SELECT details->>'startedAt' FROM booking_events "
        "WHERE booking_id = $1 AND reason = 'STAY_STARTED'",
        data.booking_id,
    )
    if stay_start_events(paid.paid_at, data.start_date):
        assert started_at == datetime.combine(data.start_date, time.min, tzinfo=UTC).isoformat()
    await record_history(handle, "calendar_paid_stay_started_lease_ended")


@pytest.mark.usefixtures("worker")
async def test_search_attributes_follow_the_status(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental)
    handle, held = await start_and_hold(client, data, task_queue)
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(BOOKING_STATUS) == "PENDING"
    assert attrs.get(APARTMENT_ID) == rental.apartment_id
    assert attrs.get(TENANT_ID) == rental.user_id
    assert attrs.get(HOLD_EXPIRES_AT) == held.hold_expires_at
    await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(BOOKING_STATUS) == "APPROVED"
    await handle.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_expires_exactly_at_the_deadline(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=3600)
    handle, held = await start_and_hold(client, data, task_queue)
    assert held.hold_expires_at is not None

    # Skip to the very instant the hold ends: a payment now is too late.
    await env.sleep(held.hold_expires_at - await env.get_current_time())
    error = await update_refusal(
        handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    )
    assert error.type == "BookingExpired"

    final = await handle.result()
    assert (final.status, final.cancellation_reason) == ("CANCELLED", "EXPIRED")
    row = await booking_row(pool, data.booking_id)
    assert row is not None
    assert (row["booking_status"], row["cancellation_reason"]) == ("CANCELLED", "EXPIRED")
    apartment = await apartment_row(pool, rental.apartment_id)
    assert (apartment["apartment_status"], apartment["tenant_id"]) == ("VACANT", None)
    # The rejected update took no money: nothing recorded.
    assert await _refunds(pool, data.booking_id) == []
    assert await events(pool, data.booking_id) == [
        (None, "PENDING", "RESERVED"),
        ("PENDING", "CANCELLED", "EXPIRED"),
    ]
    await record_history(handle, "waitlist_expired")


@pytest.mark.usefixtures("worker")
async def test_payment_one_second_before_the_deadline_is_on_time(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=3600)
    handle, held = await start_and_hold(client, data, task_queue)
    assert held.hold_expires_at is not None
    await env.sleep(held.hold_expires_at - await env.get_current_time() - timedelta(seconds=1))
    paid = await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    assert paid.status == "APPROVED"
    # The hold timer has passed by now; the booking stays paid.
    await env.sleep(timedelta(seconds=5))
    state = await handle.query(ApartmentBookingWorkflow.state)
    assert state.status == "APPROVED"
    row = await booking_row(pool, data.booking_id)
    assert row is not None and row["booking_status"] == "APPROVED"
    await handle.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_tenant_cancels_during_the_hold(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental)
    handle, held = await start_and_hold(client, data, task_queue)

    cancelled = await handle.execute_update(ApartmentBookingWorkflow.cancel)
    assert (cancelled.status, cancelled.cancellation_reason) == ("CANCELLED", "TENANT_CANCELLED")
    # A repeated cancel answers the same; a payment now is refused.
    again = await handle.execute_update(ApartmentBookingWorkflow.cancel)
    assert again == cancelled
    error = await update_refusal(
        handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    )
    assert error.type == "PaymentRejected"

    apartment = await apartment_row(pool, rental.apartment_id)
    assert (apartment["apartment_status"], apartment["tenant_id"]) == ("VACANT", None)
    final = await handle.result()
    assert final.cancellation_reason == "TENANT_CANCELLED"
    assert await events(pool, data.booking_id) == [
        (None, "PENDING", "RESERVED"),
        ("PENDING", "CANCELLED", "TENANT_CANCELLED"),
    ]
    await record_history(handle, "waitlist_tenant_cancelled")


@pytest.mark.usefixtures("worker")
async def test_paid_booking_cannot_be_cancelled(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    handle, held = await start_and_hold(client, await booking_input(env, rental), task_queue)
    await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    error = await update_refusal(handle.execute_update(ApartmentBookingWorkflow.cancel))
    assert error.type == "BookingNotCancellable"
    await handle.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_late_payment_is_recorded_and_refunded(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=60)
    handle, held = await start_and_hold(client, data, task_queue)
    await env.sleep(timedelta(seconds=120))
    late = payment_for(held)
    await handle.signal(ApartmentBookingWorkflow.payment_received, late)
    final = await handle.result()  # after the refund window
    assert (final.status, final.cancellation_reason) == ("CANCELLED", "EXPIRED")
    assert await _refunds(pool, data.booking_id) == [
        (late.payment_reference, "REFUNDED", "HOLD_OVER")
    ]
    apartment = await apartment_row(pool, rental.apartment_id)
    assert apartment["apartment_status"] == "VACANT"
    await record_history(handle, "waitlist_late_payment_refunded")


@pytest.mark.usefixtures("worker")
async def test_duplicate_payments(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, lease_days=30)
    handle, held = await start_and_hold(client, data, task_queue)
    payment = payment_for(held)
    first = await handle.execute_update(ApartmentBookingWorkflow.pay, payment)
    # The same reference again, by update or by signal: nothing changes.
    again = await handle.execute_update(ApartmentBookingWorkflow.pay, payment)
    assert again == first
    await handle.signal(ApartmentBookingWorkflow.payment_received, payment)
    # A second, different payment once paid is refunded; a paying update is refused.
    extra = payment_for(held)
    await handle.signal(ApartmentBookingWorkflow.payment_received, extra)
    await handle.signal(ApartmentBookingWorkflow.payment_received, extra)
    error = await update_refusal(
        handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    )
    assert error.type == "PaymentRejected"

    final = await handle.result()
    assert final.paid_at == first.paid_at
    assert await _refunds(pool, data.booking_id) == [
        (payment.payment_reference, "APPLIED", None),
        (extra.payment_reference, "REFUNDED", "ALREADY_PAID"),
    ]
    await record_history(handle, "waitlist_duplicate_payments")


@pytest.mark.usefixtures("worker")
async def test_a_repeat_must_be_the_same_payment(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    """A reference sent again with another amount or currency is not the same request: the
    update is refused (never the first payment's APPROVED, as if the new amount were taken),
    and a signal carrying it changes nothing."""
    rental = await make_rental(pool)
    data = await booking_input(env, rental, lease_days=30)
    handle, held = await start_and_hold(client, data, task_queue)
    payment = payment_for(held)
    first = await handle.execute_update(ApartmentBookingWorkflow.pay, payment)
    assert first.status == "APPROVED"
    for other in (replace(payment, amount=payment.amount + 1), replace(payment, currency="USD")):
        error = await update_refusal(handle.execute_update(ApartmentBookingWorkflow.pay, other))
        assert error.type == "PaymentRejected"
        assert payment.payment_reference in error.message and "same amount" in error.message
        await handle.signal(ApartmentBookingWorkflow.payment_received, other)
    # The exact repeat still answers as the first did.
    assert await handle.execute_update(ApartmentBookingWorkflow.pay, payment) == first
    final = await handle.result()
    assert final.paid_at == first.paid_at
    assert await _refunds(pool, data.booking_id) == [(payment.payment_reference, "APPLIED", None)]
    await record_history(handle, "waitlist_reference_repeated_with_other_terms")


@pytest.mark.usefixtures("worker")
async def test_wrong_amount_or_currency(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool, monthly_rent=99_00, currency="EUR")
    data = await booking_input(env, rental, lease_days=30)
    handle, held = await start_and_hold(client, data, task_queue)

    for wrong in (payment_for(held, amount=98_00), payment_for(held, currency="USD")):
        error = await update_refusal(handle.execute_update(ApartmentBookingWorkflow.pay, wrong))
        assert error.type == "PaymentRejected"
    state = await handle.query(ApartmentBookingWorkflow.state)
    assert state.status == "PENDING"
    assert await _refunds(pool, data.booking_id) == []  # refused updates took no money

    # Money that came in by webhook with the wrong amount or currency is refunded.
    short = payment_for(held, amount=1)
    dollars = payment_for(held, currency="USD")
    await handle.signal(ApartmentBookingWorkflow.payment_received, short)
    await handle.signal(ApartmentBookingWorkflow.payment_received, dollars)
    right = payment_for(held)
    paid = await handle.execute_update(ApartmentBookingWorkflow.pay, right)
    assert paid.status == "APPROVED"
    final = await handle.result()
    assert final.status == "APPROVED"
    assert sorted(await _refunds(pool, data.booking_id)) == sorted(
        [
            (short.payment_reference, "REFUNDED", "WRONG_AMOUNT"),
            (dollars.payment_reference, "REFUNDED", "WRONG_CURRENCY"),
            (right.payment_reference, "APPLIED", None),
        ]
    )
    await record_history(handle, "waitlist_wrong_amount_and_currency")


@pytest.mark.usefixtures("worker")
async def test_payment_by_signal_confirms(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, lease_days=2)
    handle, held = await start_and_hold(client, data, task_queue)
    await handle.signal(ApartmentBookingWorkflow.payment_received, payment_for(held))
    final = await handle.result()
    assert final.status == "APPROVED" and final.lease_ended_at is not None
    await record_history(handle, "waitlist_paid_by_signal")


@pytest.mark.parametrize("hold_seconds", [0, 86_401])
@pytest.mark.usefixtures("worker")
async def test_hold_outside_one_second_to_a_day_is_rejected(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    hold_seconds: int,
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=hold_seconds)
    error = await update_refusal(reserve_with_start(client, data, task_queue))
    assert error.type == "ValidationError"
    assert "holdSeconds" in error.message
    handle = client.get_workflow_handle_for(
        ApartmentBookingWorkflow.run, workflow_id_for(data.booking_id)
    )
    final = await handle.result()
    assert (final.status, final.error_type) == ("REJECTED", "ValidationError")
    assert await booking_row(pool, data.booking_id) is None
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "VACANT"
    if hold_seconds == 0:
        await record_history(handle, "local_rejected_validation")


@pytest.mark.usefixtures("worker")
async def test_unknown_and_unavailable_apartments_are_rejected(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    missing = await booking_input(env, rental, apartment_id="no-such-apartment")
    error = await update_refusal(reserve_with_start(client, missing, task_queue))
    assert error.type == "ApartmentNotFound"
    handle = client.get_workflow_handle_for(
        ApartmentBookingWorkflow.run, workflow_id_for(missing.booking_id)
    )
    assert (await handle.result()).status == "REJECTED"
    await record_history(handle, "local_rejected_not_found")

    first, _ = await start_and_hold(client, await booking_input(env, rental), task_queue)
    taken = await booking_input(env, rental)
    error = await update_refusal(reserve_with_start(client, taken, task_queue))
    assert error.type == "ApartmentUnavailable"
    second = client.get_workflow_handle_for(
        ApartmentBookingWorkflow.run, workflow_id_for(taken.booking_id)
    )
    assert (await second.result()).status == "REJECTED"
    await record_history(second, "local_rejected_unavailable")
    await first.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_update_with_start_is_idempotent_by_key(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    booking_id = booking_id_for(rental.user_id, "key-1")
    assert booking_id == booking_id_for(rental.user_id, "key-1")
    assert booking_id != booking_id_for(rental.user_id, "key-2")
    data = await booking_input(
        env,
        rental,
        booking_id=booking_id,
        idempotency_key="key-1",
        step_function_arn="arn:temporal:default:workflow-type/ApartmentBookingWorkflow",
    )

    async def reserve() -> BookingState:
        start = WithStartWorkflowOperation(
            ApartmentBookingWorkflow.run,
            data,
            id=workflow_id_for(data.booking_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=start_search_attributes(data, None),
        )
        return await client.execute_update_with_start_workflow(
            ApartmentBookingWorkflow.wait_for_hold, start_workflow_operation=start
        )

    first, second = await asyncio.gather(reserve(), reserve())
    assert first.status == second.status == "PENDING"
    assert first.hold_expires_at == second.hold_expires_at
    count = await pool.fetchval(
        "SELECT count(*) FROM bookings WHERE apartment_id = $1", rental.apartment_id
    )
    assert count == 1
    assert (
        await pool.fetchval(
            "SELECT arn FROM step_function_executions WHERE id = $1", workflow_id_for(booking_id)
        )
        == data.step_function_arn
    )
    await client.get_workflow_handle(workflow_id_for(booking_id)).terminate("test done")


# -- truthful answers about money --------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_a_reference_whose_payment_was_refunded_is_refused_not_pending(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    """A webhook's wrong-amount payment under reference R is refunded; a later correct
    payBooking with R must say so, never answer a success-shaped PENDING."""
    rental = await make_rental(pool)
    data = await booking_input(env, rental, lease_days=60)
    handle, held = await start_and_hold(client, data, task_queue)
    wrong = payment_for(held, amount=1)
    await handle.signal(ApartmentBookingWorkflow.payment_received, wrong)
    await eventually(lambda: _refunds(pool, data.booking_id), what="the refund")
    right_amount = payment_for(held, payment_reference=wrong.payment_reference)
    error = await update_refusal(handle.execute_update(ApartmentBookingWorkflow.pay, right_amount))
    assert error.type == "PaymentRejected"
    assert "was used before" in error.message and "refunded (WRONG_AMOUNT)" in error.message
    assert (await handle.query(ApartmentBookingWorkflow.state)).status == "PENDING"
    # A new reference pays.
    paid = await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    assert paid.status == "APPROVED"
    # And the paying reference repeated still answers APPROVED, the refunded one still refused.
    again = await update_refusal(handle.execute_update(ApartmentBookingWorkflow.pay, right_amount))
    assert again.type == "PaymentRejected"
    assert (await handle.result()).status == "APPROVED"
    await record_history(handle, "waitlist_truthful_reused_reference_refused")


@pytest.mark.usefixtures("worker")
async def test_references_are_scoped_to_their_booking(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    first, second = await make_rental(pool), await make_rental(pool)
    handle_a, held_a = await start_and_hold(client, await booking_input(env, first), task_queue)
    handle_b, held_b = await start_and_hold(client, await booking_input(env, second), task_queue)
    reference = f"shared-{uuid.uuid4()}"
    for handle, held in ((handle_a, held_a), (handle_b, held_b)):
        paid = await handle.execute_update(
            ApartmentBookingWorkflow.pay, payment_for(held, payment_reference=reference)
        )
        assert paid.status == "APPROVED"
    rows = await pool.fetch(
        "SELECT booking_id FROM payments WHERE payment_reference = $1 AND outcome = 'APPLIED'",
        reference,
    )
    assert sorted(r["booking_id"] for r in rows) == sorted([held_a.booking_id, held_b.booking_id])
    await handle_a.terminate("test done")
    await handle_b.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_money_for_a_booking_never_placed_is_recorded_for_refund(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    """The payment reaches the workflow before its reservation is refused: recorded, not lost."""
    rental = await make_rental(pool)
    data = await booking_input(env, rental, apartment_id=f"missing-{uuid.uuid4()}")
    payment = PaymentInput(125_000, "EUR", f"pay-{uuid.uuid4()}")
    handle = await client.start_workflow(
        ApartmentBookingWorkflow.run,
        data,
        id=workflow_id_for(data.booking_id),
        task_queue=task_queue,
        search_attributes=start_search_attributes(data, None),
        start_signal="payment_received",
        start_signal_args=[payment],
    )
    final = await handle.result()
    assert (final.status, final.error_type) == ("REJECTED", "ApartmentNotFound")
    rows = await pool.fetch(
        "SELECT payment_reference, amount, currency, refund_reason FROM unplaced_payments "
        "WHERE booking_id = $1",
        data.booking_id,
    )
    assert [tuple(r) for r in rows] == [(payment.payment_reference, 125_000, "EUR", "NEVER_PLACED")]
    await record_history(handle, "local_truthful_unplaced_payment_refunded")
