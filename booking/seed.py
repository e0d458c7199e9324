"""Demo data for `booking seed` and `booking dev`: apartment 1234567 and friends.

Every row is written by ``booking.catalog`` (the same checked transactions the API uses).
The creates are idempotent on the record's id: seeding twice changes nothing, and a re-seed
never resets an apartment that a booking has since reserved or let.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from booking import catalog
from booking.catalog import CatalogResult
from booking.db import create_pool
from booking.demo import (
    DEMO_ADMIN_ID,
    DEMO_APARTMENT_ID,
    DEMO_BUILDING_ID,
    DEMO_CARETAKER_ID,
    DEMO_TENANT_ID,
)
from booking.store.catalog import ApartmentData, BuildingData, UserData

ACTOR = "seed"

USERS = (
    UserData(DEMO_ADMIN_ID, "Ada", "Admin", "admin@example.com", True, "ADMIN"),
    UserData(DEMO_TENANT_ID, "Tess", "Tenant", "tenant@example.com", True, "TENANT"),
    UserData(DEMO_CARETAKER_ID, "Carl", "Caretaker", "caretaker@example.com", True, "CARETAKER"),
    UserData("demo-tenant-2", "Theo", "Tenant", "tenant2@example.com", True, "TENANT"),
)

BUILDINGS = (
    BuildingData(
        id=DEMO_BUILDING_ID,
        user_id=DEMO_ADMIN_ID,
        name="Demo Court",
        street_address="1 Example Street",
        postal_code="10115",
        city="Berlin",
        country="DE",
        number_of_apartments=4,
    ),
)

APARTMENTS = (
    ApartmentData(
        id=DEMO_APARTMENT_ID,
        apartment_number="12",
        building_id=DEMO_BUILDING_ID,
        number_of_rooms=2,
        kitchen=True,
        apartment_type="DOUBLE_ROOM",
        apartment_status="VACANT",
        monthly_rent=125_000,
        currency="EUR",
        caretaker_id=DEMO_CARETAKER_ID,
    ),
    ApartmentData(
        id="2345678",
        apartment_number="14",
        building_id=DEMO_BUILDING_ID,
        number_of_rooms=1,
        kitchen=True,
        apartment_type="SINGLE_ROOM",
        apartment_status="VACANT",
        monthly_rent=85_000,
        currency="EUR",
        caretaker_id=DEMO_CARETAKER_ID,
    ),
    ApartmentData(
        id="3456789",
        apartment_number="1",
        building_id=DEMO_BUILDING_ID,
        number_of_rooms=6,
        kitchen=True,
        apartment_type="VILLA",
        apartment_status="VACANT",
        monthly_rent=310_000,
        currency="EUR",
        caretaker_id=DEMO_CARETAKER_ID,
    ),
    # Let outside this system: shows that only a VACANT apartment can be held.
    ApartmentData(
        id="4567890",
        apartment_number="21",
        building_id=DEMO_BUILDING_ID,
        number_of_rooms=1,
        kitchen=False,
        apartment_type="SINGLE_ROOM",
        apartment_status="OCCUPIED",
        monthly_rent=72_000,
        currency="EUR",
    ),
)


@dataclass
class SeedReport:
    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)

    def add(self, kind: str, result: CatalogResult) -> None:
        (self.created if result.changed else self.existing).append(f"{kind} {result.id}")

    def summary(self) -> str:
        return f"{len(self.created)} created, {len(self.existing)} already there"


async def seed(pool: asyncpg.Pool) -> SeedReport:
    """Write the demo users, building and apartments that are missing."""
    report = SeedReport()
    async with pool.acquire() as conn:
        for user in USERS:
            report.add("user", await catalog.create_user(conn, user, actor=ACTOR))
        for building in BUILDINGS:
            report.add("building", await catalog.create_building(conn, building, actor=ACTOR))
        for apartment in APARTMENTS:
            report.add("apartment", await catalog.create_apartment(conn, apartment, actor=ACTOR))
    return report


async def seed_database(dsn: str) -> SeedReport:
    pool = await create_pool(dsn, min_size=1, max_size=2)
    try:
        return await seed(pool)
    finally:
        await pool.close()
