"""Activities of ApartmentBookingWorkflow: every database write of a booking.

Each activity is one transaction and idempotent by booking id (or payment reference): a retry
after a commit whose answer was lost finds its work done and reports it again. Constraint and
data errors are permanent (non-retryable ``ApplicationError``); anything else (a lost
connection, a restarting server, a serialization failure) propagates so Temporal retries it.
Every status change appends a ``booking_events`` row in the same transaction; the bookings
trigger announces it with ``pg_notify``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db_errors import permanent_db_errors
from booking.store import bookings as store
from workflows.booking import (
    APPROVED,
    CANCELLED,
    PENDING,
    ConfirmRequest,
    EndLeaseRequest,
    RefundRequest,
    RefundResult,
    ReleaseRequest,
    Reservation,
    ReserveRequest,
)

# Even if code above were wrong, the partial unique index refuses a second open booking.
_RESERVE_CONSTRAINTS = {
    "bookings_one_active_per_apartment": "ApartmentUnavailable",
    "bookings_user_id_fkey": "UserNotFound",
    "bookings_apartment_id_fkey": "ApartmentNotFound",
    "bookings_check": "ValidationError",
}
# A payment reference is globally unique: one already used elsewhere cannot pay this booking.
_PAYMENT_CONSTRAINTS = {"payments_payment_reference_key": "PaymentRejected"}


def _permanent(message: str, error_type: str) -> ApplicationError:
    return ApplicationError(message, type=error_type, non_retryable=True)


class BookingActivities:
    """Handed the pool once; each method is one short transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="reserve_apartment")
    async def reserve_apartment(self, request: ReserveRequest) -> Reservation:
        async with self._pool.acquire() as conn:
            if request.step_function_arn is not None:
                # Outside the reservation's transaction: an execution whose hold was refused
                # is still an execution the tutorial's getStepFunctions lists.
                await store.record_step_function_execution(
                    conn, request.workflow_id, request.step_function_arn
                )
            with permanent_db_errors(
                "booking not placed",
                error_type="ValidationError",
                by_constraint=_RESERVE_CONSTRAINTS,
            ):
                async with conn.transaction():
                    existing = await store.get_booking(conn, request.booking_id)
                    if existing is not None:
                        return _existing_reservation(existing, request)
                    terms = await store.reserve_vacant_apartment(conn, request.apartment_id)
                    if terms is None:
                        status = await store.apartment_status(conn, request.apartment_id)
                        if status is None:
                            raise _permanent(
                                f"apartment {request.apartment_id} does not exist",
                                "ApartmentNotFound",
                            )
                        raise _permanent(
                            f"apartment {request.apartment_id} is {status}, not VACANT",
                            "ApartmentUnavailable",
                        )
                    await store.insert_booking(
                        conn,
                        booking_id=request.booking_id,
                        workflow_id=request.workflow_id,
                        user_id=request.user_id,
                        apartment_id=request.apartment_id,
                        start_date=request.start_date,
                        end_date=request.end_date,
                        amount_due=terms.monthly_rent,
                        currency=terms.currency,
                        hold_expires_at=request.hold_expires_at,
                        idempotency_key=request.idempotency_key,
                    )
                    await store.append_event(
                        conn,
                        request.booking_id,
                        None,
                        PENDING,
                        "RESERVED",
                        {"holdExpiresAt": request.hold_expires_at.isoformat()},
                    )
        return Reservation(terms.monthly_rent, terms.currency, request.hold_expires_at, True)

    @activity.defn(name="confirm_booking")
    async def confirm_booking(self, request: ConfirmRequest) -> None:
        """PENDING -> APPROVED with its APPLIED payment; apartment RESERVED -> OCCUPIED."""
        payment = request.payment
        async with self._pool.acquire() as conn:
            with permanent_db_errors(
                "payment not applied",
                error_type="PaymentRejected",
                by_constraint=_PAYMENT_CONSTRAINTS,
            ):
                async with conn.transaction():
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None:
                        raise _permanent(
                            f"booking {request.booking_id} does not exist", "BookingNotFound"
                        )
                    if booking.booking_status == APPROVED:
                        return  # an earlier attempt committed
                    if booking.booking_status != PENDING:
                        raise _permanent(
                            f"booking is {booking.booking_status}, not PENDING", "PaymentRejected"
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
                            "ApartmentUnavailable",
                        )
                    await store.append_event(
                        conn,
                        booking.id,
                        PENDING,
                        APPROVED,
                        "PAID",
                        {"paymentReference": payment.payment_reference},
                    )

    @activity.defn(name="release_booking")
    async def release_booking(self, request: ReleaseRequest) -> bool:
        """PENDING -> CANCELLED(reason); apartment RESERVED -> VACANT. False: nothing to do."""
        async with self._pool.acquire() as conn:
            with permanent_db_errors("booking not released"):
                async with conn.transaction():
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None or booking.booking_status == CANCELLED:
                        return False  # never reserved, or an earlier attempt committed
                    if booking.booking_status != PENDING:
                        raise _permanent(
                            f"booking is {booking.booking_status}, not PENDING",
                            "BookingNotCancellable",
                        )
                    await store.cancel_booking(conn, booking.id, request.reason)
                    await store.release_reserved_apartment(conn, booking.apartment_id)
                    await store.append_event(conn, booking.id, PENDING, CANCELLED, request.reason)
        return True

    @activity.defn(name="refund_payment")
    async def refund_payment(self, request: RefundRequest) -> RefundResult:
        """Record a payment that cannot be applied as REFUNDED, with its refunds row.

        The seam to a real payment provider: a provider call would go here, keyed by the
        refund id so that a retry never refunds twice.
        """
        payment = request.payment
        async with self._pool.acquire() as conn:
            with permanent_db_errors("refund not recorded"):
                async with conn.transaction():
                    existing = await store.get_payment_by_reference(conn, payment.payment_reference)
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
                    elif existing.booking_id != request.booking_id:
                        raise _permanent(
                            f"payment reference {payment.payment_reference} belongs to "
                            "another booking",
                            "PaymentRejected",
                        )
                    else:
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

    @activity.defn(name="end_lease")
    async def end_lease(self, request: EndLeaseRequest) -> None:
        """Record the lease end; the tenant's apartment goes back to VACANT."""
        async with self._pool.acquire() as conn:
            with permanent_db_errors("lease end not recorded"):
                async with conn.transaction():
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None:
                        raise _permanent(
                            f"booking {request.booking_id} does not exist", "BookingNotFound"
                        )
                    if booking.lease_ended_at is not None:
                        return  # an earlier attempt committed
                    if booking.booking_status != APPROVED:
                        raise _permanent(
                            f"booking is {booking.booking_status}, not APPROVED",
                            "ValidationError",
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
            self.end_lease,
        ]


def _existing_reservation(existing: store.BookingRow, request: ReserveRequest) -> Reservation:
    """A booking row with this id exists: a retry of our own commit, or an id reused."""
    if (
        existing.booking_status == PENDING
        and existing.workflow_id == request.workflow_id
        and existing.apartment_id == request.apartment_id
        and existing.hold_expires_at is not None
    ):
        return Reservation(existing.amount_due, existing.currency, existing.hold_expires_at, False)
    raise _permanent(
        f"booking {existing.id} was already placed and is {existing.booking_status}; "
        "a new booking needs a new idempotency key",
        "ValidationError",
    )
