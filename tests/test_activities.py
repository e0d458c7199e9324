"""Booking activities against the real database: idempotence, retries, constraints, concurrency."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities import AttemptBounds, BookingActivities
from booking.contract import (
    BookingInput,
    BookingState,
    ConfirmRequest,
    EndLeaseRequest,
    PaymentInput,
    RefundRequest,
    ReleaseRequest,
    ReserveRequest,
    StayStartRequest,
    start_search_attributes,
    workflow_id_for,
)
from booking.db import create_pool
from booking.store import Conn
from tests.helpers import (
    activity_steps,
    apartment_row,
    booking_input,
    booking_row,
    events,
    eventually,
    insert_user,
    make_rental,
    start_booking,
)
from workflows.booking import ApartmentBookingWorkflow


def _reserve_request(
    apartment_id: str,
    user_id: str,
    *,
    hold_expires_at: datetime = datetime(2030, 12, 1, 12, 0, tzinfo=UTC),
    **overrides: object,
) -> ReserveRequest:
    booking_id = str(uuid.uuid4())
    fields: dict[str, object] = {
        "booking_id": booking_id,
        "apartment_id": apartment_id,
        "user_id": user_id,
        "start_date": date(2031, 1, 1),
        "end_date": date(2031, 7, 1),
        "hold_seconds": 900,
    }
    fields.update(overrides)
    booking = BookingInput(**fields)  # type: ignore[arg-type]
    return ReserveRequest(booking, workflow_id_for(booking_id), hold_expires_at)


async def _activity_error(call: object) -> ApplicationError:
    with pytest.raises(ApplicationError) as raised:
        await call  # type: ignore[misc]
    return raised.value


async def _reserve_attempts(handle: WorkflowHandle[Any, Any]) -> list[int | None]:
    """The attempt each recorded reserve step ended on (ordinary or local activity)."""
    steps = activity_steps(await handle.fetch_history())
    return [step.attempt for step in steps if step.name == "reserve_apartment"]


async def test_reserve_confirm_end_lease_are_idempotent(pool: asyncpg.Pool) -> None:
    rental = await make_rental(pool, monthly_rent=50_000, currency="SEK")
    acts = BookingActivities(pool)
    run = ActivityEnvironment().run
    request = _reserve_request(rental.apartment_id, rental.user_id)

    first = await run(acts.reserve_apartment, request)
    again = await run(acts.reserve_apartment, request)  # a retry after a lost answer
    assert (first.amount_due, first.currency, first.created) == (50_000, "SEK", True)
    assert (again.amount_due, again.hold_expires_at, again.created) == (
        50_000,
        request.hold_expires_at,
        False,
    )

    paid_at = datetime(2030, 12, 1, 11, 0, tzinfo=UTC)
    payment = PaymentInput(50_000, "SEK", f"pay-{uuid.uuid4()}")
    confirm = ConfirmRequest(request.booking.booking_id, payment, paid_at)
    await run(acts.confirm_booking, confirm)
    await run(acts.confirm_booking, confirm)
    ended = datetime(2031, 7, 1, tzinfo=UTC)
    await run(acts.end_lease, EndLeaseRequest(request.booking.booking_id, ended))
    await run(acts.end_lease, EndLeaseRequest(request.booking.booking_id, ended))

    row = await booking_row(pool, request.booking.booking_id)
    assert row is not None
    assert (row["booking_status"], row["paid_at"], row["lease_ended_at"]) == (
        "APPROVED",
        paid_at,
        ended,
    )
    assert (
        await pool.fetchval(
            "SELECT count(*) FROM payments WHERE booking_id = $1", request.booking.booking_id
        )
        == 1
    )
    assert await events(pool, request.booking.booking_id) == [
        (None, "PENDING", "RESERVED"),
        ("PENDING", "APPROVED", "PAID"),
        ("APPROVED", "APPROVED", "LEASE_ENDED"),
    ]
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "VACANT"


async def test_a_stay_start_is_recorded_once_and_heard_by_subscribers(
    pool: asyncpg.Pool, migrated_database_url: str
) -> None:
    """stay_started (a paid stay's first night): one STAY_STARTED event and one notice on the
    channel the API's subscriptions listen to, however often it runs; the apartment reads
    OCCUPIED by the tenant that night. Nothing for a booking that is not a running lease."""
    rental = await make_rental(pool)
    acts = BookingActivities(pool)
    run = ActivityEnvironment().run
    request = _reserve_request(rental.apartment_id, rental.user_id)
    await run(acts.reserve_apartment, request)
    booking_id = request.booking.booking_id
    first_night = datetime.combine(request.booking.start_date, time.min, tzinfo=UTC)
    # Not paid: nothing to start.
    assert not await run(acts.stay_started, StayStartRequest(booking_id, first_night))
    payment = PaymentInput(rental.monthly_rent, rental.currency, f"pay-{uuid.uuid4()}")
    await run(acts.confirm_booking, ConfirmRequest(booking_id, payment, first_night))

    heard: list[dict[str, str]] = []
    listener = await asyncpg.connect(migrated_database_url)
    try:
        # The channel carries every booking's changes (other tests' executions may still be
        # settling): keep this booking's.
        def hear(*args: Any) -> None:
            notice = json.loads(args[3])
            if notice["id"] == booking_id:
                heard.append(notice)

        await listener.add_listener("booking_status", hear)
        assert await run(acts.stay_started, StayStartRequest(booking_id, first_night))
        assert not await run(acts.stay_started, StayStartRequest(booking_id, first_night))

        async def notices() -> int:
            return len(heard)

        await eventually(notices, lambda n: n >= 1, what="the notice")
        await asyncio.sleep(0.2)  # a second notice would have arrived by now
    finally:
        await listener.close()
    assert heard == [{"id": booking_id, "status": "APPROVED", "apartmentId": rental.apartment_id}]
    assert [e for e in await events(pool, booking_id) if e[2] == "STAY_STARTED"] == [
        ("APPROVED", "APPROVED", "STAY_STARTED")
    ]
    tonight = await apartment_row(pool, rental.apartment_id, on=request.booking.start_date)
    assert (tonight["apartment_status"], tonight["tenant_id"]) == ("OCCUPIED", rental.user_id)
    before = await apartment_row(
        pool, rental.apartment_id, on=request.booking.start_date - timedelta(days=1)
    )
    assert (before["apartment_status"], before["tenant_id"]) == ("VACANT", None)


async def test_release_and_refund_are_idempotent(pool: asyncpg.Pool) -> None:
    rental = await make_rental(pool)
    acts = BookingActivities(pool)
    run = ActivityEnvironment().run
    request = _reserve_request(rental.apartment_id, rental.user_id)
    assert not await run(
        acts.release_booking, ReleaseRequest(request.booking.booking_id, "EXPIRED")
    )

    await run(acts.reserve_apartment, request)
    assert await run(acts.release_booking, ReleaseRequest(request.booking.booking_id, "EXPIRED"))
    assert not await run(
        acts.release_booking, ReleaseRequest(request.booking.booking_id, "EXPIRED")
    )
    apartment = await apartment_row(pool, rental.apartment_id)
    assert apartment["apartment_status"] == "VACANT"

    late = PaymentInput(rental.monthly_rent, rental.currency, f"pay-{uuid.uuid4()}")
    refund = RefundRequest(request.booking.booking_id, late, "HOLD_OVER", datetime.now(UTC))
    first = await run(acts.refund_payment, refund)
    second = await run(acts.refund_payment, refund)
    assert first.created and not second.created
    assert (second.payment_id, second.refund_id) == (first.payment_id, first.refund_id)

    # A reference belongs to its booking: the same one pays another booking...
    other = _reserve_request(rental.apartment_id, rental.user_id)
    await run(acts.reserve_apartment, other)
    await run(
        acts.confirm_booking, ConfirmRequest(other.booking.booking_id, late, datetime.now(UTC))
    )
    row = await booking_row(pool, other.booking.booking_id)
    assert row is not None and row["booking_status"] == "APPROVED"
    payments = await pool.fetch(
        "SELECT booking_id, outcome FROM payments WHERE payment_reference = $1 ORDER BY id",
        late.payment_reference,
    )
    assert [(p["booking_id"], p["outcome"]) for p in payments] == [
        (request.booking.booking_id, "REFUNDED"),
        (other.booking.booking_id, "APPLIED"),
    ]
    # ... but within one booking it is used once: the refunded one cannot pay it, for good.
    again = _reserve_request(rental.apartment_id, rental.user_id)
    await run(acts.end_lease, EndLeaseRequest(other.booking.booking_id, datetime.now(UTC)))
    await run(acts.reserve_apartment, again)
    refunded = RefundRequest(again.booking.booking_id, late, "WRONG_AMOUNT", datetime.now(UTC))
    await run(acts.refund_payment, refunded)
    error = await _activity_error(
        run(acts.confirm_booking, ConfirmRequest(again.booking.booking_id, late, datetime.now(UTC)))
    )
    assert (error.type, error.non_retryable) == ("PaymentRejected", True)
    assert error.message == (
        "payment not applied: this paymentReference was already used for this booking"
    )
    row = await booking_row(pool, again.booking.booking_id)
    assert row is not None and row["booking_status"] == "PENDING"  # rolled back


async def test_reserve_refuses_bad_rows_without_retry(pool: asyncpg.Pool) -> None:
    rental = await make_rental(pool)
    acts = BookingActivities(pool)
    run = ActivityEnvironment().run
    # end_date before start_date: the table's CHECK refuses it; the reservation rolls back.
    bad = _reserve_request(rental.apartment_id, rental.user_id, end_date=date(2030, 1, 1))
    error = await _activity_error(run(acts.reserve_apartment, bad))
    assert (error.type, error.non_retryable) == ("ValidationError", True)
    unknown_user = _reserve_request(rental.apartment_id, "no-such-user")
    error = await _activity_error(run(acts.reserve_apartment, unknown_user))
    assert (error.type, error.non_retryable) == ("UserNotFound", True)
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "VACANT"

    missing = _reserve_request("no-such-apartment", rental.user_id)
    error = await _activity_error(run(acts.reserve_apartment, missing))
    assert (error.type, error.non_retryable) == ("ApartmentNotFound", True)


@pytest.mark.usefixtures("worker")
async def test_fifty_concurrent_reservations_one_hold(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    inputs = [await booking_input(env, rental) for _ in range(50)]

    async def reserve(data: BookingInput) -> BookingState | str:
        start = WithStartWorkflowOperation(
            ApartmentBookingWorkflow.run,
            data,
            id=workflow_id_for(data.booking_id),
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=start_search_attributes(data, None),
        )
        try:
            return await client.execute_update_with_start_workflow(
                ApartmentBookingWorkflow.wait_for_hold, start_workflow_operation=start
            )
        except WorkflowUpdateFailedError as failure:
            assert isinstance(failure.cause, ApplicationError)
            return failure.cause.type or ""

    outcomes = await asyncio.gather(*(reserve(data) for data in inputs))
    held = [o for o in outcomes if isinstance(o, BookingState)]
    assert len(held) == 1 and held[0].status == "PENDING"
    assert sorted(o for o in outcomes if isinstance(o, str)) == ["ApartmentUnavailable"] * 49
    rows = await pool.fetch(
        "SELECT id, booking_status FROM bookings WHERE apartment_id = $1", rental.apartment_id
    )
    assert [(r["id"], r["booking_status"]) for r in rows] == [(held[0].booking_id, "PENDING")]
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "RESERVED"
    await client.get_workflow_handle(held[0].workflow_id).terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_transient_database_failure_is_retried(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental)
    # Hold the tenant's row lock so the reserve blocks, then kill its database session:
    # the first attempt loses its connection mid-transaction.
    async with pool.acquire() as locker:
        tx = locker.transaction()
        await tx.start()
        # The reserve's first lock is the tenant's row (its holds are counted under it).
        await locker.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", rental.user_id)
        handle = await start_booking(client, data, task_queue)
        victim = await eventually(
            lambda: locker.fetchval(
                """SELECT pid FROM pg_stat_activity
                    WHERE pg_backend_pid() = ANY (pg_blocking_pids(pid))"""
            ),
            what="the reserve blocking on the row lock",
        )
        assert await locker.fetchval("SELECT pg_terminate_backend($1)", victim)
        await tx.rollback()

    held = await handle.execute_update(ApartmentBookingWorkflow.wait_for_hold)
    assert held.status == "PENDING"
    assert await _reserve_attempts(handle) == [2]
    row = await booking_row(pool, data.booking_id)
    assert row is not None and row["booking_status"] == "PENDING"
    await handle.terminate("test done")


async def _insert_stay(
    conn: Conn | asyncpg.Pool, apartment_id: str, user_id: str, start: date, end: date
) -> str:
    """A PENDING stay written behind the workflows' back (what a race or a bug could leave)."""
    stray = str(uuid.uuid4())
    await conn.execute(
        """INSERT INTO bookings (id, workflow_id, user_id, apartment_id, start_date, end_date,
                                 booking_status, amount_due, currency)
           VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', 1, 'EUR')""",
        stray,
        f"stray-{stray}",
        user_id,
        apartment_id,
        start,
        end,
    )
    return stray


async def test_the_exclusion_constraint_decides_a_race_the_read_missed(
    pool: asyncpg.Pool,
) -> None:
    """A stay committed after the reserve's read but before its insert: the exclusion
    constraint refuses the second live stay on those nights, answered as ApartmentUnavailable
    (not retried), and the client hears what it means, not its name."""
    rental = await make_rental(pool)
    request = _reserve_request(rental.apartment_id, rental.user_id)
    other = await insert_user(pool)
    async with pool.acquire() as conn:
        racing = conn.transaction()
        await racing.start()
        # Uncommitted: the reserve's read does not see it; its insert waits on it.
        await _insert_stay(conn, rental.apartment_id, other, date(2031, 3, 1), date(2031, 3, 5))
        attempt = asyncio.ensure_future(
            ActivityEnvironment().run(BookingActivities(pool).reserve_apartment, request)
        )

        async def insert_waits() -> bool:
            waiting: int = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            )
            return waiting > 0

        await eventually(insert_waits)
        await racing.commit()
    refused = await _activity_error(attempt)
    assert refused.type == "ApartmentUnavailable"
    assert refused.non_retryable
    assert refused.message == "booking not placed: another stay holds some of these nights"
    assert refused.details[0]["constraint"] == "bookings_no_overlapping_stays"
    assert await booking_row(pool, request.booking.booking_id) is None


