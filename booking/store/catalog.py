"""SQL for users, buildings and apartments (the write side; reads are in ``reads``).

Each function takes a connection so that the caller (``booking.catalog``) chooses the
transaction. Creates are idempotent on the record's id: a retried request finds its row and
reports ``changed=False`` instead of failing. A create writes its dataclass's fields, named
once there (``booking.store.columns``): a new column is a new field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from booking.store import Conn, columns, placeholders, values


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


# What a create writes: each write dataclass's fields, in order (``booking.store.columns``).
_USER_DATA = columns(UserData)
_USER_PARAMETERS = placeholders(UserData)
_BUILDING_DATA = columns(BuildingData)
_BUILDING_PARAMETERS = placeholders(BuildingData)
_APARTMENT_DATA = columns(ApartmentData)
_APARTMENT_PARAMETERS = placeholders(ApartmentData)


async def insert_user(conn: Conn, user: UserData) -> tuple[bool, datetime | None]:
    """(True, created_on) for a new row; (False, created_on) when a row with this id holds
    exactly this record (a retry); (False, None) when it holds another."""
    row = await conn.fetchrow(
        f"""INSERT INTO users ({_USER_DATA}) VALUES ({_USER_PARAMETERS})
           ON CONFLICT (id) DO NOTHING
           RETURNING created_on""",
        *values(user),
    )
    if row is not None:
        return True, row["created_on"]
    existing: datetime | None = await conn.fetchval(
        f"SELECT created_on FROM users WHERE ({_USER_DATA}) = ({_USER_PARAMETERS})",
        *values(user),
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
        f"""INSERT INTO buildings ({_BUILDING_DATA}) VALUES ({_BUILDING_PARAMETERS})
           ON CONFLICT (id) DO NOTHING
           RETURNING created_on""",
        *values(building),
    )
    if row is not None:
        return True, row["created_on"]
    existing = await conn.fetchval("SELECT created_on FROM buildings WHERE id = $1", building.id)
    return False, existing


async def insert_apartment(conn: Conn, apartment: ApartmentData) -> tuple[bool, datetime]:
    row = await conn.fetchrow(
        f"""INSERT INTO apartments ({_APARTMENT_DATA}) VALUES ({_APARTMENT_PARAMETERS})
           ON CONFLICT (id) DO NOTHING
           RETURNING created_on""",
        *values(apartment),
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
