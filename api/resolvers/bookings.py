"""Bookings: the hold, the payment, the cancellation, their reads and live updates.

- ``reserveApartment``, ``payBooking``, ``cancelBooking``, ``extendHold``: Tenants (their own
  bookings, in their own name) or Admins (anyone's); ``createApartmentBooking`` (AppSync's):
  Tenants;
- ``getBooking``, the booking lists and ``onBookingStatusChanged``: a tenant sees only its own
  bookings, Admins and Caretakers all.

Every change goes to the booking's workflow (``api.operations``); answers are read back from
the database, which the workflow's activities have written by the time it answers.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry
from strawberry.types import Info

from api.auth import Principal
from api.cost import MAX_LIST_ITEMS, bounded
from api.directives import ADMINS, TENANTS, authorize, cognito, resolver, subscription
from api.pagination import encode_token
from api.resolvers.common import booking_row, ctx, live_rows, may_act_as, may_see, page
from api.types.bookings import (
    Booking,
    BookingsResult,
    BookingStatus,
    CreateBookingInput,
    ExtendHoldInput,
    PayBookingInput,
    ReserveApartmentInput,
)
from api.types.common import Pagination
from booking.contract import (
    MAX_HOLD_SECONDS,
    MIN_HOLD_SECONDS,
    BookingInput,
    PaymentInput,
    payment_problem,
)
from booking.errors import ValidationError
from booking.store import reads
from booking.store.bookings import BookingRow


def _may_see(principal: Principal, row: BookingRow) -> None:
    may_see(principal, row.user_id, "booking")


async def _reserve(info: Info, booking: BookingInput) -> Booking:
    context = ctx(info)
    booking_id = await context.services.require_commands().reserve(booking, context.loaders.reader)
    return Booking.from_row(await booking_row(info, booking_id))


@strawberry.type
class BookingQueries:
    @resolver(directives=[cognito()])
    async def get_all_bookings_per_apartment(self, info: Info, apartment_id: str) -> list[Booking]:
        principal = authorize(info)
        rows = await ctx(info).loaders.reader.run(
            reads.bookings_for_apartment,
            apartment_id,
            user_id=None if principal.sees_all_bookings else principal.user_id,
            limit=MAX_LIST_ITEMS + 1,
            after=None,
        )
        return [Booking.from_row(r) for r in bounded(rows, f"apartment {apartment_id}")]

    @resolver(directives=[cognito()])
    async def get_booking(self, info: Info, id: strawberry.ID) -> Booking | None:
        principal = authorize(info)
        row = await ctx(info).loaders.bookings.load(str(id))
        if row is None:
            return None
        _may_see(principal, row)
        return Booking.from_row(row)

    @resolver(
        directives=[cognito()],
        description="Added: getAllBookingsPerApartment, paginated (oldest first).",
    )
    async def list_bookings_per_apartment(
        self, info: Info, apartment_id: str, pagination: Pagination | None = strawberry.UNSET
    ) -> BookingsResult:
        principal = authorize(info)
        kind = "bookings:" + apartment_id
        limit, cursor = page(kind, pagination)
        after = None
        if cursor:
            try:
                after = (datetime.fromisoformat(str(cursor[0])), str(cursor[1]))
            except (ValueError, IndexError):
                raise ValidationError("nextToken is not valid for this list") from None
        rows = await ctx(info).loaders.reader.run(
            reads.bookings_for_apartment,
            apartment_id,
            user_id=None if principal.sees_all_bookings else principal.user_id,
            limit=limit + 1,
            after=after,
        )
        items = rows[:limit]
        token = None
        if len(rows) > limit:
            last = items[-1]
            token = encode_token(kind, [last.created_on.isoformat(), last.id])
        return BookingsResult(items=[Booking.from_row(r) for r in items], next_token=token)


@strawberry.type
class BookingMutations:
    @resolver(directives=[cognito(TENANTS)])
    async def create_apartment_booking(self, info: Info, input: CreateBookingInput) -> bool:
        principal = authorize(info, TENANTS)
        if input.booking_status is not BookingStatus.PENDING:
            raise ValidationError("bookingStatus must be PENDING: a booking starts as a hold")
        may_act_as(info, principal, input.user_id)
        await _reserve(info, input.to_booking(ctx(info).services.settings.hold_seconds))
        return True

    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description="Returns once the hold is in place: PENDING, apartment RESERVED.",
    )
    async def reserve_apartment(self, info: Info, input: ReserveApartmentInput) -> Booking:
        principal = authorize(info, TENANTS, ADMINS)
        may_act_as(info, principal, input.user_id)
        return await _reserve(info, input.to_booking(ctx(info).services.settings.hold_seconds))

    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description="APPROVED (apartment OCCUPIED), or BookingExpired / PaymentRejected.",
    )
    async def pay_booking(self, info: Info, input: PayBookingInput) -> Booking:
        principal = authorize(info, TENANTS, ADMINS)
        row = await booking_row(info, str(input.booking_id))
        may_act_as(info, principal, row.user_id)
        payment = PaymentInput(input.amount, input.currency, input.payment_reference)
        problem = payment_problem(payment)
        if problem is not None:
            raise ValidationError(problem)
        await ctx(info).services.require_commands().pay(row, payment)
        return Booking.from_row(await booking_row(info, row.id))

    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description=(
            "Added: move the hold `seconds` later than it is now set; HoldNotExtendable "
            "once paid, cancelled, over, or out of extensions (24 h in all at most)."
        ),
    )
    async def extend_hold(self, info: Info, input: ExtendHoldInput) -> Booking:
        principal = authorize(info, TENANTS, ADMINS)
        row = await booking_row(info, str(input.booking_id))
        may_act_as(info, principal, row.user_id)
        if not MIN_HOLD_SECONDS <= input.seconds <= MAX_HOLD_SECONDS:
            raise ValidationError(
                f"seconds must be between {MIN_HOLD_SECONDS} and {MAX_HOLD_SECONDS}, "
                f"got {input.seconds}"
            )
        await ctx(info).services.require_commands().extend_hold(row, input.seconds)
        return Booking.from_row(await booking_row(info, row.id))

    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description="CANCELLED (apartment VACANT), or BookingNotCancellable.",
    )
    async def cancel_booking(self, info: Info, id: strawberry.ID) -> Booking:
        principal = authorize(info, TENANTS, ADMINS)
        row = await booking_row(info, str(id))
        may_act_as(info, principal, row.user_id)
        await ctx(info).services.require_commands().cancel(row)
        return Booking.from_row(await booking_row(info, row.id))


@strawberry.type
class BookingSubscriptions:
    @subscription(
        directives=[cognito()],
        description="The booking now, then again on every status change.",
    )
    async def on_booking_status_changed(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[Booking | None, None]:
        principal = authorize(info)
        rows = live_rows(
            ctx(info),
            str(id),
            reads.booking_by_id,
            str(id),
            version=lambda row: (row.booking_status, row.update_on),
            check=lambda row: _may_see(principal, row),
        )
        async for row in rows:
            yield Booking.from_row(row)
