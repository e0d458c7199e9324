"""After a failed reserve, the workflow sweeps up what an abandoned attempt may have committed.

The reserve activity is replaced by name (a unit test of the workflow's failure paths): it plays
the abandoned attempt by committing through the real activity, then fails the way its retry
would have. The release that must follow is the real activity against the real database.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities import AttemptBounds, BookingActivities
from booking.contract import BookingState, Reservation, ReserveRequest, reserve_rejection_details
from booking.errors import DOMAIN_ERRORS, ReservationFailed
from tests.helpers import (
    activity_steps,
    apartment_row,
    booking_input,
    booking_row,
    make_rental,
    record_history,
    start_booking,
)
from workflows.booking import RESERVE_SWEEP_DELAY, ApartmentBookingWorkflow


def _worker(
    client: Client, pool: asyncpg.Pool, task_queue: str, reserve: Callable[..., Any]
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[ApartmentBookingWorkflow],
        activities=[reserve, BookingActivities(pool).release_and_offer],
    )


async def _steps(handle: WorkflowHandle[ApartmentBookingWorkflow, BookingState]) -> list[str]:
    """Timers (with their length) and activities (ordinary or local), in history order."""
    history = await handle.fetch_history()
    steps = {step.event_id: step.name for step in activity_steps(history)}
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            timeout = event.timer_started_event_attributes.start_to_fire_timeout
            steps[event.event_id] = f"timer {timeout.ToTimedelta()}"
    return [steps[event_id] for event_id in sorted(steps)]


async def _rejection(handle: WorkflowHandle[ApartmentBookingWorkflow, BookingState]) -> str:
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(ApartmentBookingWorkflow.wait_for_hold)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type in DOMAIN_ERRORS  # the API shows it as is, never as InternalFailure
    return f"{cause.type}: {cause.message}"


# Since WAITLIST_PATCH the sweep's release also offers the apartment to the waiting list.
SWEPT = ["reserve_apartment", f"timer {RESERVE_SWEEP_DELAY}", "release_and_offer"]


async def test_refusal_on_a_retry_releases_the_abandoned_attempts_hold(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    real = BookingActivities(pool)
    attempts: list[int] = []

    @activity.defn(name="reserve_apartment")
    async def reserve(request: ReserveRequest) -> Reservation:
        attempt = activity.info().attempt
        attempts.append(attempt)
        if attempt == 1:
            raise ApplicationError("attempt 1 abandoned", type="ConnectionLost")
        # The abandoned attempt 1 commits late, and its retry is refused as old code did.
        await real.reserve_apartment(request)
        raise ApplicationError(
            f"apartment {request.booking.apartment_id} is RESERVED, not VACANT",
            reserve_rejection_details((), attempt),
            type="ApartmentUnavailable",
            non_retryable=True,
        )

    data = await booking_input(env, rental)
    async with _worker(client, pool, task_queue, reserve):
        handle = await start_booking(client, data, task_queue)
        assert (await _rejection(handle)).startswith("ApartmentUnavailable: ")
        final = await handle.result()

    assert attempts == [1, 2]
    assert (final.status, final.error_type) == ("REJECTED", "ApartmentUnavailable")
    row = await booking_row(pool, data.booking_id)
    assert row is not None
    assert (row["booking_status"], row["cancellation_reason"]) == (
        "CANCELLED",
        "RESERVATION_FAILED",
    )
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "VACANT"
    assert await _steps(handle) == SWEPT
    await record_history(handle, "waitlist_rejected_after_retry_swept")


async def test_failed_reserve_is_reservation_failed_and_swept(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    real = BookingActivities(pool)

    @activity.defn(name="reserve_apartment")
    async def reserve(request: ReserveRequest) -> Reservation:
        # Committed, but the answer never reaches the workflow.
        await real.reserve_apartment(request)
        raise ApplicationError("gave up waiting for the database", type="Gone", non_retryable=True)

    data = await booking_input(env, rental)
    async with _worker(client, pool, task_queue, reserve):
        handle = await start_booking(client, data, task_queue)
        message = await _rejection(handle)
        final = await handle.result()

    assert message.startswith(f"{ReservationFailed.error_type}: apartment {rental.apartment_id}")
    assert "gave up waiting for the database" in message and "nothing is held" in message
    assert (final.status, final.error_type) == ("REJECTED", "ReservationFailed")
    row = await booking_row(pool, data.booking_id)
    assert row is not None and row["booking_status"] == "CANCELLED"
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "VACANT"
    assert await _steps(handle) == SWEPT
    await record_history(handle, "waitlist_reservation_failed_swept")


async def test_refusal_on_the_first_attempt_closes_without_a_sweep(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)

    @activity.defn(name="reserve_apartment")
    async def reserve(request: ReserveRequest) -> Reservation:
        raise ApplicationError(
            "no such apartment",
            reserve_rejection_details(({"constraint": "x"},), activity.info().attempt),
            type="ApartmentNotFound",
            non_retryable=True,
        )

    data = await booking_input(env, rental)
    async with _worker(client, pool, task_queue, reserve):
        handle = await start_booking(client, data, task_queue)
        assert await _rejection(handle) == "ApartmentNotFound: no such apartment"
        final = await handle.result()
    assert final.status == "REJECTED"
    assert await _steps(handle) == ["reserve_apartment"]


def test_sweep_waits_longer_than_any_attempt_can_run() -> None:
    assert AttemptBounds().total + timedelta(seconds=3) < RESERVE_SWEEP_DELAY