@pytest.mark.usefixtures("worker")
async def test_an_overlapping_reserve_is_refused_once_and_not_retried(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental)
    # One night inside the asked-for range is enough to refuse it.
    night = data.start_date + timedelta(days=40)
    await _insert_stay(pool, rental.apartment_id, rental.user_id, night, night + timedelta(days=1))
    handle = await start_booking(client, data, task_queue)
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(ApartmentBookingWorkflow.wait_for_hold)
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "ApartmentUnavailable"
    assert failure.value.cause.message == (
        f"apartment {rental.apartment_id} is HELD from {night} to "
        f"{night + timedelta(days=1)}, which shares nights with the stay asked for "
        f"({data.start_date} to {data.end_date})"
    )
    final = await handle.result()
    assert final.status == "REJECTED"
    assert await _reserve_attempts(handle) == [1]
    assert await booking_row(pool, data.booking_id) is None


async def test_stays_that_touch_do_not_overlap_and_ended_ones_claim_nothing(
    pool: asyncpg.Pool,
) -> None:
    """The constraint itself, whatever the code: [a, b) and [b, c) are both live; a second live
    stay on a shared night is refused; cancelled stays and ended leases claim no night."""
    rental = await make_rental(pool)
    apartment, user = rental.apartment_id, rental.user_id
    first = await _insert_stay(pool, apartment, user, date(2031, 1, 1), date(2031, 2, 1))
    await _insert_stay(pool, apartment, user, date(2031, 2, 1), date(2031, 3, 1))
    with pytest.raises(asyncpg.ExclusionViolationError):
        await _insert_stay(pool, apartment, user, date(2031, 1, 31), date(2031, 2, 2))
    await pool.execute(
        "UPDATE bookings SET booking_status = 'CANCELLED', cancellation_reason = 'X' WHERE id = $1",
        first,
    )
    await _insert_stay(pool, apartment, user, date(2031, 1, 10), date(2031, 1, 20))


