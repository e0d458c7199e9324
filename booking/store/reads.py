"""Read-only SQL for the API: every query the GraphQL layer runs, and nothing that writes.

Batch functions take a list of ids and return rows in no particular order; the
API's DataLoaders put them back in key order, so one nested field costs one
query per request, not one per parent. List functions page by keyset (the
last row's sort key), which stays stable while rows are inserted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from booking.store import Conn, columns
from booking.store.bookings import BOOKING_COLUMNS, BookingRow
from booking.store.waitlist import POSITION, W_ENTRY_COLUMNS, WaitlistRow


@dataclass(frozen=True)
class UserRow:
    id: str
    first_name: str
    last_name: str
    email: str
    verified: bool
    user_type: str
    created_on: datetime
    updated_on: datetime | None


@dataclass(frozen=True)
class BuildingRow:
    id: str
    user_id: str
    name: str
    street_address: str
    postal_code: str
    city: str
    country: str
    number_of_apartments: int
    created_on: datetime
    update_on: datetime


@dataclass(frozen=True)
class ApartmentRow:
    id: str
    apartment_number: str
    building_id: str
    tenant_id: str | None
    caretaker_id: str | None
    apartment_type: str
    apartment_status: str
    kitchen: bool
    number_of_rooms: int
    monthly_rent: int
    currency: str
    created_on: datetime


@dataclass(frozen=True)
class StepFunctionRow:
    id: str
    arn: str
    created_on: datetime


_USER_COLUMNS = columns(UserRow)
_BUILDING_COLUMNS = columns(BuildingRow)
_APARTMENT_COLUMNS = columns(ApartmentRow)
_O_APARTMENT_COLUMNS = columns(ApartmentRow, table="o")
_STEP_FUNCTION_COLUMNS = columns(StepFunctionRow)


def _user(r: asyncpg.Record) -> UserRow:
    return UserRow(**dict(r.items()))


def _building(r: asyncpg.Record) -> BuildingRow:
    return BuildingRow(**dict(r.items()))


def _apartment(r: asyncpg.Record) -> ApartmentRow:
    values = dict(r.items())
    # char(3) comes back padded only if shorter; strip keeps the ISO code exact.
    values["currency"] = values["currency"].strip()
    return ApartmentRow(**values)


async def users_by_ids(conn: Conn, ids: list[str]) -> list[UserRow]:
    rows = await conn.fetch(f"SELECT {_USER_COLUMNS} FROM users WHERE id = ANY($1::text[])", ids)
    return [_user(r) for r in rows]


async def users_page(conn: Conn, *, limit: int, after_id: str | None) -> list[UserRow]:
    """Users ordered by id, strictly after ``after_id``; ``limit`` rows at most."""
    rows = await conn.fetch(
        f"""SELECT {_USER_COLUMNS} FROM users
             WHERE $1::text IS NULL OR id > $1
             ORDER BY id
             LIMIT $2""",
        after_id,
        limit,
    )
    return [_user(r) for r in rows]


async def buildings_by_ids(conn: Conn, ids: list[str]) -> list[BuildingRow]:
    rows = await conn.fetch(
        f"SELECT {_BUILDING_COLUMNS} FROM buildings WHERE id = ANY($1::text[])", ids
    )
    return [_building(r) for r in rows]


async def apartments_by_ids(conn: Conn, ids: list[str], day: date) -> list[ApartmentRow]:
    """The apartments as they stand on ``day`` (its status and tenant)."""
    rows = await conn.fetch(
        f"SELECT {_APARTMENT_COLUMNS} FROM apartments_on($2) WHERE id = ANY($1::text[])",
        ids,
        day,
    )
    return [_apartment(r) for r in rows]


async def apartments_by_building_ids(
    conn: Conn, building_ids: list[str], day: date, *, per_building: int
) -> list[ApartmentRow]:
    """Each building's apartments as they stand on ``day``, by number, ``per_building`` at
    most (a caller that allows N asks for N + 1 to know there are more)."""
    rows = await conn.fetch(
        f"""SELECT {_O_APARTMENT_COLUMNS}
              FROM unnest($1::text[]) AS b(id)
             CROSS JOIN LATERAL (
                 SELECT * FROM apartments_on($2) o WHERE o.building_id = b.id
                  ORDER BY o.apartment_number LIMIT $3) o""",
        building_ids,
        day,
        per_building,
    )
    return [_apartment(r) for r in rows]


async def available_from(conn: Conn, ids: list[str], day: date) -> dict[str, date | None]:
    """Each apartment's first free night on or after ``day`` (None: let outside)."""
    rows = await conn.fetch(
        """SELECT a.id, apartment_available_from(a.id, $2) AS free
             FROM apartments a WHERE a.id = ANY($1::text[])""",
        ids,
        day,
    )
    return {r["id"]: r["free"] for r in rows}


