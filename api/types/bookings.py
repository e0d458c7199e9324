"""Bookings: ``Booking`` (AppSync's, plus the hold, the payment and the workflow) and the
inputs of reserve, pay and extend."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.types import Info

from api.directives import cognito, resolver
from api.scalars import FIRST_NIGHT, MOVE_OUT, AWSDate, AWSDateTime
from api.types.accounts import User, load_user
from api.types.catalog import Apartment
from api.types.common import ctx, given
from booking.contract import BookingInput, booking_id_for
from booking.errors import Unauthorized, UserNotFound
from booking.store.bookings import BookingRow


@strawberry.enum
class BookingStatus(Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    CANCELLED = "CANCELLED"


@strawberry.type(directives=[cognito()])
class Booking:
    row: strawberry.Private[BookingRow]
    id: strawberry.ID
    user_id: str
    start_date: AWSDate = strawberry.field(description=FIRST_NIGHT)
    end_date: AWSDate = strawberry.field(description=MOVE_OUT)
    apartment_id: str
    booking_status: BookingStatus
    update_on: AWSDateTime
    created_on: AWSDateTime
    amount_due: int
    currency: str
    hold_expires_at: AWSDateTime | None
    paid_at: AWSDateTime | None
    cancellation_reason: str | None
    workflow_id: str
    lease_ended_at: AWSDateTime | None = strawberry.field(
        description="Set when the lease ran to its endDate and the apartment was freed."
    )
    hold_extensions: int = strawberry.field(description="How often extendHold moved the hold.")

    @strawberry.field
    async def user(self, info: Info) -> User:
        # Non-null in AppSync's schema, so a hidden account is an error, not null.
        # Today only the booking's own tenant, Admins and Caretakers see a booking,
        # and all of them may read this account; the check keeps it so.
        if not ctx(info).caller().may_read_account(self.row.user_id):
            raise Unauthorized("Not Authorized to read another user's account")
        user = await load_user(info, self.row.user_id)
        if user is None:
            raise UserNotFound(f"user {self.row.user_id} does not exist")
        return user

    @resolver(description="The booked apartment (added).")
    async def apartment(self, info: Info) -> Apartment | None:
        row = await ctx(info).loaders.apartments.load(self.row.apartment_id)
        return None if row is None else Apartment.from_row(row)

    @classmethod
    def from_row(cls, row: BookingRow) -> Booking:
        def instant(value: object) -> AWSDateTime | None:
            return AWSDateTime(value) if value is not None else None  # type: ignore[arg-type]

        return cls(
            row=row,
            id=strawberry.ID(row.id),
            user_id=row.user_id,
            start_date=AWSDate(row.start_date),
            end_date=AWSDate(row.end_date),
            apartment_id=row.apartment_id,
            booking_status=BookingStatus(row.booking_status),
            update_on=AWSDateTime(row.update_on),
            created_on=AWSDateTime(row.created_on),
            amount_due=row.amount_due,
            currency=row.currency,
            hold_expires_at=instant(row.hold_expires_at),
            paid_at=instant(row.paid_at),
            cancellation_reason=row.cancellation_reason,
            workflow_id=row.workflow_id,
            lease_ended_at=instant(row.lease_ended_at),
            hold_extensions=row.hold_extensions,
        )


@strawberry.type(directives=[cognito()], description="A page of bookings (added).")
class BookingsResult:
    items: list[Booking]
    next_token: str | None


@strawberry.input
class CreateBookingInput:
    user_id: str
    apartment_id: str
    start_date: AWSDate = strawberry.field(description=FIRST_NIGHT)
    end_date: AWSDate = strawberry.field(description=MOVE_OUT)
    booking_status: BookingStatus

    def to_booking(self, hold_seconds: int) -> BookingInput:
        """The hold AppSync's createApartmentBooking places (no idempotency key)."""
        return BookingInput(
            booking_id=booking_id_for(self.user_id, None),
            apartment_id=self.apartment_id,
            user_id=self.user_id,
            start_date=self.start_date,
            end_date=self.end_date,
            hold_seconds=hold_seconds,
        )


@strawberry.input
class ReserveApartmentInput:
    apartment_id: str
    user_id: str
    start_date: AWSDate = strawberry.field(description=FIRST_NIGHT)
    end_date: AWSDate = strawberry.field(description=MOVE_OUT)
    hold_seconds: int | None = strawberry.field(
        default=strawberry.UNSET, description="Default from configuration; 1 to 86400."
    )
    idempotency_key: str | None = strawberry.field(
        default=strawberry.UNSET, description="Same key, same booking: no second hold."
    )

    def to_booking(self, default_hold_seconds: int) -> BookingInput:
        """The booking this asks for (the hold from configuration unless it names one)."""
        hold_seconds = given(self.hold_seconds)
        key = given(self.idempotency_key)
        return BookingInput(
            booking_id=booking_id_for(self.user_id, key),
            apartment_id=self.apartment_id,
            user_id=self.user_id,
            start_date=self.start_date,
            end_date=self.end_date,
            hold_seconds=hold_seconds if hold_seconds is not None else default_hold_seconds,
            idempotency_key=key,
        )


@strawberry.input
class PayBookingInput:
    booking_id: strawberry.ID
    amount: int = strawberry.field(description="Minor units; must equal amountDue.")
    currency: str
    payment_reference: str = strawberry.field(
        description="A repeat with the same reference changes nothing."
    )


@strawberry.input
class ExtendHoldInput:
    booking_id: strawberry.ID
    seconds: int = strawberry.field(
        description="How much later than it is now set the hold ends; 1 to 86400."
    )