async def test_hold_deadline_is_stored_as_given(pool: asyncpg.Pool) -> None:
    rental = await make_rental(pool)
    deadline = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=15)
    request = _reserve_request(rental.apartment_id, rental.user_id, hold_expires_at=deadline)
    await ActivityEnvironment().run(BookingActivities(pool).reserve_apartment, request)
    row = await booking_row(pool, request.booking.booking_id)
    assert row is not None
    assert (row["hold_expires_at"], row["amount_due"], row["currency"].strip()) == (
        deadline,
        rental.monthly_rent,
        rental.currency,
    )


async def _wait_for_lock_waiters(locker: Conn, count: int) -> None:
    """Until ``count`` other sessions are waiting on the tenant's row lock (ours or each
    other's: a second attempt of one booking waits on the first's)."""
    for _ in range(250):
        # Inside the locker's transaction the statistics views are a snapshot; refresh it.
        await locker.execute("SELECT pg_stat_clear_snapshot()")
        waiting = await locker.fetchval(
            """SELECT count(*) FROM pg_stat_activity
                WHERE wait_event_type = 'Lock' AND pid <> pg_backend_pid()
                  AND query LIKE '%FROM users WHERE id = $1 FOR UPDATE%'"""
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} reserve attempts waiting on the tenant's lock")


