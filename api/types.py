"""The GraphQL types: the two AppSync schemas, field for field, plus the contract's additions.

Output types wrap a row from ``booking.store.reads``; nested objects are
loaded through the request's DataLoaders. Names follow AppSync exactly,
including the lower-case ``stepfunctions`` type and ``updateOn``.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

import strawberry
from strawberry.types import Info

from api.cost import bounded
from api.directives import cognito, resolver
from api.scalars import AWSDate, AWSDateTime
from booking.errors import BuildingNotFound, Unauthorized, UserNotFound
from booking.store.bookings import BookingRow
from booking.store.reads import ApartmentRow, BuildingRow, StepFunctionRow, UserRow
from booking.store.waitlist import WaitlistRow

if TYPE_CHECKING:
    from api.context import RequestContext


@strawberry.enum
class BookingStatus(Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    CANCELLED = "CANCELLED"


@strawberry.enum
class ApartmentType(Enum):
    SINGLE_ROOM = "SINGLE_ROOM"
    DOUBLE_ROOM = "DOUBLE_ROOM"
    VILLA = "VILLA"


@strawberry.enum
class ApartmentStatus(Enum):
    VACANT = "VACANT"
    OCCUPIED = "OCCUPIED"
    RESERVED = "RESERVED"  # added: held while the tenant pays


@strawberry.enum
class UserType(Enum):
    ADMIN = "ADMIN"
    TENANT = "TENANT"
    CARETAKER = "CARETAKER"


def _ctx(info: Info) -> RequestContext:
    context: RequestContext = info.context
    return context


@strawberry.type(directives=[cognito()])
class Address:
    street_address: str
    postal_code: str
    city: str
    country: str


@strawberry.type(directives=[cognito()])
class User:
    id: strawberry.ID
    first_name: str
    last_name: str
    email: str
    verified: bool
    user_type: UserType
    updated_on: AWSDateTime | None
    created_on: AWSDateTime

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        return cls(
            id=strawberry.ID(row.id),
            first_name=row.first_name,
            last_name=row.last_name,
            email=row.email,
            verified=row.verified,
            user_type=UserType(row.user_type),
            updated_on=AWSDateTime(row.updated_on) if row.updated_on else None,
            created_on=AWSDateTime(row.created_on),
        )


async def _load_user(info: Info, user_id: str | None) -> User | None:
    """The account ``user_id`` if the caller may read it (as ``getUserAccount`` decides), else None.

    Decided before loading, so a hidden account costs no query and the
    visible ones still batch into one.
    """
    if user_id is None or not _ctx(info).caller().may_read_account(user_id):
        return None
    row = await _ctx(info).loaders.users.load(user_id)
    return None if row is None else User.from_row(row)


@strawberry.type(directives=[cognito()])
class Booking:
    row: strawberry.Private[BookingRow]
    id: strawberry.ID
    user_id: str
    start_date: AWSDate
    end_date: AWSDate
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
        if not _ctx(info).caller().may_read_account(self.row.user_id):
            raise Unauthorized("Not Authorized to read another user's account")
        user = await _load_user(info, self.row.user_id)
        if user is None:
            raise UserNotFound(f"user {self.row.user_id} does not exist")
        return user

    @resolver(description="The booked apartment (added).")
    async def apartment(self, info: Info) -> Apartment | None:
        row = await _ctx(info).loaders.apartments.load(self.row.apartment_id)
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


@strawberry.type(directives=[cognito()])
class Building:
    row: strawberry.Private[BuildingRow]
    id: strawberry.ID
    user_id: str
    name: str
    address: Address
    number_of_apartments: int
    update_on: AWSDateTime
    created_on: AWSDateTime

    @strawberry.field
    async def apartments(self, info: Info) -> list[Apartment] | None:
        rows = await _ctx(info).loaders.building_apartments.load(self.row.id)
        return [Apartment.from_row(r) for r in bounded(rows, f"building {self.row.id}")]

    @classmethod
    def from_row(cls, row: BuildingRow) -> Building:
        return cls(
            row=row,
            id=strawberry.ID(row.id),
            user_id=row.user_id,
            name=row.name,
            address=Address(
                street_address=row.street_address,
                postal_code=row.postal_code,
                city=row.city,
                country=row.country,
            ),
            number_of_apartments=row.number_of_apartments,
            update_on=AWSDateTime(row.update_on),
            created_on=AWSDateTime(row.created_on),
        )


@strawberry.type(directives=[cognito()])
class Apartment:
    row: strawberry.Private[ApartmentRow]
    id: strawberry.ID
    apartment_number: str
    apartment_type: ApartmentType
    apartment_status: ApartmentStatus
    kitchen: bool
    number_of_rooms: int
    created_on: AWSDateTime
    monthly_rent: int = strawberry.field(description="Minor units (cents).")
    currency: str = strawberry.field(description="ISO 4217.")

    @strawberry.field
    async def building(self, info: Info) -> Building:
        row = await _ctx(info).loaders.buildings.load(self.row.building_id)
        if row is None:
            raise BuildingNotFound(f"building {self.row.building_id} does not exist")
        return Building.from_row(row)

    @resolver(
        description="Null while the apartment has no tenant (deviation), and for callers "
        "who may not read that account (tenants see only themselves)."
    )
    async def tenant(self, info: Info) -> User | None:
        return await _load_user(info, self.row.tenant_id)

    @resolver(
        description="Null while the apartment has no caretaker (deviation), and for callers "
        "who may not read that account (tenants see only themselves)."
    )
    async def caretaker(self, info: Info) -> User | None:
        return await _load_user(info, self.row.caretaker_id)

    @classmethod
    def from_row(cls, row: ApartmentRow) -> Apartment:
        return cls(
            row=row,
            id=strawberry.ID(row.id),
            apartment_number=row.apartment_number,
            apartment_type=ApartmentType(row.apartment_type),
            apartment_status=ApartmentStatus(row.apartment_status),
            kitchen=row.kitchen,
            number_of_rooms=row.number_of_rooms,
            created_on=AWSDateTime(row.created_on),
            monthly_rent=row.monthly_rent,
            currency=row.currency,
        )


@strawberry.type(directives=[cognito()])
class UsersResult:
    items: list[User]
    next_token: str | None


@strawberry.type(directives=[cognito()], description="A page of bookings (added).")
class BookingsResult:
    items: list[Booking]
    next_token: str | None


@strawberry.type(directives=[cognito()], description="A page of buildings (added).")
class BuildingsResult:
    items: list[Building]
    next_token: str | None


@strawberry.type(name="stepfunctions")
class StepFunctions:
    id: str
    arn: str

    @classmethod
    def from_row(cls, row: StepFunctionRow) -> StepFunctions:
        return cls(id=row.id, arn=row.arn)


# -- inputs ------------------------------------------------------------------------------


@strawberry.input
class CreateBookingInput:
    user_id: str
    apartment_id: str
    start_date: AWSDate
    end_date: AWSDate
    booking_status: BookingStatus


@strawberry.input
class AddressInput:
    street_address: str
    postal_code: str
    city: str
    country: str


@strawberry.input
class BuildingInput:
    name: str
    user_id: str
    number_of_apartments: int
    address: AddressInput


@strawberry.input
class UserInput:
    first_name: str
    last_name: str
    email: str
    verified: bool
    user_type: UserType
    id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="Added: the account's id. Defaults to the caller's sub; "
        "only Admins and API keys may name another id.",
    )


@strawberry.input
class UpdateUserInput:
    first_name: str
    last_name: str
    verified: bool
    user_type: UserType
    id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="Added: the account to update. Defaults to the caller's own; "
        "only Admins and API keys may update another.",
    )


@strawberry.input
class ApartmentInput:
    apartment_number: str
    building_id: str
    number_of_rooms: int
    kitchen: bool
    apartment_type: ApartmentType
    apartment_status: ApartmentStatus
    monthly_rent: int | None = strawberry.field(
        default=strawberry.UNSET, description="Minor units."
    )
    currency: str | None = strawberry.field(default=strawberry.UNSET, description="ISO 4217.")
    caretaker_id: str | None = strawberry.field(default=strawberry.UNSET, description="Added.")


@strawberry.input
class Pagination:
    limit: int | None = strawberry.UNSET
    next_token: str | None = strawberry.UNSET


@strawberry.input
class StepFunctionsInput:
    id: strawberry.ID
    arn: str


@strawberry.input
class ReserveApartmentInput:
    apartment_id: str
    user_id: str
    start_date: AWSDate
    end_date: AWSDate
    hold_seconds: int | None = strawberry.field(
        default=strawberry.UNSET, description="Default from configuration; 1 to 86400."
    )
    idempotency_key: str | None = strawberry.field(
        default=strawberry.UNSET, description="Same key, same booking: no second hold."
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
    start_date: AWSDate
    end_date: AWSDate


@strawberry.type(
    directives=[cognito()],
    description="A tenant's place on an apartment's waiting list (added).",
)
class WaitlistEntry:
    row: strawberry.Private[WaitlistRow]
    id: strawberry.ID
    apartment_id: str
    user_id: str
    start_date: AWSDate
    end_date: AWSDate
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
        row = await _ctx(info).loaders.bookings.load(self.row.offered_booking_id)
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
