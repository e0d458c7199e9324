"""The waiting list on the time-skipping server: real worker, real Postgres.

A release (a hold expired or cancelled, a lease ended) offers the apartment to the first
WAITING entry in the same transaction: the apartment never shows VACANT while someone waits.
The offer is a hold in that tenant's name with its own booking workflow and durable timer;
paying it books the entry, letting it lapse or leaving passes the apartment on.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from booking.contract import (
    BookingState,
    WaitlistState,
    offer_booking_id_for,
)
from tests.helpers import (
    apartment_row,
    booking_input,
    booking_row,
    eventually,
    insert_user,
    join_waitlist,
    make_rental,
    offer_handle,
    offered_booking,
    payment_for,
    record_history,
    start_and_hold,
)
from workflows.booking import ApartmentBookingWorkflow
from workflows.waitlist import WaitlistEntryWorkflow

OFFER = timedelta(seconds=86_400)  # BOOKING_WAITLIST_OFFER_SECONDS' default


async def _entry(pool: asyncpg.Pool, entry_id: str) -> tuple[str, str | None]:
    row = await pool.fetchrow(
        "SELECT status, offered_booking_id FROM waitlist_entries WHERE id = $1", entry_id
    )
    assert row is not None
    return row["status"], row["offered_booking_id"]


async def _entry_events(pool: asyncpg.Pool, entry_id: str) -> list[tuple[str | None, str, str]]:
    rows = await pool.fetch(
        "SELECT from_status, to_status, reason FROM booking_events "
        "WHERE waitlist_entry_id = $1 ORDER BY id",
        entry_id,
    )
    return [(r["from_status"], r["to_status"], r["reason"]) for r in rows]


async def _closed(handle: WorkflowHandle[Any, Any]) -> object:
    """The result of an execution that is closing by itself, without asking the test server to
    skip time for it (awaiting a result does: the offers' timers would run out meanwhile)."""
    await eventually(
        handle.describe,
        lambda d: d.status is not None and d.status != WorkflowExecutionStatus.RUNNING,
        what=f"{handle.id} closing",
    )
    return await handle.result()


async def _skip_to(env: WorkflowEnvironment, until: datetime) -> None:
    """Skip the server's clock to ``until`` a day at a time: one sleep across a timer that
    starts work (the lease's end) was seen to stall the time-skipping server."""
    while (left := until - await env.get_current_time()) > timedelta(0):
        await env.sleep(min(left, timedelta(days=1)))


@pytest.mark.usefixtures("worker")
async def test_an_expired_hold_is_offered_to_the_first_in_line_who_pays(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    second, third = await insert_user(pool), await insert_user(pool)
    data = await booking_input(env, rental, hold_seconds=600)
    handle, held = await start_and_hold(client, data, task_queue)
    entry_handle, first_in_line = await join_waitlist(client, env, rental, second, task_queue)
    next_handle, next_in_line = await join_waitlist(client, env, rental, third, task_queue)
    assert first_in_line.status == next_in_line.status == "WAITING"
    assert await _entry(pool, first_in_line.entry_id) == ("WAITING", None)

    # The hold runs out: the apartment goes straight to the first in line.
    assert held.hold_expires_at is not None
    await env.sleep(held.hold_expires_at - await env.get_current_time())
    offer = await offered_booking(client, pool, first_in_line.entry_id)
    offer_id = offer_booking_id_for(first_in_line.entry_id)
    assert (offer.booking_id, offer.user_id) == (offer_id, second)
    assert await _entry(pool, first_in_line.entry_id) == ("OFFERED", offer_id)
    assert await _entry(pool, next_in_line.entry_id) == ("WAITING", None)
    apartment = await apartment_row(pool, rental.apartment_id)
    assert apartment["apartment_status"] == "RESERVED"  # never VACANT in between
    row = await booking_row(pool, offer_id)
    assert row is not None and row["booking_status"] == "PENDING"
    # The offer's hold is timed on the workflow's clock from the release: a full offer period.
    assert offer.hold_expires_at is not None
    assert offer.hold_expires_at - held.hold_expires_at >= OFFER
    assert row["hold_expires_at"] == offer.hold_expires_at
    final = await handle.query(ApartmentBookingWorkflow.state)
    assert (final.status, final.cancellation_reason) == ("CANCELLED", "EXPIRED")

    # Paying the offer is an ordinary payment; it books the entry.
    offered = offer_handle(client, first_in_line.entry_id)
    paid = await offered.execute_update(ApartmentBookingWorkflow.pay, payment_for(offer))
    assert paid.status == "APPROVED"
    settled = await _closed(entry_handle)
    assert isinstance(settled, WaitlistState) and settled.status == "BOOKED"
    assert await _entry(pool, first_in_line.entry_id) == ("BOOKED", offer_id)
    assert await _entry_events(pool, first_in_line.entry_id) == [
        (None, "WAITING", "JOINED"),
        ("WAITING", "OFFERED", "OFFERED"),
        ("OFFERED", "BOOKED", "PAID"),
    ]
    apartment = await apartment_row(pool, rental.apartment_id)
    assert (apartment["apartment_status"], apartment["tenant_id"]) == ("OCCUPIED", second)
    await record_history(entry_handle, "entry_offered_then_booked")
    # Skip to just past the lease's end (a handle without the run's id cannot wait for a
    # result on the time-skipping server).
    lease_end = datetime.combine(offer.end_date, time.min, tzinfo=UTC)
    await _skip_to(env, lease_end + timedelta(minutes=1))
    lease = await eventually(
        lambda: offered.query(ApartmentBookingWorkflow.state),
        lambda state: state.lease_ended_at is not None,
        what="the offered lease ending",
    )
    assert lease.lease_ended_at == lease_end
    # The expired booking has long waited out its late-payment window.
    await _closed(handle)
    await record_history(handle, "waitlist_offer_made_on_expiry")
    # The lease's end would offer the apartment to the next in line, but that tenant's stay
    # was to begin long before: the entry lapses, its workflow is told, the apartment is free.
    assert await _entry(pool, next_in_line.entry_id) == ("LAPSED", None)
    assert getattr(await _closed(next_handle), "status", None) == "LAPSED"
    apartment = await apartment_row(pool, rental.apartment_id)
    assert (apartment["apartment_status"], apartment["tenant_id"]) == ("VACANT", None)
    await _closed(offered)
    await record_history(offered, "waitlist_offer_paid")


@pytest.mark.usefixtures("worker")
async def test_a_lapsed_offer_passes_on_and_the_last_leaving_frees_the_apartment(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    second, third = await insert_user(pool), await insert_user(pool)
    data = await booking_input(env, rental, hold_seconds=600)
    handle, _ = await start_and_hold(client, data, task_queue)
    second_handle, second_entry = await join_waitlist(client, env, rental, second, task_queue)
    third_handle, third_entry = await join_waitlist(client, env, rental, third, task_queue)

    await handle.execute_update(ApartmentBookingWorkflow.cancel)
    offer = await offered_booking(client, pool, second_entry.entry_id)
    # Nobody pays: the offer lapses and the next in line gets one.
    lapsed_handle = offer_handle(client, second_entry.entry_id)
    assert offer.hold_expires_at is not None
    await env.sleep(offer.hold_expires_at - await env.get_current_time())
    await offered_booking(client, pool, third_entry.entry_id)
    assert getattr(await _closed(second_handle), "status", None) == "LAPSED"
    assert await _entry(pool, second_entry.entry_id) == (
        "LAPSED",
        offer_booking_id_for(second_entry.entry_id),
    )
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "RESERVED"

    # The third declines its offer by cancelling it (what leaveWaitlist does for an offer).
    third_offer = offer_handle(client, third_entry.entry_id)
    await third_offer.execute_update(ApartmentBookingWorkflow.cancel)
    assert getattr(await _closed(third_handle), "status", None) == "LEFT"
    assert await _entry_events(pool, third_entry.entry_id) == [
        (None, "WAITING", "JOINED"),
        ("WAITING", "OFFERED", "OFFERED"),
        ("OFFERED", "LEFT", "TENANT_CANCELLED"),
    ]
    apartment = await apartment_row(pool, rental.apartment_id)
    assert (apartment["apartment_status"], apartment["tenant_id"]) == ("VACANT", None)
    await lapsed_handle.terminate("test done: the late-payment window is not needed")
    await record_history(lapsed_handle, "waitlist_offer_lapsed")
    for h in (handle, third_offer):
        await h.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_joining_rules(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    other = await insert_user(pool)
    # A vacant apartment: reserve it instead.
    with pytest.raises(WorkflowUpdateFailedError) as vacant:
        await join_waitlist(client, env, rental, other, task_queue)
    assert isinstance(vacant.value.cause, ApplicationError)
    assert vacant.value.cause.type == "ValidationError"
    assert "reserve it instead" in vacant.value.cause.message

    handle, _ = await start_and_hold(client, await booking_input(env, rental), task_queue)
    # The holder itself cannot queue behind its own hold.
    with pytest.raises(WorkflowUpdateFailedError) as own:
        await join_waitlist(client, env, rental, rental.user_id, task_queue)
    assert isinstance(own.value.cause, ApplicationError)
    assert own.value.cause.type == "ValidationError"
    # One live entry per tenant and apartment: joining again answers the same entry.
    entry_handle, first = await join_waitlist(client, env, rental, other, task_queue)
    _, again = await join_waitlist(client, env, rental, other, task_queue)
    assert again.existing_entry_id == first.entry_id
    count = await pool.fetchval(
        "SELECT count(*) FROM waitlist_entries WHERE apartment_id = $1", rental.apartment_id
    )
    assert count == 1

    # Leaving while waiting; leaving again answers the same; rejoining makes a new entry.
    left = await entry_handle.execute_update(WaitlistEntryWorkflow.leave)
    assert left.status == "LEFT"
    assert getattr(await _closed(entry_handle), "status", None) == "LEFT"
    assert await _entry(pool, first.entry_id) == ("LEFT", None)
    await record_history(entry_handle, "entry_left_while_waiting")
    _, rejoined = await join_waitlist(client, env, rental, other, task_queue)
    assert rejoined.status == "WAITING" and rejoined.entry_id != first.entry_id
    # Nobody left waiting but the new entry: the cancel hands the apartment to it.
    await handle.execute_update(ApartmentBookingWorkflow.cancel)
    await offered_booking(client, pool, rejoined.entry_id)
    await offer_handle(client, rejoined.entry_id).terminate("test done")
    await handle.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_an_entry_whose_stay_has_begun_lapses_at_the_lease_end(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    """A lease's end offers the apartment on, but not for a stay that has already begun."""
    rental = await make_rental(pool)
    waiting = await insert_user(pool)
    data = await booking_input(env, rental, lease_days=30)
    handle, held = await start_and_hold(client, data, task_queue)
    await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    # The entry's stay starts tomorrow.
    entry_handle, entry = await join_waitlist(client, env, rental, waiting, task_queue)
    final = await handle.result()
    assert final.lease_ended_at is not None
    assert await _entry(pool, entry.entry_id) == ("LAPSED", None)
    assert (await _entry_events(pool, entry.entry_id))[-1] == ("WAITING", "LAPSED", "STAY_STARTED")
    apartment = await apartment_row(pool, rental.apartment_id)
    assert (apartment["apartment_status"], apartment["tenant_id"]) == ("VACANT", None)
    assert getattr(await _closed(entry_handle), "status", None) == "LAPSED"


@pytest.mark.usefixtures("worker")
async def test_offers_are_exempt_from_the_hold_limit(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    """A tenant already at the hold limit still gets the offer it queued for."""
    busy = await make_rental(pool)
    handles = []
    for _ in range(3):
        rental = await make_rental(pool)
        data = await booking_input(env, rental, user_id=busy.user_id)
        handles.append((await start_and_hold(client, data, task_queue))[0])
    wanted = await make_rental(pool)  # held by its own tenant
    handle, _ = await start_and_hold(client, await booking_input(env, wanted), task_queue)
    _, entry = await join_waitlist(client, env, wanted, busy.user_id, task_queue)
    await handle.execute_update(ApartmentBookingWorkflow.cancel)
    offer = await offered_booking(client, pool, entry.entry_id)
    assert offer.user_id == busy.user_id
    pending = await pool.fetchval(
        "SELECT count(*) FROM bookings WHERE user_id = $1 AND booking_status = 'PENDING'",
        busy.user_id,
    )
    assert pending == 4
    # ... and the offer does not count against it afterwards either: with one hold given up
    # (two holds and the offer left), the tenant may place a third hold of its own.
    await handles[0].execute_update(ApartmentBookingWorkflow.cancel)
    another = await make_rental(pool)
    data = await booking_input(env, another, user_id=busy.user_id)
    third, state = await start_and_hold(client, data, task_queue)
    assert state.status == "PENDING"
    for h in [*handles[1:], third, handle, offer_handle(client, entry.entry_id)]:
        await h.terminate("test done")


async def waiting_on_free_range(pool: asyncpg.Pool, apartment_id: str) -> list[str]:
    """The apartment's WAITING entries whose whole range no live stay touches."""
    rows = await pool.fetch(
        """SELECT w.id FROM waitlist_entries w
            WHERE w.apartment_id = $1 AND w.status = 'WAITING'
              AND NOT EXISTS (SELECT 1 FROM bookings b
                               WHERE b.apartment_id = w.apartment_id AND b.stay && w.stay
                                 AND (b.booking_status = 'PENDING'
                                      OR (b.booking_status = 'APPROVED'
                                          AND b.lease_ended_at IS NULL)))""",
        apartment_id,
    )
    return [r["id"] for r in rows]


@pytest.mark.usefixtures("worker")
async def test_a_join_racing_a_release_never_waits_on_a_vacant_apartment(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    """Join and cancel sent together, many times: the join lands before the release (and gets
    the offer) or after it (and is told to reserve), never on the list of a VACANT one."""
    for _ in range(8):
        rental = await make_rental(pool)
        joiner = await insert_user(pool)
        handle, _ = await start_and_hold(client, await booking_input(env, rental), task_queue)
        cancelled, joined = await asyncio.gather(
            handle.execute_update(ApartmentBookingWorkflow.cancel),
            join_waitlist(client, env, rental, joiner, task_queue),
            return_exceptions=True,
        )
        assert isinstance(cancelled, BookingState), cancelled
        status = (await apartment_row(pool, rental.apartment_id))["apartment_status"]
        if isinstance(joined, tuple):
            entry = joined[1]
            await offered_booking(client, pool, entry.entry_id)
            assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == (
                "RESERVED"
            )
            await offer_handle(client, entry.entry_id).terminate("test done")
        else:
            assert isinstance(joined, WorkflowUpdateFailedError), joined
            assert isinstance(joined.cause, ApplicationError)
            assert joined.cause.type == "ValidationError"
            assert status == "VACANT"
        # Never left WAITING for nights that are free (what the doctor calls WAITING_ON_FREE).
        assert await waiting_on_free_range(pool, rental.apartment_id) == []
        await handle.terminate("test done")
