"""The calendar: an apartment's nights as ranges, and the search for apartments free for a stay.

A range is ``[startDate, endDate)``: ``endDate`` is the first night after it (a move-out day).
"""

from __future__ import annotations

from enum import Enum

import strawberry

from api.directives import cognito
from api.scalars import AWSDate
from api.types.catalog import Apartment, ApartmentType
from api.types.common import given
from booking.calendar import CalendarRange as Range
from booking.store.calendar import ApartmentFilter


@strawberry.enum(description="Added: what a range of nights is.")
class CalendarState(Enum):
    FREE = "FREE"
    HELD = "HELD"  # an open hold: the tenant is paying
    BOOKED = "BOOKED"  # a paid stay (or let outside this service)


@strawberry.type(
    directives=[cognito()],
    description="Added: nights [startDate, endDate) of one apartment in one state.",
)
class CalendarRange:
    start_date: AWSDate = strawberry.field(description="The first night of the range.")
    end_date: AWSDate = strawberry.field(
        description="The first night after the range (the move-out day of a stay)."
    )
    state: CalendarState
    booking_id: strawberry.ID | None = strawberry.field(
        description="The booking that holds or booked these nights: for Admins and Caretakers "
        "only (null for tenants, for free nights, and for an apartment let outside)."
    )

    @classmethod
    def from_range(cls, found: Range, *, show_booking: bool) -> CalendarRange:
        booking = found.booking_id if show_booking else None
        return cls(
            start_date=AWSDate(found.start_date),
            end_date=AWSDate(found.end_date),
            state=CalendarState(found.state),
            booking_id=None if booking is None else strawberry.ID(booking),
        )


@strawberry.input(description="Added: apartments free for every night of [startDate, endDate).")
class SearchApartmentsInput:
    start_date: AWSDate
    end_date: AWSDate = strawberry.field(description="The move-out day (not a night of the stay).")
    building_id: str | None = strawberry.UNSET
    apartment_type: ApartmentType | None = strawberry.UNSET
    min_rooms: int | None = strawberry.UNSET
    max_monthly_rent: int | None = strawberry.field(
        default=strawberry.UNSET, description="Minor units."
    )
    limit: int | None = strawberry.UNSET
    next_token: str | None = strawberry.UNSET

    def to_filter(self) -> ApartmentFilter:
        kind = given(self.apartment_type)
        return ApartmentFilter(
            building_id=given(self.building_id),
            apartment_type=None if kind is None else kind.value,
            min_rooms=given(self.min_rooms),
            max_monthly_rent=given(self.max_monthly_rent),
        )


@strawberry.type(directives=[cognito()], description="Added: a page of apartments.")
class ApartmentsResult:
    items: list[Apartment]
    next_token: str | None