async def bookings_by_ids(conn: Conn, ids: list[str]) -> list[BookingRow]:
    rows = await conn.fetch(
        f"SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = ANY($1::text[])", ids
    )
    return [BookingRow.from_record(r) for r in rows]


async def booking_by_id(conn: Conn, booking_id: str) -> BookingRow | None:
    row = await conn.fetchrow(f"SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = $1", booking_id)
    return None if row is None else BookingRow.from_record(row)


async def bookings_for_apartment(
    conn: Conn,
    apartment_id: str,
    *,
    user_id: str | None,
    limit: int | None,
    after: tuple[datetime, str] | None,
) -> list[BookingRow]:
    """An apartment's bookings, oldest first; only ``user_id``'s when given.

    ``after`` is the (created_on, id) of the last row of the previous page.
    """
    rows = await conn.fetch(
        f"""SELECT {BOOKING_COLUMNS} FROM bookings
             WHERE apartment_id = $1
               AND ($2::text IS NULL OR user_id = $2)
               AND ($3::timestamptz IS NULL OR (created_on, id) > ($3, $4::text))
             ORDER BY created_on, id
             LIMIT $5""",
        apartment_id,
        user_id,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    return [BookingRow.from_record(r) for r in rows]


async def step_function_executions(conn: Conn, *, limit: int) -> list[StepFunctionRow]:
    rows = await conn.fetch(
        f"""SELECT {_STEP_FUNCTION_COLUMNS} FROM step_function_executions
            ORDER BY created_on, id LIMIT $1""",
        limit,
    )
    return [StepFunctionRow(**dict(r.items())) for r in rows]


async def step_function_execution(conn: Conn, execution_id: str) -> StepFunctionRow | None:
    row = await conn.fetchrow(
        f"SELECT {_STEP_FUNCTION_COLUMNS} FROM step_function_executions WHERE id = $1",
        execution_id,
    )
    return None if row is None else StepFunctionRow(**dict(row.items()))


async def buildings_page(conn: Conn, *, limit: int, after_id: str | None) -> list[BuildingRow]:
    rows = await conn.fetch(
        f"""SELECT {_BUILDING_COLUMNS} FROM buildings
             WHERE $1::text IS NULL OR id > $1
             ORDER BY id
             LIMIT $2""",
        after_id,
        limit,
    )
    return [_building(r) for r in rows]


async def waitlist_entry(conn: Conn, entry_id: str) -> WaitlistRow | None:
    row = await conn.fetchrow(
        f"SELECT {W_ENTRY_COLUMNS}, {POSITION} FROM waitlist_entries w WHERE w.id = $1", entry_id
    )
    return None if row is None else WaitlistRow.from_record(row)


async def waitlist_for_apartment(
    conn: Conn, apartment_id: str, *, user_id: str | None, limit: int
) -> list[WaitlistRow]:
    """An apartment's waiting list, in joining order (every status); ``user_id``'s only
    when given."""
    rows = await conn.fetch(
        f"""SELECT {W_ENTRY_COLUMNS}, {POSITION} FROM waitlist_entries w
             WHERE w.apartment_id = $1 AND ($2::text IS NULL OR w.user_id = $2)
             ORDER BY w.seq
             LIMIT $3""",
        apartment_id,
        user_id,
        limit,
    )
    return [WaitlistRow.from_record(r) for r in rows]


async def waitlist_entry_for_booking(conn: Conn, booking_id: str) -> WaitlistRow | None:
    """The entry whose offer this booking is (or was)."""
    row = await conn.fetchrow(
        f"""SELECT {W_ENTRY_COLUMNS}, {POSITION} FROM waitlist_entries w
             WHERE w.offered_booking_id = $1""",
        booking_id,
    )
    return None if row is None else WaitlistRow.from_record(row)
