"""The benchmark's own SQL: bulk test data and the checks it makes afterwards.

Kept apart from ``booking/store`` because nothing here is part of the service:
it only seeds rows the benchmark books against (ids prefixed with the run id,
so a run against an existing database never touches other rows) and reads the
outcome back.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from booking.store import Conn


async def insert_users(conn: Conn, user_ids: Sequence[str]) -> None:
    await conn.executemany(
        """INSERT INTO users (id, first_name, last_name, email, verified, user_type)
           VALUES ($1, 'Bench', 'Tenant', $1 || '@bench.example.com', true, 'TENANT')
           ON CONFLICT (id) DO NOTHING""",
        [(user_id,) for user_id in user_ids],
    )


async def insert_building(conn: Conn, building_id: str, owner_id: str, size: int) -> None:
    await conn.execute(
        """INSERT INTO buildings (id, user_id, name, street_address, postal_code, city, country,
                                  number_of_apartments)
           VALUES ($1, $2, 'Bench Towers', '1 Load Street', '10115', 'Berlin', 'DE', $3)
           ON CONFLICT (id) DO NOTHING""",
        building_id,
        owner_id,
        size,
    )


async def insert_apartments(
    conn: Conn, building_id: str, apartment_ids: Sequence[str], rent: int, currency: str
) -> None:
    await conn.executemany(
        """INSERT INTO apartments (id, apartment_number, building_id, apartment_type,
                                   apartment_status, kitchen, number_of_rooms, monthly_rent,
                                   currency)
           VALUES ($1, $1, $2, 'SINGLE_ROOM', 'VACANT', true, 1, $3, $4)
           ON CONFLICT (id) DO NOTHING""",
        [(apartment_id, building_id, rent, currency) for apartment_id in apartment_ids],
    )


async def bookings_per_apartment(conn: Conn, apartment_ids: Sequence[str]) -> dict[str, int]:
    """How many booking rows each apartment has (every apartment listed, zero included)."""
    rows = await conn.fetch(
        """SELECT a.id, count(b.id) AS n
             FROM unnest($1::text[]) AS a(id)
             LEFT JOIN bookings b ON b.apartment_id = a.id
            GROUP BY a.id""",
        list(apartment_ids),
    )
    return {row["id"]: int(row["n"]) for row in rows}


async def double_booked_apartments(conn: Conn, id_prefix: str) -> list[str]:
    """Apartments of this run that hold more than one open hold or running lease."""
    rows = await conn.fetch(
        """SELECT apartment_id
             FROM bookings
            WHERE apartment_id LIKE $1 || '%'
              AND (booking_status = 'PENDING'
                   OR (booking_status = 'APPROVED' AND lease_ended_at IS NULL))
            GROUP BY apartment_id
           HAVING count(*) > 1""",
        id_prefix,
    )
    return [row["apartment_id"] for row in rows]


async def status_counts(conn: Conn, booking_ids: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT booking_status || coalesce(':' || cancellation_reason, '') AS s, count(*) AS n
             FROM bookings WHERE id = ANY($1::text[]) GROUP BY 1""",
        list(booking_ids),
    )
    return {row["s"]: int(row["n"]) for row in rows}


async def count_pending(conn: Conn, booking_ids: Sequence[str]) -> int:
    value: int = await conn.fetchval(
        "SELECT count(*) FROM bookings WHERE id = ANY($1::text[]) AND booking_status = 'PENDING'",
        list(booking_ids),
    )
    return value


async def count_bookings(conn: Conn, booking_ids: Sequence[str]) -> int:
    """How many of these bookings have a row: a hold was placed, whatever happened since."""
    value: int = await conn.fetchval(
        "SELECT count(*) FROM bookings WHERE id = ANY($1::text[])", list(booking_ids)
    )
    return value


async def apartment_status_counts(conn: Conn, apartment_ids: Sequence[str]) -> dict[str, int]:
    rows = await conn.fetch(
        """SELECT apartment_status AS s, count(*) AS n
             FROM apartments WHERE id = ANY($1::text[]) GROUP BY 1""",
        list(apartment_ids),
    )
    return {row["s"]: int(row["n"]) for row in rows}


async def expiry_lags(conn: Conn, booking_ids: Sequence[str]) -> list[float]:
    """Seconds from each expired booking's ``hold_expires_at`` to its release event."""
    rows = await conn.fetch(
        """SELECT extract(epoch FROM (e.at - b.hold_expires_at))::float8 AS lag
             FROM bookings b
             JOIN booking_events e ON e.booking_id = b.id AND e.to_status = 'CANCELLED'
            WHERE b.id = ANY($1::text[]) AND b.cancellation_reason = 'EXPIRED'""",
        list(booking_ids),
    )
    return [float(row["lag"]) for row in rows]


async def latest_hold_expiry(conn: Conn, booking_ids: Sequence[str]) -> datetime | None:
    value: datetime | None = await conn.fetchval(
        "SELECT max(hold_expires_at) FROM bookings WHERE id = ANY($1::text[])",
        list(booking_ids),
    )
    return value


async def server_version(conn: Conn) -> str:
    value: str = await conn.fetchval("SHOW server_version")
    return value
