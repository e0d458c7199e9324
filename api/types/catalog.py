"""Buildings and apartments: the catalog's types and inputs (and ``monthlyRent`` / ``currency``)."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.types import Info

from api.cost import bounded
from api.directives import cognito, resolver
from api.scalars import AWSDate, AWSDateTime
from api.types.accounts import User, load_user
from api.types.common import ctx, given
from booking.errors import BuildingNotFound
from booking.store.catalog import ApartmentData, BuildingData
from booking.store.reads import ApartmentRow, BuildingRow

DEFAULT_CURRENCY = "EUR"


@strawberry.enum
class ApartmentType(Enum):
    SINGLE_ROOM = "SINGLE_ROOM"
    DOUBLE_ROOM = "DOUBLE_ROOM"
    VILLA = "VILLA"


@strawberry.enum(
    description="For today: OCCUPIED while a paid stay covers tonight (or the apartment is let "
    "outside this service), RESERVED while an open hold's stay does, VACANT otherwise."
)
class ApartmentStatus(Enum):
    VACANT = "VACANT"
    OCCUPIED = "OCCUPIED"
    RESERVED = "RESERVED"  # added: held while the tenant pays


@strawberry.type(directives=[cognito()])
class Address:
    street_address: str
    postal_code: str
    city: str
    country: str


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
        rows = await ctx(info).loaders.building_apartments.load(self.row.id)
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

    @resolver(
        description="Added: the first night from today that no hold or paid stay covers (a "
        "stay may be booked from it); null for an apartment let outside this service."
    )
    async def available_from(self, info: Info) -> AWSDate | None:
        found = await ctx(info).loaders.available_from.load(self.row.id)
        return None if found is None else AWSDate(found)

    @strawberry.field
    async def building(self, info: Info) -> Building:
        row = await ctx(info).loaders.buildings.load(self.row.building_id)
        if row is None:
            raise BuildingNotFound(f"building {self.row.building_id} does not exist")
        return Building.from_row(row)

    @resolver(
        description="Null while the apartment has no tenant (deviation), and for callers "
        "who may not read that account (tenants see only themselves)."
    )
    async def tenant(self, info: Info) -> User | None:
        return await load_user(info, self.row.tenant_id)

    @resolver(
        description="Null while the apartment has no caretaker (deviation), and for callers "
        "who may not read that account (tenants see only themselves)."
    )
    async def caretaker(self, info: Info) -> User | None:
        return await load_user(info, self.row.caretaker_id)

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


@strawberry.type(directives=[cognito()], description="A page of buildings (added).")
class BuildingsResult:
    items: list[Building]
    next_token: str | None


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

    def to_data(self, building_id: str) -> BuildingData:
        return BuildingData(
            id=building_id,
            user_id=self.user_id,
            name=self.name,
            street_address=self.address.street_address,
            postal_code=self.address.postal_code,
            city=self.address.city,
            country=self.address.country,
            number_of_apartments=self.number_of_apartments,
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

    def to_data(self, apartment_id: str) -> ApartmentData:
        """The row a create writes (rent 0 and EUR unless given)."""
        monthly_rent = given(self.monthly_rent)
        return ApartmentData(
            id=apartment_id,
            apartment_number=self.apartment_number,
            building_id=self.building_id,
            number_of_rooms=self.number_of_rooms,
            kitchen=self.kitchen,
            apartment_type=self.apartment_type.value,
            apartment_status=self.apartment_status.value,
            monthly_rent=monthly_rent if monthly_rent is not None else 0,
            currency=given(self.currency) or DEFAULT_CURRENCY,
            caretaker_id=given(self.caretaker_id),
        )
