"""The calendar: an apartment's nights (getApartmentCalendar) and apartments free for a stay
(searchApartments). Reads only: the stays are written by their booking workflows."""

from __future__ import annotations

from typing import Annotated

import strawberry
from strawberry.types import Info

from api.directives import authorize, cognito, resolver
from api.pagination import decode_token, encode_token, page_limit
from api.resolvers.common import ctx
from api.scalars import AWSDate
from api.types.calendar import ApartmentsResult, CalendarRange, SearchApartmentsInput
from api.types.catalog import Apartment
from api.types.common import given
from booking.calendar import calendar_ranges, window_problem
from booking.contract import stay_problem
from booking.errors import ApartmentNotFound, ValidationError
from booking.store import calendar


@strawberry.type
class CalendarQueries:
    @resolver(
        directives=[cognito()],
        description="Added: consecutive ranges covering the nights [from, to) (at most 366), "
        "each FREE, HELD or BOOKED.",
    )
    async def get_apartment_calendar(
        self,
        info: Info,
        apartment_id: strawberry.ID,
        from_: Annotated[AWSDate, strawberry.argument(name="from")],
        to: AWSDate,
    ) -> list[CalendarRange]:
        principal = authorize(info)
        problem = window_problem(from_, to)
        if problem is not None:
            raise ValidationError(problem)
        found = await ctx(info).loaders.reader.run(
            calendar.calendar_of, str(apartment_id), from_, to
        )
        if found is None:
            raise ApartmentNotFound(f"apartment {apartment_id} does not exist")
        let_outside, stays = found
        return [
            CalendarRange.from_range(r, show_booking=principal.sees_all_bookings)
            for r in calendar_ranges(stays, from_, to, let_outside=let_outside)
        ]

    @resolver(
        directives=[cognito()],
        description="Added: apartments free for every night of [startDate, endDate), by id, "
        "paginated (limit, nextToken).",
    )
    async def search_apartments(self, info: Info, input: SearchApartmentsInput) -> ApartmentsResult:
        authorize(info)
        context = ctx(info)
        start, end = input.start_date, input.end_date
        problem = stay_problem(start, end, context.services.require_commands().stay_limits())
        if problem is not None:
            raise ValidationError(problem)
        where = input.to_filter()
        if (where.min_rooms or 0) < 0 or (where.max_monthly_rent or 0) < 0:
            raise ValidationError("minRooms and maxMonthlyRent must not be negative")
        limit = page_limit(given(input.limit))
        # A token is good for the range it was made for only.
        kind = f"search:{start}:{end}"
        cursor = decode_token(kind, given(input.next_token))
        ids = await context.loaders.reader.run(
            calendar.free_apartment_ids,
            start,
            end,
            where,
            limit=limit + 1,
            after_id=str(cursor[0]) if cursor else None,
        )
        page = ids[:limit]
        rows = await context.loaders.apartments.load_many(page)
        items = [Apartment.from_row(r) for r in rows if r is not None]
        token = encode_token(kind, [page[-1]]) if len(ids) > limit else None
        return ApartmentsResult(items=items, next_token=token)