async def test_abandoned_attempt_and_its_retry_hold_one_reservation(pool: asyncpg.Pool) -> None:
    """Attempt 1 stalls past its timeout, attempt 2 starts and waits on attempt 1's lock: the
    one that loses the race must report the winner's reservation, not ApartmentUnavailable."""
    rental = await make_rental(pool, monthly_rent=70_000, currency="NOK")
    acts = BookingActivities(pool)
    request = _reserve_request(rental.apartment_id, rental.user_id)
    async with pool.acquire() as locker:
        tx = locker.transaction()
        await tx.start()
        # The reserve's first lock is the tenant's row (its holds are counted under it).
        await locker.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", rental.user_id)
        first = asyncio.create_task(ActivityEnvironment().run(acts.reserve_apartment, request))
        await _wait_for_lock_waiters(locker, 1)
        second = asyncio.create_task(ActivityEnvironment().run(acts.reserve_apartment, request))
        await _wait_for_lock_waiters(locker, 2)
        await tx.rollback()
    results = await asyncio.gather(first, second)

    assert sorted(r.created for r in results) == [False, True]
    assert {(r.amount_due, r.currency, r.hold_expires_at) for r in results} == {
        (70_000, "NOK", request.hold_expires_at)
    }
    rows = await pool.fetch(
        "SELECT id, booking_status FROM bookings WHERE apartment_id = $1", rental.apartment_id
    )
    assert [(r["id"], r["booking_status"]) for r in rows] == [
        (request.booking.booking_id, "PENDING")
    ]
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "RESERVED"
    assert await events(pool, request.booking.booking_id) == [(None, "PENDING", "RESERVED")]


