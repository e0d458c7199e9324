"""A lease's rent: its invoices (getRentInvoices) and paying one (payRent, a workflow update:
the answer is the PAID invoice or an error, never a success-shaped unpaid one)."""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.directives import ADMINS, TENANTS, authorize, cognito, resolver
from api.resolvers.common import ctx, may_act_as, may_see
from api.types.rent import PayRentInput, RentInvoice
from booking.contract import PaymentInput, RentPaymentInput, payment_problem
from booking.errors import BookingNotFound, PaymentRejected, ValidationError
from booking.store import reads
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
        booking = await reader.run(reads.booking_by_id, invoice.booking_id)
        if booking is None:
            raise BookingNotFound(f"booking {invoice.booking_id} does not exist")
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
