"""A lease's rent: its invoices (one per period) and paying one."""

from __future__ import annotations

from enum import Enum

import strawberry

from api.directives import cognito
from api.scalars import AWSDate, AWSDateTime
from booking.store.rent import RentInvoiceRow


@strawberry.enum(description="Added: a rent invoice's state.")
class RentInvoiceStatus(Enum):
    SCHEDULED = "SCHEDULED"
    ISSUED = "ISSUED"
    PAID = "PAID"
    OVERDUE = "OVERDUE"
    VOID = "VOID"


@strawberry.type(
    directives=[cognito()],
    description="Added: the rent of one period [periodStart, periodEnd) of a lease.",
)
class RentInvoice:
    id: strawberry.ID
    booking_id: strawberry.ID
    period_start: AWSDate
    period_end: AWSDate = strawberry.field(description="The first day after the period.")
    due_date: AWSDate
    rent: int = strawberry.field(description="Minor units.")
    late_fee: int = strawberry.field(description="Minor units; added once when OVERDUE.")
    amount_due: int = strawberry.field(description="rent + lateFee, minor units.")
    currency: str
    status: RentInvoiceStatus
    paid_at: AWSDateTime | None
    payment_reference: str | None

    @classmethod
    def from_row(cls, row: RentInvoiceRow) -> RentInvoice:
        return cls(
            id=strawberry.ID(row.id),
            booking_id=strawberry.ID(row.booking_id),
            period_start=AWSDate(row.period_start),
            period_end=AWSDate(row.period_end),
            due_date=AWSDate(row.due_date),
            rent=row.rent,
            late_fee=row.late_fee,
            amount_due=row.amount_due,
            currency=row.currency,
            status=RentInvoiceStatus(row.status),
            paid_at=None if row.paid_at is None else AWSDateTime(row.paid_at),
            payment_reference=row.payment_reference,
        )


@strawberry.input(description="Added: pay one rent invoice (ahead of its time too).")
class PayRentInput:
    invoice_id: strawberry.ID
    amount: int = strawberry.field(description="Minor units; must equal amountDue.")
    currency: str
    payment_reference: str = strawberry.field(
        description="A repeat with the same reference answers the same paid invoice."
    )


@strawberry.input(
    description=(
        "Added: give notice: the stay's move-out day moves earlier, to `endDate` (a tenant: "
        "at least BOOKING_LEASE_NOTICE_DAYS from today; an Admin: any day from today)."
    )
)
class EndLeaseInput:
    booking_id: strawberry.ID
    end_date: AWSDate = strawberry.field(
        description="The new move-out day (the first day the tenant no longer stays)."
    )


@strawberry.input(
    description="Added: extend the stay to `endDate` when the nights after it are free."
)
class RenewLeaseInput:
    booking_id: strawberry.ID
    end_date: AWSDate = strawberry.field(description="The new move-out day, after the current one.")
