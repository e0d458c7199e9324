"""SQL for users, buildings and apartments (the write side; reads are in ``reads``).

Each function takes a connection so that the caller (``booking.catalog``) chooses the
transaction. Creates are idempotent on the record's id: a retried request finds its row and
reports ``changed=False`` instead of failing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from booking.store import Conn


@dataclass(frozen=True)
class UserData:
    id: str
    first_name: str
    last_name: str
    email: str
    verified: bool
    user_type: str  # ADMIN | TENANT | CARETAKER


@dataclass(frozen=True)
class UserUpdate:
    id: str
    first_name: str
    last_name: str
    verified: bool
    user_type: str


@dataclass(frozen=True)
class BuildingData:
    id: str
    user_id: str
    name: str
    street_address: str
    postal_code: str
    city: str
    country: str
    number_of_apartments: int


@dataclass(frozen=True)
class ApartmentData:
    id: str
    apartment_number: str
    building_id: str
    number_of_rooms: int
    kitchen: bool
    apartment_type: str  # SINGLE_ROOM | DOUBLE_ROOM | VILLA
    apartment_status: str  # VACANT | OCCUPIED (RESERVED only through a booking)
    monthly_rent: int  # minor units
    currency: str  # ISO 4217
    caretaker_id: str | None = None


async def insert_user(conn: Conn, user: UserData) -> tuple[bool, datetime | None]:
    """(True, created_on) for a new row; (False, created_on) when a row with this id holds
    exactly this record (a retry); (False, None) when it holds another."""
    row = await conn.fetchrow(
        """INSERT INTO users (id, first_name, last_name, email, verified, user_type)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (id) DO NOTHING
           RETURNING created_on""",
        user.id,
        user.first_name,
        user.last_name,
        user.email,
        user.verified,
        user.user_type,
    )
    if row is not None:
        return True, row["created_on"]
    existing = await conn.fetchval(
        """SELECT created_on FROM users
            WHERE id = $1 AND (first_name, last_name, email, verified, user_type)
                              = ($2, $3, $4, $5, $6)""",
        user.id,
        user.first_name,
        user.last_name,
        user.email,
        user.verified,
        user.user_type,
    )
    return False, existing


async def update_user(conn: Conn, update: UserUpdate) -> datetime | None:
    """Return the new ``updated_on``, or None when there is no such user."""
    value: datetime | None = await conn.fetchval(
        """UPDATE users
              SET first_name = $2, last_name = $3, verified = $4, user_type = $5,
                  updated_on = now()
            WHERE id = $1
        RETURNING updated_on""",
        update.id,
        update.first_name,
        update.last_name,
        update.verified,
        update.user_type,
    )
    return value


async def user_has_history(conn: Conn, user_id: str) -> bool:
    """Whether deleting the user would orphan bookings, buildings or tenancies."""
    found: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM bookings WHERE user_id = $1)
               OR EXISTS (SELECT 1 FROM buildings WHERE user_id = $1)
               OR EXISTS (SELECT 1 FROM apartments WHERE tenant_id = $1 OR caretaker_id = $1)""",
        user_id,
    )
    return found


async def delete_user(conn: Conn, user_id: str) -> datetime | None:
    """The time of the delete, or None when there was no such user."""
    deleted: datetime | None = await conn.fetchval(
        "DELETE FROM users WHERE id = $1 RETURNING now()", user_id
    )
    return deleted


async def insert_building(conn: Conn, building: BuildingData) -> tuple[bool, datetime]:
    row = await conn.fetchrow(
        """INSERT INTO buildings (id, user_id, name, street_address, postal_code, city, country,
                                  number_of_apartments)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
           ON CONFLICT (id) DO NOTHING
           RETURNING created_on""",
        building.id,
        building.user_id,
        building.name,
        building.street_address,
        building.postal_code,
        building.city,
        building.country,
        building.number_of_apartments,
    )
    if row is not None:
        return True, row["created_on"]
    existing = await conn.fetchval("SELECT created_on FROM buildings WHERE id = $1", building.id)
    return False, existing


async def insert_apartment(conn: Conn, apartment: ApartmentData) -> tuple[bool, datetime]:
    row = await conn.fetchrow(
        """INSERT INTO apartments (id, apartment_number, building_id, caretaker_id,
                                   apartment_type, apartment_status, kitchen, number_of_rooms,
                                   monthly_rent, currency)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
           ON CONFLICT (id) DO NOTHING
           RETURNING created_on""",
        apartment.id,
        apartment.apartment_number,
        apartment.building_id,
        apartment.caretaker_id,
        apartment.apartment_type,
        apartment.apartment_status,
        apartment.kitchen,
        apartment.number_of_rooms,
        apartment.monthly_rent,
        apartment.currency,
    )
    if row is not None:
        return True, row["created_on"]
    existing = await conn.fetchval("SELECT created_on FROM apartments WHERE id = $1", apartment.id)
    return False, existing


async def append_event(
    conn: Conn,
    operation: str,
    target_id: str,
    actor: str,
    details: dict[str, Any] | None = None,
) -> None:
    """One row of the catalog's audit trail (``catalog_events``), in the caller's transaction."""
    await conn.execute(
        """INSERT INTO catalog_events (operation, target_id, actor, details)
           VALUES ($1, $2, $3, $4::jsonb)""",
        operation,
        target_id,
        actor,
        json.dumps(details or {}),
    )
