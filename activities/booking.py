"""Activities of ApartmentBookingWorkflow: every database write of a booking.

Each activity is one transaction and idempotent by booking id (or payment reference): a retry
after a commit whose answer was lost finds its work done and reports it again. Constraint and
data errors are permanent (non-retryable ``ApplicationError``); anything else (a lost
connection, a restarting server, a serialization failure) propagates so Temporal retries it.
Every status change appends a ``booking_events`` row in the same transaction; the bookings
trigger announces it with ``pg_notify``.

Every attempt is bounded inside the database (:class:`AttemptBounds`): it commits within
``AttemptBounds.total`` of its start or not at all. Temporal does not cancel an attempt that
runs past its ``start_to_close_timeout`` (these activities do not heartbeat), so without the
bound a slow attempt the workflow has given up on could still commit later. A lock or
statement timeout is transient: it becomes a retryable ``DatabaseBusy`` error. (A COMMIT cut
short in flight is the one outcome nobody can know; the workflow's sweep after a failed reserve
covers it.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db_errors import permanent_db_errors
from booking.contract import (
    ACTIVITY_TIMEOUT,
    APPROVED,
    CANCELLED,
    CONFIRM_BOOKING,
    END_LEASE,
    PENDING,
    REFUND_PAYMENT,
    REFUND_UNPLACED_PAYMENT,
    RELEASE_BOOKING,
    RESERVE_APARTMENT,
    ConfirmRequest,
    EndLeaseRequest,
    RefundRequest,
    RefundResult,
    ReleaseRequest,
    Reservation,
    ReserveRequest,
    amount_due,
    reserve_rejection_details,
)
from booking.errors import (
    ApartmentNotFound,
    ApartmentUnavailable,
    BookingNotCancellable,
    BookingNotFound,
    PaymentRejected,
    UserNotFound,
    ValidationError,
)
from booking.store import bookings as store

# Even if code above were wrong, the partial unique index refuses a second open booking.
_RESERVE_CONSTRAINTS = {
    "bookings_one_active_per_apartment": (
        ApartmentUnavailable.error_type,
        "the apartment is held or let by another booking",
    ),
    "bookings_user_id_fkey": (UserNotFound.error_type, "the user does not exist"),
    "bookings_apartment_id_fkey": (ApartmentNotFound.error_type, "the apartment does not exist"),
    "bookings_check": (ValidationError.error_type, "endDate must be after startDate"),
}
# A booking records each payment reference once: a reference already used for this booking
# (a refunded payment) cannot pay it.
_PAYMENT_CONSTRAINTS = {
    "payments_booking_reference_key": (
        PaymentRejected.error_type,
        "this paymentReference was already used for this booking",
    )
}


@dataclass(frozen=True)
class AttemptBounds:
    """How long one activity attempt may spend in the database.

    ``total`` covers waiting for a pooled connection and the whole transaction; it is well
    under the workflow's ``start_to_close_timeout`` so that, by the time Temporal starts a
    retry, the attempt before it has committed or rolled back for good.
    """

    acquire: timedelta = timedelta(seconds=2)
    lock: timedelta = timedelta(seconds=3)
    statement: timedelta = timedelta(seconds=3)
    total: timedelta = timedelta(seconds=9)

    def __post_init__(self) -> None:
        if not self.lock <= self.total < ACTIVITY_TIMEOUT:
            raise ValueError("attempt bounds must satisfy lock <= total < ACTIVITY_TIMEOUT")


# A lock wait or statement cut short by the bounds: the same attempt later may well succeed.
# Retryable, so it never reaches a client; the workflow's retry policy takes it.
DATABASE_BUSY = "DatabaseBusy"
_BUSY = (TimeoutError, asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError)


def _permanent(message: str, error_type: str) -> ApplicationError:
    return ApplicationError(message, type=error_type, non_retryable=True)


def _ms(span: timedelta) -> int:
    return max(1, int(span.total_seconds() * 1000))


class BookingActivities:
    """Handed the pool once; each method is one short, bounded transaction."""

    def __init__(self, pool: asyncpg.Pool, bounds: AttemptBounds | None = None) -> None:
        self._pool = pool
        self._bounds = bounds or AttemptBounds()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection for one attempt, given up (rolled back) after ``total``."""
        bounds = self._bounds
        try:
            async with asyncio.timeout(bounds.total.total_seconds()):
                async with self._pool.acquire(timeout=bounds.acquire.total_seconds()) as conn:
                    yield conn
        except _BUSY as exc:
            raise ApplicationError(
                f"database busy ({exc.__class__.__name__}): attempt given up, will retry",
                type=DATABASE_BUSY,
            ) from exc

    @asynccontextmanager
    async def _transaction(self, conn: PoolConnectionProxy[asyncpg.Record]) -> AsyncIterator[None]:
        async with conn.transaction():
            await store.bound_transaction(
                conn,
                lock_timeout_ms=_ms(self._bounds.lock),
                statement_timeout_ms=_ms(self._bounds.statement),
            )
            yield

    @activity.defn(name=RESERVE_APARTMENT)
    async def reserve_apartment(self, request: ReserveRequest) -> Reservation:
        try:
            return await self._reserve(request)
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            # Tell the workflow which attempt refused: a refusal after a retry may hide an
            # earlier attempt's commit, which the workflow then sweeps up.
            raise ApplicationError(
                err.message,
                reserve_rejection_details(err.details, activity.info().attempt),
                type=err.type,
                non_retryable=True,
            ) from err

    async def _reserve(self, request: ReserveRequest) -> Reservation:
        booking = request.booking
        async with self._connection() as conn:
            if booking.step_function_arn is not None:
                # Outside the reservation's transaction: an execution whose hold was refused
                # is still an execution the tutorial's getStepFunctions lists.
                await store.record_step_function_execution(
                    conn, request.workflow_id, booking.step_function_arn
                )
            with permanent_db_errors(
                "booking not placed",
                error_type=ValidationError.error_type,
                by_constraint=_RESERVE_CONSTRAINTS,
            ):
                async with self._transaction(conn):
                    existing = await store.get_booking(conn, booking.booking_id)
                    if existing is not None:
                        return _existing_reservation(existing, request)
                    terms = await store.reserve_vacant_apartment(conn, booking.apartment_id)
                    if terms is None:
                        # Read again: the update may have waited on the lock of another attempt
                        # of this same booking (one Temporal gave up on but did not stop), and
                        # this statement sees what that attempt committed.
                        mine = await store.get_booking(conn, booking.booking_id)
                        if mine is not None:
                            return _existing_reservation(mine, request)
                        status = await store.apartment_status(conn, booking.apartment_id)
                        if status is None:
                            raise _permanent(
                                f"apartment {booking.apartment_id} does not exist",
                                ApartmentNotFound.error_type,
                            )
                        raise _permanent(
                            f"apartment {booking.apartment_id} is {status}, not VACANT",
                            ApartmentUnavailable.error_type,
                        )
                    due = amount_due(terms.monthly_rent, booking.start_date, booking.end_date)
                    await store.insert_booking(
                        conn,
                        booking,
                        workflow_id=request.workflow_id,
                        amount_due=due,
                        currency=terms.currency,
                        hold_expires_at=request.hold_expires_at,
                    )
                    await store.append_event(
                        conn,
                        booking.booking_id,
                        None,
                        PENDING,
                        "RESERVED",
                        {"holdExpiresAt": request.hold_expires_at.isoformat()},
                    )
        return Reservation(due, terms.currency, request.hold_expires_at, True)

    @activity.defn(name=CONFIRM_BOOKING)
    async def confirm_booking(self, request: ConfirmRequest) -> None:
        """PENDING -> APPROVED with its APPLIED payment; apartment RESERVED -> OCCUPIED."""
        payment = request.payment
        async with self._connection() as conn:
            with permanent_db_errors(
                "payment not applied",
                error_type=PaymentRejected.error_type,
                by_constraint=_PAYMENT_CONSTRAINTS,
            ):
                async with self._transaction(conn):
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None:
                        raise _permanent(
                            f"booking {request.booking_id} does not exist",
                            BookingNotFound.error_type,
                        )
                    if booking.booking_status == APPROVED:
                        return  # an earlier attempt committed
                    if booking.booking_status != PENDING:
                        raise _permanent(
                            f"booking is {booking.booking_status}, not PENDING",
                            PaymentRejected.error_type,
                        )
                    await store.approve_booking(conn, booking.id, request.paid_at)
                    await store.insert_payment(
                        conn,
                        booking_id=booking.id,
                        reference=payment.payment_reference,
                        amount=payment.amount,
                        currency=payment.currency,
                        outcome="APPLIED",
                        received_at=request.paid_at,
                    )
                    if not await store.occupy_apartment(
                        conn, booking.apartment_id, booking.user_id
                    ):
                        # The hold's RESERVED mark was changed behind the workflow's back.
                        raise _permanent(
                            f"apartment {booking.apartment_id} is no longer RESERVED",
                            ApartmentUnavailable.error_type,
                        )
                    await store.append_event(
                        conn,
                        booking.id,
                        PENDING,
                        APPROVED,
                        "PAID",
                        {"paymentReference": payment.payment_reference},
                    )

    @activity.defn(name=RELEASE_BOOKING)
    async def release_booking(self, request: ReleaseRequest) -> bool:
        """PENDING -> CANCELLED(reason); apartment RESERVED -> VACANT. False: nothing to do."""
        async with self._connection() as conn:
            with permanent_db_errors("booking not released"):
                async with self._transaction(conn):
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None or booking.booking_status == CANCELLED:
                        return False  # never reserved, or an earlier attempt committed
                    if booking.booking_status != PENDING:
                        raise _permanent(
                            f"booking is {booking.booking_status}, not PENDING",
                            BookingNotCancellable.error_type,
                        )
                    await store.cancel_booking(conn, booking.id, request.reason)
                    await store.release_reserved_apartment(conn, booking.apartment_id)
                    await store.append_event(conn, booking.id, PENDING, CANCELLED, request.reason)
        return True

    @activity.defn(name=REFUND_PAYMENT)
    async def refund_payment(self, request: RefundRequest) -> RefundResult:
        """Record a payment that cannot be applied as REFUNDED, with its refunds row.

        The seam to a real payment provider: a provider call would go here, keyed by the
        refund id so that a retry never refunds twice.
        """
        payment = request.payment
        async with self._connection() as conn:
            with permanent_db_errors("refund not recorded"):
                async with self._transaction(conn):
                    existing = await store.get_payment_by_reference(
                        conn, request.booking_id, payment.payment_reference
                    )
                    if existing is None:
                        payment_id = await store.insert_payment(
                            conn,
                            booking_id=request.booking_id,
                            reference=payment.payment_reference,
                            amount=payment.amount,
                            currency=payment.currency,
                            outcome="REFUNDED",
                            received_at=request.received_at,
                        )
                    else:  # an earlier attempt recorded it
                        payment_id = existing.id
                    refund_id, created = await store.insert_refund(
                        conn,
                        payment_id=payment_id,
                        booking_id=request.booking_id,
                        amount=payment.amount,
                        currency=payment.currency,
                        reason=request.reason,
                    )
        return RefundResult(payment_id, refund_id, created)

    @activity.defn(name=REFUND_UNPLACED_PAYMENT)
    async def refund_unplaced_payment(self, request: RefundRequest) -> bool:
        """Record (and refund) money that reached a booking which was never placed.

        There is no booking row to attach it to, so it goes to ``unplaced_payments``; an
        operator (or a provider integration, at this seam) refunds it from there. False when
        an earlier attempt recorded it already.
        """
        payment = request.payment
        async with self._connection() as conn:
            with permanent_db_errors("unplaced payment not recorded"):
                async with self._transaction(conn):
                    return await store.insert_unplaced_payment(
                        conn,
                        booking_id=request.booking_id,
                        reference=payment.payment_reference,
                        amount=payment.amount,
                        currency=payment.currency,
                        received_at=payment.received_at or request.received_at,
                        reason=request.reason,
                    )

    @activity.defn(name=END_LEASE)
    async def end_lease(self, request: EndLeaseRequest) -> None:
        """Record the lease end; the tenant's apartment goes back to VACANT."""
        async with self._connection() as conn:
            with permanent_db_errors("lease end not recorded"):
                async with self._transaction(conn):
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None:
                        raise _permanent(
                            f"booking {request.booking_id} does not exist",
                            BookingNotFound.error_type,
                        )
                    if booking.lease_ended_at is not None:
                        return  # an earlier attempt committed
                    if booking.booking_status != APPROVED:
                        raise _permanent(
                            f"booking is {booking.booking_status}, not APPROVED",
                            ValidationError.error_type,
                        )
                    await store.end_lease(conn, booking.id, request.ended_at)
                    await store.vacate_after_lease(conn, booking.apartment_id, booking.user_id)
                    await store.append_event(conn, booking.id, APPROVED, APPROVED, "LEASE_ENDED")

    def all(self) -> list[Callable[..., Any]]:
        """The bound activity methods, for ``Worker(activities=...)``."""
        return [
            self.reserve_apartment,
            self.confirm_booking,
            self.release_booking,
            self.refund_payment,
            self.refund_unplaced_payment,
            self.end_lease,
        ]


def _existing_reservation(existing: store.BookingRow, request: ReserveRequest) -> Reservation:
    """A booking row with this id exists: a retry of our own commit, or an id reused."""
    if (
        existing.booking_status == PENDING
        and existing.workflow_id == request.workflow_id
        and existing.apartment_id == request.booking.apartment_id
        and existing.hold_expires_at is not None
    ):
        return Reservation(existing.amount_due, existing.currency, existing.hold_expires_at, False)
    raise _permanent(
        f"booking {existing.id} was already placed and is {existing.booking_status}; "
        "a new booking needs a new idempotency key",
        ValidationError.error_type,
    )