async def test_attempt_blocked_past_its_bound_fails_retryably_and_writes_nothing(
    pool: asyncpg.Pool,
) -> None:
    rental = await make_rental(pool)
    bounds = AttemptBounds(
        lock=timedelta(milliseconds=300),
        statement=timedelta(seconds=2),
        total=timedelta(seconds=5),
    )
    acts = BookingActivities(pool, bounds)
    request = _reserve_request(rental.apartment_id, rental.user_id)
    async with pool.acquire() as locker:
        tx = locker.transaction()
        await tx.start()
        # The reserve's first lock is the tenant's row (its holds are counted under it).
        await locker.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", rental.user_id)
        started = asyncio.get_running_loop().time()
        error = await _activity_error(ActivityEnvironment().run(acts.reserve_apartment, request))
        waited = asyncio.get_running_loop().time() - started
        # Still holding the lock: the attempt gave up by itself, it did not wait for us.
        assert await booking_row(pool, request.booking.booking_id) is None
        await tx.rollback()

    assert (error.type, error.non_retryable) == ("DatabaseBusy", False)
    assert isinstance(error.__cause__, asyncpg.LockNotAvailableError)
    assert waited < 3
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "VACANT"
    assert await events(pool, request.booking.booking_id) == []
    # The retry, with the lock gone, places the hold.
    placed = await ActivityEnvironment().run(acts.reserve_apartment, request)
    assert placed.created


