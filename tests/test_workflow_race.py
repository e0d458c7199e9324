"""The payment/timer race: a payment and the hold's timer in one workflow task.

To put both in one task deterministically, the worker is stopped while a short hold is
running, the server's clock passes the deadline (the timer fires, no worker takes the task),
the payment is sent, and only then a worker starts: its first task holds TimerFired and the
payment together. (The clock runs in real time here: while a workflow task waits for a
worker the test server does not skip time reliably.)

These tests stop and restart workers, which after many other tests on the same server was
seen to leave the time-skipping server unable to skip time for later tests; they get a
time-skipping server of their own so that nothing they do leaks into the shared one.

The workflow's clock judges: the task runs at or after the deadline, so the booking expires
and the money is refunded; exactly one outcome, never both. The exception is a signalled
payment stamped by our webhook (``received_at``) with a time before the deadline: it was paid
in time while no worker ran, so it wins over the timer that fired in the same task.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import asyncpg
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from booking.contract import BookingState, ExtendHoldInput
from booking.devstack.binaries import find_binary
from booking.settings import Settings
from booking.temporal import register_search_attributes
from tests.helpers import (
    activity_steps,
    apartment_row,
    booking_client,
    booking_input,
    booking_row,
    eventually,
    make_rental,
    payment_for,
    record_history,
    start_and_hold,
)
from worker import create_worker
from workflows.booking import ApartmentBookingWorkflow

Handle = WorkflowHandle[ApartmentBookingWorkflow, BookingState]
HOLD = 3  # seconds: long enough to stop the worker, short enough to wait for


@pytest.fixture(scope="module")
async def race_env() -> AsyncIterator[WorkflowEnvironment]:
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server")
    )
    await register_search_attributes(environment.client, environment.client.namespace)
    try:
        yield environment
    finally:
        await environment.shutdown()


def _worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> Worker:
    # No sticky cache: after a restart the next task goes to the normal queue at once.
    return create_worker(client, pool, Settings(), task_queue=task_queue, max_cached_workflows=0)


def _task_batches(events: Sequence[HistoryEvent]) -> list[set[int]]:
    """The event types each workflow task was handed (events since the previous task)."""
    batches: list[set[int]] = []
    current: set[int] = set()
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            batches.append(current)
            current = set()
        elif event.event_type != EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            current.add(event.event_type)
    return batches


async def _hold_then_stop(
    env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str, hold_seconds: int
) -> tuple[Client, Handle, BookingState, str]:
    """A booking on hold whose worker has stopped: (client, handle, held state, apartment)."""
    client = booking_client(env)
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=hold_seconds)
    async with _worker(client, pool, task_queue):
        handle, held = await start_and_hold(client, data, task_queue)
    # Keep the handle from the start call: on the time-skipping server only it skips time
    # while waiting for the result.
    return client, handle, held, rental.apartment_id


async def _settled(handle: Handle, *, refunds: int) -> BookingState:
    """The state once the hold is decided and ``refunds`` refund activities have completed
    (besides reserve and release, ordinary or local activities alike).

    Polled rather than awaited as a result: the execution then waits out its late-payment
    window, and how fast that is skipped depends on everything else on the shared server.
    """
    for _ in range(200):
        state = await handle.query(ApartmentBookingWorkflow.state)
        steps = activity_steps(await handle.fetch_history())
        completed = sum(1 for step in steps if step.outcome == "completed")
        # reserve + release (+ refunds) have completed
        if state.status != "PENDING" and completed >= 2 + refunds:
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"the booking did not settle: {state}")


async def _until_past(env: WorkflowEnvironment, deadline: datetime | None) -> None:
    assert deadline is not None
    assert await env.get_current_time() < deadline, "the hold ended before the worker stopped"
    await eventually(
        env.get_current_time,
        lambda now: now > deadline + timedelta(milliseconds=200),
        interval=0.1,
        what="the server clock passing the deadline",
    )


async def test_signal_in_the_same_task_as_the_timer_is_refunded(
    race_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    env = race_env
    client, handle, held, apartment_id = await _hold_then_stop(env, pool, task_queue, HOLD)
    booking_id = held.booking_id
    await _until_past(env, held.hold_expires_at)
    payment = payment_for(held)
    await handle.signal(ApartmentBookingWorkflow.payment_received, payment)

    async with _worker(client, pool, task_queue):
        final = await _settled(handle, refunds=1)

    batches = _task_batches((await handle.fetch_history()).events)
    assert any(
        {EventType.EVENT_TYPE_TIMER_FIRED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED}
        <= batch
        for batch in batches
    ), "the payment and the timer were not delivered in one workflow task"
    assert (final.status, final.cancellation_reason, final.paid_at) == (
        "CANCELLED",
        "EXPIRED",
        None,
    )
    row = await booking_row(pool, booking_id)
    assert row is not None and row["booking_status"] == "CANCELLED"
    assert (await apartment_row(pool, apartment_id))["apartment_status"] == "VACANT"
    outcomes = await pool.fetch(
        """SELECT p.outcome, r.reason FROM payments p JOIN refunds r ON r.payment_id = p.id
            WHERE p.payment_reference = $1""",
        payment.payment_reference,
    )
    assert [(r["outcome"], r["reason"]) for r in outcomes] == [("REFUNDED", "HOLD_OVER")]
    await handle.terminate("test done: the late-payment window is not needed")
    await record_history(handle, "waitlist_race_signal_with_timer")


async def test_update_in_the_same_task_as_the_timer_is_refused(
    race_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    env = race_env
    client, handle, held, apartment_id = await _hold_then_stop(env, pool, task_queue, HOLD)
    booking_id = held.booking_id
    await _until_past(env, held.hold_expires_at)
    # The update waits for a worker; it and the fired timer reach the next task together.
    paying = asyncio.create_task(
        handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    )
    await asyncio.sleep(0.5)
    async with _worker(client, pool, task_queue):
        try:
            await paying
            raise AssertionError("a payment at the deadline was accepted")
        except WorkflowUpdateFailedError as failure:
            assert isinstance(failure.cause, ApplicationError)
            assert failure.cause.type == "BookingExpired"
        final = await _settled(handle, refunds=0)
    assert (final.status, final.cancellation_reason) == ("CANCELLED", "EXPIRED")
    row = await booking_row(pool, booking_id)
    assert row is not None and row["cancellation_reason"] == "EXPIRED"
    assert (
        await pool.fetchval("SELECT count(*) FROM payments WHERE booking_id = $1", booking_id) == 0
    )
    assert (await apartment_row(pool, apartment_id))["apartment_status"] == "VACANT"
    await handle.terminate("test done: the late-payment window is not needed")
    await record_history(handle, "waitlist_race_update_with_timer")


async def test_signal_received_before_the_deadline_wins_over_the_timer(
    race_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    env = race_env
    client, handle, held, apartment_id = await _hold_then_stop(env, pool, task_queue, HOLD)
    assert held.hold_expires_at is not None
    # The webhook took the money while the hold was open, but no worker ran to see it.
    received_at = held.hold_expires_at - timedelta(seconds=1)
    await _until_past(env, held.hold_expires_at)
    payment = replace(payment_for(held), received_at=received_at)
    await handle.signal(ApartmentBookingWorkflow.payment_received, payment)

    async with _worker(client, pool, task_queue):
        final = await eventually(
            lambda: handle.query(ApartmentBookingWorkflow.state),
            lambda state: state.status != "PENDING",
            what="the booking settling",
        )

    batches = _task_batches((await handle.fetch_history()).events)
    assert any(
        {EventType.EVENT_TYPE_TIMER_FIRED, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED}
        <= batch
        for batch in batches
    ), "the payment and the timer were not delivered in one workflow task"
    assert final.status == "APPROVED"
    assert final.paid_at == received_at
    row = await booking_row(pool, held.booking_id)
    assert row is not None
    assert (row["booking_status"], row["paid_at"]) == ("APPROVED", received_at)
    apartment = await apartment_row(pool, apartment_id)
    assert apartment["apartment_status"] == "OCCUPIED"
    outcomes = await pool.fetch(
        "SELECT outcome FROM payments WHERE payment_reference = $1", payment.payment_reference
    )
    assert [r["outcome"] for r in outcomes] == ["APPLIED"]
    assert (
        await pool.fetchval("SELECT count(*) FROM refunds WHERE booking_id = $1", held.booking_id)
        == 0
    )
    await handle.terminate("test done: the lease is not needed")
    await record_history(handle, "local_race_signal_received_before_deadline")


async def test_extension_in_the_same_task_as_the_timer_is_refused(
    race_env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> None:
    """An extension that reaches the workflow with the fired timer is too late: the hold ends
    at the deadline it had, and the row and the apartment say so."""
    env = race_env
    client, handle, held, apartment_id = await _hold_then_stop(env, pool, task_queue, HOLD)
    await _until_past(env, held.hold_expires_at)
    extending = asyncio.create_task(
        handle.execute_update(ApartmentBookingWorkflow.extend_hold, ExtendHoldInput(600, 1))
    )
    await asyncio.sleep(0.5)
    async with _worker(client, pool, task_queue):
        try:
            await extending
            raise AssertionError("an extension at the deadline was accepted")
        except WorkflowUpdateFailedError as failure:
            assert isinstance(failure.cause, ApplicationError)
            assert failure.cause.type == "HoldNotExtendable"
        final = await _settled(handle, refunds=0)
    assert (final.status, final.cancellation_reason) == ("CANCELLED", "EXPIRED")
    assert (final.hold_expires_at, final.hold_extensions) == (held.hold_expires_at, 0)
    row = await booking_row(pool, held.booking_id)
    assert row is not None
    assert (row["cancellation_reason"], row["hold_expires_at"], row["hold_extensions"]) == (
        "EXPIRED",
        held.hold_expires_at,
        0,
    )
    assert (await apartment_row(pool, apartment_id))["apartment_status"] == "VACANT"
    await handle.terminate("test done: the late-payment window is not needed")
    await record_history(handle, "waitlist_race_extension_with_timer")
