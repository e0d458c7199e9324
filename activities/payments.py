"""Payments: confirming a hold with its payment, and recording the ones that are refunded.

A payment reference is recorded once per booking (a constraint), so a retried confirm or
refund finds its own row; the refund is the seam to a real payment provider.
"""

from __future__ import annotations

from temporalio import activity

from activities.base import ActivityBase, locked_booking, permanent
from activities.db_errors import permanent_db_errors
from booking.contract import (
    APPROVED,
    BOOKED,
    CONFIRM_BOOKING,
    PENDING,
    REFUND_PAYMENT,
    REFUND_UNPLACED_PAYMENT,
    ConfirmRequest,
    RefundRequest,
    RefundResult,
)
from booking.errors import (
    PaymentRejected,
)
from booking.offers import settle_entry
from booking.store import bookings as store

# A booking records each payment reference once: a reference already used for this booking
# (a refunded payment) cannot pay it.
_PAYMENT_CONSTRAINTS = {
    "payments_booking_reference_key": (
        PaymentRejected.error_type,
        "this paymentReference was already used for this booking",
    )
}


class PaymentActivities(ActivityBase):
    """Money in and out: confirm (APPLIED), refund (REFUNDED)."""

    @activity.defn(name=CONFIRM_BOOKING)
    async def confirm_booking(self, request: ConfirmRequest) -> None:
        """PENDING -> APPROVED with its APPLIED payment: the stay's nights are BOOKED."""
        payment = request.payment
        async with self._connection() as conn:
            with permanent_db_errors(
                "payment not applied",
                error_type=PaymentRejected.error_type,
                by_constraint=_PAYMENT_CONSTRAINTS,
            ):
                async with self._transaction(conn):
                    booking = await locked_booking(conn, request.booking_id)
                    if booking.booking_status == APPROVED:
                        return  # an earlier attempt committed
                    if booking.booking_status != PENDING:
                        raise permanent(
                            f"booking is {booking.booking_status}, not PENDING",
                            PaymentRejected.error_type,
                        )
                    # The booking, its payment and its event in one round trip; under the
                    # row lock taken above it is PENDING, so the statement writes all three.
                    approved = await store.approve_paid(
                        conn,
                        booking.id,
                        reference=payment.payment_reference,
                        amount=payment.amount,
                        currency=payment.currency,
                        paid_at=request.paid_at,
                    )
                    assert approved, "a PENDING booking under its row lock is approved"
                    # A booking the waiting list offered: its entry is BOOKED.
                    await settle_entry(conn, booking.id, BOOKED, "PAID")

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
                    if created:
                        # The tenant's receipt of the refund is written with it.
                        booking = await store.get_booking(conn, request.booking_id)
                        assert booking is not None
                        await store.append_event(
                            conn,
                            booking.id,
                            booking.booking_status,
                            booking.booking_status,
                            "REFUNDED",
                            {
                                "paymentReference": payment.payment_reference,
                                "amount": payment.amount,
                                "currency": payment.currency,
                                "refundReason": request.reason,
                            },
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
