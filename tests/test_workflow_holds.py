"""extendHold and the hold limit, on the time-skipping server with the real worker and Postgres.

An extension moves the hold's durable timer (the run loop waits on a deadline that the update
changes), the row's ``hold_expires_at``, the ``HoldExpiresAt`` search attribute and logs a
``HOLD_EXTENDED`` event; a payment after the old deadline but before the new one pays. The hold
limit is the reserve step's, counted under the tenant's row lock.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import asyncpg
import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from booking.contract import MAX_HOLD_SECONDS, BookingState, ExtendHoldInput
from booking.search_attributes import HOLD_EXPIRES_AT
from tests.helpers import (
    apartment_row,
    booking_input,
    booking_row,
    events,
    insert_apartment,
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
ONE_EXTENSION = 1  # BOOKING_MAX_HOLD_EXTENSIONS' default, as the API passes it


async def _extend(handle: Handle, seconds: int, most: int = ONE_EXTENSION) -> BookingState:
    return await handle.execute_update(
        ApartmentBookingWorkflow.extend_hold, ExtendHoldInput(seconds, most)
    )


@pytest.mark.usefixtures("worker")
async def test_an_extension_moves_the_timer_the_row_and_the_search_attribute(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=3600, lease_days=30)
    handle, held = await start_and_hold(client, data, task_queue)
    assert held.hold_expires_at is not None
    old_deadline = held.hold_expires_at

    # Half-way through the hold, extend it: seconds later than it was, not from now.
    await env.sleep(timedelta(minutes=30))
    extended = await _extend(handle, 1800)
    new_deadline = old_deadline + timedelta(seconds=1800)
    assert (extended.hold_expires_at, extended.hold_extensions) == (new_deadline, 1)
    row = await booking_row(pool, data.booking_id)
    assert row is not None
    assert (row["hold_expires_at"], row["hold_extensions"]) == (new_deadline, 1)
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(HOLD_EXPIRES_AT) == new_deadline

    # Past the old deadline the hold is still open: the timer was moved, not only the row.
    await env.sleep(old_deadline - await env.get_current_time() + timedelta(minutes=10))
    paid = await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(extended))
    assert paid.status == "APPROVED"
    assert paid.paid_at is not None and old_deadline < paid.paid_at < new_deadline

    final = await handle.result()
    assert final.status == "APPROVED" and final.lease_ended_at is not None
    assert await events(pool, data.booking_id) == [
        (None, "PENDING", "RESERVED"),
        ("PENDING", "PENDING", "HOLD_EXTENDED"),
        ("PENDING", "APPROVED", "PAID"),
        *stay_start_events(paid.paid_at, data.start_date),
        ("APPROVED", "APPROVED", "LEASE_ENDED"),
    ]
    details = await pool.fetchval(
        "SELECT details FROM booking_events WHERE booking_id = $1 AND reason = 'HOLD_EXTENDED'",
        data.booking_id,
    )
    assert old_deadline.isoformat() in str(details) and new_deadline.isoformat() in str(details)
    await record_history(handle, "waitlist_extended_then_paid")


@pytest.mark.usefixtures("worker")
async def test_an_extended_hold_expires_at_its_new_deadline(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=600)
    handle, held = await start_and_hold(client, data, task_queue)
    extended = await _extend(handle, 600)
    assert extended.hold_expires_at is not None

    # At the very instant of the new deadline a payment is too late.
    await env.sleep(extended.hold_expires_at - await env.get_current_time())
    late = await update_refusal(
        handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    )
    assert late.type == "BookingExpired"
    final = await handle.result()
    assert (final.status, final.cancellation_reason) == ("CANCELLED", "EXPIRED")
    assert final.hold_extensions == 1
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "VACANT"
    assert await events(pool, data.booking_id) == [
        (None, "PENDING", "RESERVED"),
        ("PENDING", "PENDING", "HOLD_EXTENDED"),
        ("PENDING", "CANCELLED", "EXPIRED"),
    ]
    await record_history(handle, "waitlist_extended_then_expired")


@pytest.mark.usefixtures("worker")
async def test_extensions_beyond_the_rules_are_refused_with_the_reason(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=3600)
    handle, held = await start_and_hold(client, data, task_queue)

    for seconds in (0, -5, MAX_HOLD_SECONDS + 1):
        wrong = await update_refusal(_extend(handle, seconds))
        assert wrong.type == "ValidationError", seconds
    # The whole hold lasts at most 24 h: one hour held, 23 h more is the most.
    too_long = await update_refusal(_extend(handle, 23 * 3600 + 1))
    assert too_long.type == "HoldNotExtendable" and "24 h" in too_long.message
    # Two allowed (as a deployment may set), the third refused.
    await _extend(handle, 600, most=2)
    await _extend(handle, 600, most=2)
    third = await update_refusal(_extend(handle, 600, most=2))
    assert third.type == "HoldNotExtendable"
    assert "BOOKING_MAX_HOLD_EXTENSIONS=2" in third.message

    # Refused ones changed nothing: two extensions in the row, the events, the state.
    row = await booking_row(pool, data.booking_id)
    assert row is not None and row["hold_extensions"] == 2
    assert held.hold_expires_at is not None
    assert row["hold_expires_at"] == held.hold_expires_at + timedelta(seconds=1200)
    reasons = [reason for _, _, reason in await events(pool, data.booking_id)]
    assert reasons == ["RESERVED", "HOLD_EXTENDED", "HOLD_EXTENDED"]

    # Paid: nothing left to extend.
    await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    paid = await update_refusal(_extend(handle, 600, most=5))
    assert paid.type == "HoldNotExtendable" and "APPROVED" in paid.message
    await handle.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_an_expired_or_cancelled_hold_cannot_be_extended(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=60)
    handle, held = await start_and_hold(client, data, task_queue)
    assert held.hold_expires_at is not None
    await env.sleep(timedelta(seconds=61))
    # The execution waits out its late-payment window: it still answers, and refuses.
    expired = await update_refusal(_extend(handle, 600))
    assert expired.type == "HoldNotExtendable" and "CANCELLED" in expired.message

    other = await booking_input(env, await make_rental(pool))
    cancelled_handle, _ = await start_and_hold(client, other, task_queue)
    await cancelled_handle.execute_update(ApartmentBookingWorkflow.cancel)
    cancelled = await update_refusal(_extend(cancelled_handle, 600))
    assert cancelled.type == "HoldNotExtendable"
    for h in (handle, cancelled_handle):
        await h.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_a_payment_and_an_extension_at_once_end_in_one_outcome(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    """Sent together, many times: the booking is paid every time; the extension is either
    applied before the payment or refused, and the row agrees with the workflow."""
    for _ in range(6):
        rental = await make_rental(pool)
        data = await booking_input(env, rental, hold_seconds=900)
        handle, held = await start_and_hold(client, data, task_queue)
        results = await asyncio.gather(
            handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held)),
            _extend(handle, 600),
            return_exceptions=True,
        )
        paid, extension = results
        assert isinstance(paid, BookingState) and paid.status == "APPROVED", paid
        state = await handle.query(ApartmentBookingWorkflow.state)
        row = await booking_row(pool, data.booking_id)
        assert row is not None and row["booking_status"] == "APPROVED"
        if isinstance(extension, BookingState):
            assert state.hold_extensions == row["hold_extensions"] == 1
        else:
            assert isinstance(extension, WorkflowUpdateFailedError), extension
            assert isinstance(extension.cause, ApplicationError)
            assert extension.cause.type == "HoldNotExtendable"
            assert state.hold_extensions == row["hold_extensions"] == 0
        assert state.hold_expires_at == row["hold_expires_at"]
        assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "OCCUPIED"
        await handle.terminate("test done")


# -- the hold limit --------------------------------------------------------------------------


async def _apartments(pool: asyncpg.Pool, building_id: str, count: int) -> list[str]:
    return [await insert_apartment(pool, building_id) for _ in range(count)]


@pytest.mark.usefixtures("worker")
async def test_concurrent_reserves_by_one_tenant_place_at_most_the_limit(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    apartments = [rental.apartment_id, *await _apartments(pool, rental.building_id, 7)]
    inputs = [await booking_input(env, rental, apartment_id=apartment) for apartment in apartments]
    results = await asyncio.gather(
        *(reserve_with_start(client, data, task_queue) for data in inputs),
        return_exceptions=True,
    )
    held = [r for r in results if isinstance(r, tuple)]
    refused = [r for r in results if not isinstance(r, tuple)]
    assert len(held) == 3, results  # BOOKING_MAX_HOLDS_PER_TENANT's default
    for failure in refused:
        assert isinstance(failure, WorkflowUpdateFailedError), failure
        assert isinstance(failure.cause, ApplicationError)
        assert failure.cause.type == "HoldLimitReached"
        assert "BOOKING_MAX_HOLDS_PER_TENANT=3" in failure.cause.message
    pending = await pool.fetchval(
        "SELECT count(*) FROM bookings WHERE user_id = $1 AND booking_status = 'PENDING'",
        rental.user_id,
    )
    assert pending == 3
    reserved = await pool.fetchval(
        "SELECT count(*) FROM apartments_on($2) "
        "WHERE building_id = $1 AND apartment_status = 'RESERVED'",
        rental.building_id,
        inputs[0].start_date,
    )
    assert reserved == 3

    # Paying one and cancelling another frees two slots.
    (first, first_state), (second, _), _third = held
    await first.execute_update(ApartmentBookingWorkflow.pay, payment_for(first_state))
    await second.execute_update(ApartmentBookingWorkflow.cancel)
    free = [a for a in apartments if (await apartment_row(pool, a))["apartment_status"] == "VACANT"]
    retries = [await booking_input(env, rental, apartment_id=a) for a in free[:3]]
    again = await asyncio.gather(
        *(reserve_with_start(client, data, task_queue) for data in retries),
        return_exceptions=True,
    )
    assert sum(isinstance(r, tuple) for r in again) == 2, again
    for r in [*held, *(r for r in again if isinstance(r, tuple))]:
        await r[0].terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_the_limit_is_per_tenant(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    other = await make_rental(pool)
    apartments = await _apartments(pool, rental.building_id, 4)
    handles = []
    for apartment in apartments[:3]:
        data = await booking_input(env, rental, apartment_id=apartment)
        handles.append((await reserve_with_start(client, data, task_queue))[0])
    # Another tenant is not held back by the first one's three holds.
    data = await booking_input(env, other, apartment_id=apartments[3])
    handle, state = await reserve_with_start(client, data, task_queue)
    assert state.status == "PENDING"
    for h in [*handles, handle]:
        await h.terminate("test done")
