"""The waiting list: an entry, its status, joining."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.types import Info

from api.directives import cognito, resolver
from api.scalars import FIRST_NIGHT, MOVE_OUT, AWSDate, AWSDateTime
from api.types.bookings import Booking
from api.types.common import ctx
from booking.store.waitlist import WaitlistRow


@strawberry.enum
class WaitlistStatus(Enum):
    WAITING = "WAITING"
    OFFERED = "OFFERED"
    BOOKED = "BOOKED"
    LAPSED = "LAPSED"
    LEFT = "LEFT"


@strawberry.input
class JoinWaitlistInput:
    apartment_id: str
    user_id: str
    start_date: AWSDate = strawberry.field(description=FIRST_NIGHT)
    end_date: AWSDate = strawberry.field(description=MOVE_OUT)


@strawberry.type(
    directives=[cognito()],
    description="A tenant's place on an apartment's waiting list (added).",
)
class WaitlistEntry:
    row: strawberry.Private[WaitlistRow]
    id: strawberry.ID
    apartment_id: str
    user_id: str
    start_date: AWSDate = strawberry.field(description=FIRST_NIGHT)
    end_date: AWSDate = strawberry.field(description=MOVE_OUT)
    status: WaitlistStatus
    position: int | None = strawberry.field(description="While WAITING: 1 is next in line.")
    offered_booking_id: strawberry.ID | None = strawberry.field(
        description="The hold offered to this entry (OFFERED, then BOOKED or LAPSED)."
    )
    created_on: AWSDateTime

    @resolver(description="The offered booking (pay it with payBooking).")
    async def offered_booking(self, info: Info) -> Booking | None:
        if self.row.offered_booking_id is None:
            return None
        row = await ctx(info).loaders.bookings.load(self.row.offered_booking_id)
        return None if row is None else Booking.from_row(row)

    @classmethod
    def from_row(cls, row: WaitlistRow) -> WaitlistEntry:
        return cls(
            row=row,
            id=strawberry.ID(row.id),
            apartment_id=row.apartment_id,
            user_id=row.user_id,
            start_date=AWSDate(row.start_date),
            end_date=AWSDate(row.end_date),
            status=WaitlistStatus(row.status),
            position=row.position,
            offered_booking_id=(
                strawberry.ID(row.offered_booking_id) if row.offered_booking_id else None
            ),
            created_on=AWSDateTime(row.created_on),
        )