async def test_attempt_waiting_for_a_connection_fails_retryably(
    pool: asyncpg.Pool, migrated_database_url: str
) -> None:
    rental = await make_rental(pool)
    tiny = await create_pool(migrated_database_url, min_size=1, max_size=1)
    try:
        bounds = AttemptBounds(acquire=timedelta(milliseconds=200))
        acts = BookingActivities(tiny, bounds)
        request = _reserve_request(rental.apartment_id, rental.user_id)
        async with tiny.acquire():
            error = await _activity_error(
                ActivityEnvironment().run(acts.reserve_apartment, request)
            )
    finally:
        await tiny.close()
    assert (error.type, error.non_retryable) == ("DatabaseBusy", False)
    assert await booking_row(pool, request.booking.booking_id) is None


def test_attempt_bounds_end_before_temporal_retries() -> None:
    assert AttemptBounds().total < timedelta(seconds=15)
    with pytest.raises(ValueError, match="ACTIVITY_TIMEOUT"):
        AttemptBounds(total=timedelta(seconds=15))


async def test_refusal_says_which_attempt_refused(pool: asyncpg.Pool) -> None:
    """A refusal on a retry may hide an abandoned attempt's commit; the workflow needs to know."""
    rental = await make_rental(pool)
    acts = BookingActivities(pool)
    await ActivityEnvironment().run(
        acts.reserve_apartment, _reserve_request(rental.apartment_id, rental.user_id)
    )
    other = _reserve_request(rental.apartment_id, rental.user_id)
    first = await _activity_error(ActivityEnvironment().run(acts.reserve_apartment, other))
    retry_env = ActivityEnvironment()
    retry_env.info = dataclasses.replace(retry_env.info, attempt=3)
    third = await _activity_error(retry_env.run(acts.reserve_apartment, other))
    assert (first.type, first.non_retryable, first.details) == (
        "ApartmentUnavailable",
        True,
        ({"attempt": 1},),
    )
    assert (third.type, third.details) == ("ApartmentUnavailable", ({"attempt": 3},))


def _transaction_of(statements: list[str]) -> list[str]:
    """The statements up to the first COMMIT (the pool's release adds its own after it)."""
    return statements[: statements.index("COMMIT;") + 1]


async def test_a_reserve_and_a_confirm_each_take_six_round_trips(
    pool: asyncpg.Pool, migrated_database_url: str
) -> None:
    """A step's latency is mostly its round trips to Postgres (BENCHMARKS.md): the reserve
    reads everything it checks in one statement and writes the booking with its event in
    another; the confirm writes the booking, its payment and its event in one."""
    statements: list[str] = []

    async def log_statements(conn: asyncpg.Connection[Any]) -> None:
        conn.add_query_logger(lambda logged: statements.append(logged.query))

    counting = await asyncpg.create_pool(
        migrated_database_url, min_size=1, max_size=1, init=log_statements
    )
    try:
        rental = await make_rental(counting, monthly_rent=30_000)
        acts = BookingActivities(counting)
        run = ActivityEnvironment().run
        request = _reserve_request(rental.apartment_id, rental.user_id)
        statements.clear()
        placed = await run(acts.reserve_apartment, request)
        reserve_statements = _transaction_of(statements)
        statements.clear()
        payment = PaymentInput(placed.amount_due, placed.currency, f"pay-{uuid.uuid4()}")
        paid_at = datetime(2030, 12, 1, 11, 0, tzinfo=UTC)
        confirm = ConfirmRequest(request.booking.booking_id, payment, paid_at)
        await run(acts.confirm_booking, confirm)
        confirm_statements = _transaction_of(statements)
    finally:
        await counting.close()

    # BEGIN, the transaction's bounds, the step's own three, COMMIT.
    assert len(reserve_statements) == 6, reserve_statements
    assert len(confirm_statements) == 6, confirm_statements
    booking_id = request.booking.booking_id
    assert await events(pool, booking_id) == [
        (None, "PENDING", "RESERVED"),
        ("PENDING", "APPROVED", "PAID"),
    ]
    paid = await pool.fetchrow(
        "SELECT payment_reference, amount, outcome FROM payments WHERE booking_id = $1",
        booking_id,
    )
    assert paid is not None
    assert tuple(paid) == (payment.payment_reference, placed.amount_due, "APPLIED")
