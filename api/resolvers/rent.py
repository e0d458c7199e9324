"""A lease: its rent invoices (getRentInvoices, onRentInvoiceChanged), paying one (payRent, a
workflow update: the answer is the PAID invoice or an error, never a success-shaped unpaid
one), and its end moved (endLease, renewLease: updates of the booking's workflow, which owns
the stay's nights and invoices)."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import date, datetime

import strawberry
from strawberry.types import Info

from api.directives import ADMINS, TENANTS, authorize, cognito, resolver, subscription
from api.notify import rent_key
from api.resolvers.common import booking_row, ctx, live_rows, may_act_as, may_see
from api.types.bookings import Booking
from api.types.rent import EndLeaseInput, PayRentInput, RenewLeaseInput, RentInvoice
from booking.contract import PaymentInput, RentPaymentInput, payment_problem
from booking.errors import BookingNotFound, PaymentRejected, ValidationError
from booking.store import rent as rent_store


@strawberry.type
class RentQueries:
    @resolver(
        directives=[cognito()],
        description="Added: a lease's rent invoices, by period (a tenant: its own leases).",
    )
    async def get_rent_invoices(self, info: Info, booking_id: strawberry.ID) -> list[RentInvoice]:
        principal = authorize(info)
        booking = await ctx(info).loaders.bookings.load(str(booking_id))
        if booking is None:
            raise BookingNotFound(f"booking {booking_id} does not exist")
        may_see(principal, booking.user_id, "booking")
        rows = await ctx(info).loaders.reader.run(rent_store.invoices_for, booking.id)
        return [RentInvoice.from_row(r) for r in rows]


@strawberry.type
class RentMutations:
    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description="Added: pay a rent invoice; answers it PAID, or an error.",
    )
    async def pay_rent(self, info: Info, input: PayRentInput) -> RentInvoice:
        principal = authorize(info, TENANTS, ADMINS)
        reader = ctx(info).loaders.reader
        invoice = await reader.run(rent_store.get_invoice, str(input.invoice_id))
        if invoice is None:
            raise ValidationError(f"invoice {input.invoice_id} does not exist")
        booking = await booking_row(info, invoice.booking_id)
        may_act_as(info, principal, booking.user_id)
        problem = payment_problem(
            PaymentInput(input.amount, input.currency, input.payment_reference)
        )
        if problem is not None:
            raise ValidationError(problem)
        payment = RentPaymentInput(
            invoice.id, input.amount, input.currency, input.payment_reference
        )
        paid = await ctx(info).services.require_commands().pay_rent(booking, payment)
        if paid.status != "PAID":
            raise PaymentRejected(f"invoice {invoice.id} is {paid.status}, not paid")
        row = await reader.run(rent_store.get_invoice, invoice.id)
        assert row is not None
        return RentInvoice.from_row(row)

    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description=(
            "Added: give notice; the stay ends on endDate (the period it falls in is prorated, "
            "later invoices VOID, rent paid for nights given up refunded, the nights free "
            "again at once), or LeaseNotChangeable."
        ),
    )
    async def end_lease(self, info: Info, input: EndLeaseInput) -> Booking:
        return await _move_end(info, str(input.booking_id), input.end_date, later=False)

    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description=(
            "Added: extend the stay to endDate when those nights are free (else "
            "ApartmentUnavailable naming the stay that has them); new periods are invoiced."
        ),
    )
    async def renew_lease(self, info: Info, input: RenewLeaseInput) -> Booking:
        return await _move_end(info, str(input.booking_id), input.end_date, later=True)


async def _move_end(info: Info, booking_id: str, end_date: date, *, later: bool) -> Booking:
    principal = authorize(info, TENANTS, ADMINS)
    booking = await booking_row(info, booking_id)
    may_act_as(info, principal, booking.user_id)
    await (
        ctx(info)
        .services.require_commands()
        .move_lease_end(booking, end_date, staff=principal.is_admin, later=later)
    )
    return Booking.from_row(await booking_row(info, booking_id))


@strawberry.type
class RentSubscriptions:
    @subscription(
        directives=[cognito()],
        description=(
            "Added: every change of one of the lease's invoices (issued, reminded, overdue, "
            "paid, resized, void, new), as it is written."
        ),
    )
    async def on_rent_invoice_changed(
        self, info: Info, booking_id: strawberry.ID
    ) -> AsyncGenerator[RentInvoice, None]:
        principal = authorize(info)
        context = ctx(info)
        booking = await booking_row(info, str(booking_id))
        may_see(principal, booking.user_id, "booking")
        seen: dict[str, datetime] | None = None
        async for rows in live_rows(
            context,
            rent_key(booking.id),
            rent_store.invoices_for,
            booking.id,
            version=lambda rows: tuple((row.id, row.updated_on) for row in rows),
            check=lambda rows: None,  # the booking's owner was checked above
        ):
            # The invoices as they stood when the subscription began are not a change.
            if seen is not None:
                for row in rows:
                    if seen.get(row.id) != row.updated_on:
                        yield RentInvoice.from_row(row)
            seen = {row.id: row.updated_on for row in rows}
