"""Buildings and apartments: their reads (any signed-in user) and creation (Admins)."""

from __future__ import annotations

import uuid

import strawberry
from strawberry.types import Info

from api.cost import bounded
from api.directives import ADMINS, authorize, cognito, resolver
from api.pagination import encode_token
from api.resolvers.common import ctx, page
from api.types.catalog import Apartment, ApartmentInput, Building, BuildingInput, BuildingsResult
from api.types.common import Pagination
from booking import catalog
from booking.errors import ApartmentNotFound, BuildingNotFound, ValidationError
from booking.store import reads


@strawberry.type
class CatalogQueries:
    @resolver(directives=[cognito()])
    async def get_apartment(self, info: Info, id: strawberry.ID) -> Apartment | None:
        authorize(info)
        row = await ctx(info).loaders.apartments.load(str(id))
        return None if row is None else Apartment.from_row(row)

    @resolver(directives=[cognito()])
    async def get_all_apartments_per_building(
        self, info: Info, building_id: str
    ) -> list[Apartment]:
        authorize(info)
        rows = await ctx(info).loaders.building_apartments.load(building_id)
        return [Apartment.from_row(r) for r in bounded(rows, f"building {building_id}")]

    @resolver(directives=[cognito()], description="Added.")
    async def get_building(self, info: Info, id: strawberry.ID) -> Building | None:
        authorize(info)
        row = await ctx(info).loaders.buildings.load(str(id))
        return None if row is None else Building.from_row(row)

    @resolver(directives=[cognito()], description="Added: every building, paginated.")
    async def get_all_buildings(
        self, info: Info, pagination: Pagination | None = strawberry.UNSET
    ) -> BuildingsResult:
        authorize(info)
        limit, cursor = page("buildings", pagination)
        after = str(cursor[0]) if cursor else None
        rows = await ctx(info).loaders.reader.run(
            reads.buildings_page, limit=limit + 1, after_id=after
        )
        items = rows[:limit]
        token = encode_token("buildings", [items[-1].id]) if len(rows) > limit else None
        return BuildingsResult(items=[Building.from_row(r) for r in items], next_token=token)


@strawberry.type
class CatalogMutations:
    @resolver(directives=[cognito(ADMINS)])
    async def create_building(self, info: Info, input: BuildingInput) -> Building:
        principal = authorize(info, ADMINS)
        record = input.to_data(str(uuid.uuid4()))
        await ctx(info).services.write(catalog.create_building, record, actor=principal.actor)
        rows = await ctx(info).loaders.reader.run(reads.buildings_by_ids, [record.id])
        if not rows:
            raise BuildingNotFound(f"building {record.id} does not exist")
        return Building.from_row(rows[0])

    @resolver(directives=[cognito(ADMINS)])
    async def create_apartment(
        self, info: Info, input: ApartmentInput | None = strawberry.UNSET
    ) -> Apartment:
        principal = authorize(info, ADMINS)
        if input is None or input is strawberry.UNSET:
            raise ValidationError("input is required")
        record = input.to_data(str(uuid.uuid4()))
        await ctx(info).services.write(catalog.create_apartment, record, actor=principal.actor)
        loaders = ctx(info).loaders
        rows = await loaders.reader.run(reads.apartments_by_ids, [record.id], loaders.today)
        if not rows:
            raise ApartmentNotFound(f"apartment {record.id} does not exist")
        return Apartment.from_row(rows[0])
