"""A lease's rent: its invoices written when the lease begins, each invoice's steps (issued,
due, overdue with its fee, reminders), and rent payments. Each is one idempotent transaction
that records what it did in the booking's event log (the reminders tenants are told of)."""

from __future__ import annotations

from temporalio import activity

from activities.base import ActivityBase, locked_booking, permanent
from activities.db_errors import permanent_db_errors
from booking import rent
from booking.contract import (
    APPROVED,
    PAY_RENT,
    RENT_STEP,
    SCHEDULE_RENT,
    InvoiceState,
    RentPaymentRequest,
    RentSchedule,
    RentStepRequest,
)
from booking.errors import PaymentRejected, ValidationError
from booking.store import bookings as store
from booking.store import rent as rent_store

# The event each step records (the reminder a tenant gets), by step.
_REASONS = {
    rent.ISSUE: "RENT_ISSUED",
    rent.DUE: "RENT_DUE",
    rent.OVERDUE: "RENT_OVERDUE",
    rent.REMIND: "RENT_REMINDER",
}


def invoice_state(row: rent_store.RentInvoiceRow) -> InvoiceState:
    return InvoiceState(
        invoice_id=row.id,
        seq=row.seq,
        period_start=row.period_start,
        period_end=row.period_end,
        due_date=row.due_date,
        rent=row.rent,
        late_fee=row.late_fee,
        currency=row.currency,
        status=row.status,
        payment_reference=row.payment_reference,
    )


def rent_schedule(rules: rent.RentRules, invoices: list[rent_store.RentInvoiceRow]) -> RentSchedule:
    """The invoices with the rules a lease follows from now on (this worker's settings)."""
    return rent.schedule_of([invoice_state(row) for row in invoices], rules)


class RentActivities(ActivityBase):
    """The lease's rent writes."""

    @activity.defn(name=SCHEDULE_RENT)
    async def schedule_rent(self, booking_id: str) -> RentSchedule:
        """Every period's invoice (the first PAID by the booking's payment); the rules the
        lease will follow, from this worker's settings."""
        async with self._connection() as conn:
            with permanent_db_errors("rent not scheduled"):
                async with self._transaction(conn):
                    booking = await locked_booking(conn, booking_id)
                    if booking.booking_status != APPROVED or booking.paid_at is None:
                        raise permanent(
                            f"booking {booking_id} is {booking.booking_status}, not a paid stay",
                            ValidationError.error_type,
                        )
                    monthly = await store.booked_rent(conn, booking)
                    periods = rent.rent_periods(
                        booking.start_date, booking.end_date, monthly, booking.amount_due
                    )
                    reference = await rent_store.applied_reference(conn, booking_id)
                    await rent_store.insert_schedule(
                        conn,
                        booking_id,
                        periods,
                        booking.currency,
                        first_paid=(booking.paid_at, reference or f"booking-{booking_id}"),
                    )
                    invoices = await rent_store.invoices_for(conn, booking_id)
        return rent_schedule(self._policy.rent_rules, invoices)

    @activity.defn(name=RENT_STEP)
    async def rent_step(self, request: RentStepRequest) -> InvoiceState:
        """One step of one invoice, once: the invoice as it stands after it."""
        reason = _REASONS[request.step]
        key = request.invoice_id
        if request.step == rent.REMIND:
            key = f"{request.invoice_id}@{request.at.isoformat()}"
        async with self._connection() as conn:
            with permanent_db_errors("rent step not recorded"):
                async with self._transaction(conn):
                    invoice = await rent_store.get_invoice(
                        conn, request.invoice_id, for_update=True
                    )
                    if invoice is None:
                        raise permanent(
                            f"invoice {request.invoice_id} does not exist",
                            ValidationError.error_type,
                        )
                    if await rent_store.rent_event_recorded(conn, invoice.booking_id, reason, key):
                        return invoice_state(invoice)  # an earlier attempt committed
                    if request.step == rent.ISSUE:
                        changed = await rent_store.issue(conn, invoice.id, request.at)
                    elif request.step == rent.OVERDUE:
                        changed = await rent_store.mark_overdue(conn, invoice.id, request.late_fee)
                    else:
                        changed = invoice.status in (rent_store.ISSUED, rent_store.OVERDUE)
                        if changed:
                            await rent_store.touch(conn, invoice.id)
                    if changed:
                        after = await rent_store.get_invoice(conn, invoice.id)
                        assert after is not None
                        await store.append_event(
                            conn,
                            invoice.booking_id,
                            APPROVED,
                            APPROVED,
                            reason,
                            {
                                "key": key,
                                "invoiceId": invoice.id,
                                "dueDate": invoice.due_date.isoformat(),
                                "amountDue": after.amount_due,
                                "rent": after.rent,
                                "lateFee": after.late_fee,
                                "periodStart": after.period_start.isoformat(),
                                "periodEnd": after.period_end.isoformat(),
                                "currency": after.currency,
                                "at": request.at.isoformat(),
                            },
                        )
                        invoice = after
        return invoice_state(invoice)

    @activity.defn(name=PAY_RENT)
    async def pay_rent(self, request: RentPaymentRequest) -> InvoiceState:
        """The invoice PAID by this payment; the same payment again answers the same. Anything
        else (another reference for a paid invoice, a VOID invoice, a reference used for
        another invoice of the booking) is PaymentRejected, for good."""
        payment = request.payment
        async with self._connection() as conn:
            with permanent_db_errors(
                "rent not paid",
                error_type=PaymentRejected.error_type,
                by_constraint={
                    "rent_invoices_reference": (
                        PaymentRejected.error_type,
                        "this paymentReference paid another invoice of the lease",
                    )
                },
            ):
                async with self._transaction(conn):
                    invoice = await rent_store.get_invoice(
                        conn, payment.invoice_id, for_update=True
                    )
                    if invoice is None or invoice.booking_id != request.booking_id:
                        raise permanent(
                            f"invoice {payment.invoice_id} is not one of this lease's",
                            ValidationError.error_type,
                        )
                    if invoice.status == rent_store.PAID:
                        if invoice.payment_reference == payment.payment_reference:
                            return invoice_state(invoice)
                        raise permanent(
                            f"invoice {invoice.id} is already paid", PaymentRejected.error_type
                        )
                    if invoice.status == rent_store.VOID:
                        raise permanent(
                            f"invoice {invoice.id} is VOID (the lease ended before it)",
                            PaymentRejected.error_type,
                        )
                    if (payment.amount, payment.currency) != (invoice.amount_due, invoice.currency):
                        raise permanent(
                            f"invoice {invoice.id} is {invoice.amount_due} {invoice.currency}, "
                            f"not {payment.amount} {payment.currency}",
                            PaymentRejected.error_type,
                        )
                    if await rent_store.booking_reference_used(
                        conn, invoice.booking_id, payment.payment_reference
                    ):
                        raise permanent(
                            "this paymentReference was a payment of the booking itself; "
                            "pay rent with a new paymentReference",
                            PaymentRejected.error_type,
                        )
                    await rent_store.pay(
                        conn, invoice.id, payment.payment_reference, request.paid_at
                    )
                    await store.append_event(
                        conn,
                        invoice.booking_id,
                        APPROVED,
                        APPROVED,
                        "RENT_PAID",
                        {
                            "key": invoice.id,
                            "invoiceId": invoice.id,
                            "paymentReference": payment.payment_reference,
                            "amount": payment.amount,
                        },
                    )
                    after = await rent_store.get_invoice(conn, invoice.id)
                    assert after is not None
        return invoice_state(after)
