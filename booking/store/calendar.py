"""SQL for the calendar: stays by range (``bookings.stay``, a ``daterange``), and apartments
free for a range.

A live stay is an open hold (PENDING) or a paid stay (APPROVED) whose lease has not ended:
exactly the rows the exclusion constraint ``bookings_no_overlapping_stays`` covers, and the
queries below repeat its predicate word for word so that the planner uses its index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import asyncpg

from booking.calendar import Stay
from booking.store import Conn


@dataclass(frozen=True)
class ApartmentFilter:
    building_id: str | None = None
    apartment_type: str | None = None
    min_rooms: int | None = None
    max_monthly_rent: int | None = None


def _stay(record: asyncpg.Record) -> Stay:
    return Stay(
        record["id"],
        record["user_id"],
        record["start_date"],
        record["end_date"],
        record["booking_status"],
        record["lease_ended_at"],
    )


async def live_overlap(conn: Conn, apartment_id: str, start: date, end: date) -> Stay | None:
    """A live stay of the apartment that shares a night with ``[start, end)``, if any."""
    record = await conn.fetchrow(
        """SELECT id, user_id, start_date, end_date, booking_status, lease_ended_at
             FROM bookings
            WHERE apartment_id = $1 AND stay && daterange($2, $3)
              AND (booking_status = 'PENDING'
                   OR (booking_status = 'APPROVED' AND lease_ended_at IS NULL))
            ORDER BY start_date
            LIMIT 1""",
        apartment_id,
        start,
        end,
    )
    return None if record is None else _stay(record)


async def user_live_overlap(
    conn: Conn, apartment_id: str, user_id: str, start: date, end: date
) -> Stay | None:
    """The user's own live stay of the apartment that shares a night with the range."""
    record = await conn.fetchrow(
        """SELECT id, user_id, start_date, end_date, booking_status, lease_ended_at
             FROM bookings
            WHERE apartment_id = $1 AND stay && daterange($3, $4) AND user_id = $2
              AND (booking_status = 'PENDING'
                   OR (booking_status = 'APPROVED' AND lease_ended_at IS NULL))
            LIMIT 1""",
        apartment_id,
        user_id,
        start,
        end,
    )
    return None if record is None else _stay(record)


async def stays_between(conn: Conn, apartment_id: str, start: date, end: date) -> list[Stay]:
    """The apartment's held and paid stays (ended leases too) that meet ``[start, end)``."""
    rows = await conn.fetch(
        """SELECT id, user_id, start_date, end_date, booking_status, lease_ended_at
             FROM bookings
            WHERE apartment_id = $1 AND stay && daterange($2, $3)
              AND booking_status IN ('PENDING', 'APPROVED')
            ORDER BY start_date""",
        apartment_id,
        start,
        end,
    )
    return [_stay(r) for r in rows]


async def free_apartment_ids(
    conn: Conn,
    start: date,
    end: date,
    where: ApartmentFilter,
    *,
    limit: int,
    after_id: str | None,
) -> list[str]:
    """Apartments (not let outside) with no live stay sharing a night with ``[start, end)``,
    by id, strictly after ``after_id``; ``limit`` at most.

    The busy apartments come first, as one set: every live stay overlapping the range, read
    from ``bookings_live_stays`` alone, made distinct, then hashed (NOT IN over a hashed
    subplan, whatever the parameters: a generic plan must not probe the stays apartment by
    apartment). BENCHMARKS.md shows the plan at 10,000 apartments and 1,000,000 stays.
    """
    rows = await conn.fetch(
        """SELECT a.id FROM apartments a
            WHERE a.apartment_status = 'VACANT'
              AND ($3::text IS NULL OR a.id > $3)
              AND ($5::text IS NULL OR a.building_id = $5)
              AND ($6::text IS NULL OR a.apartment_type = $6)
              AND ($7::int IS NULL OR a.number_of_rooms >= $7)
              AND ($8::bigint IS NULL OR a.monthly_rent <= $8)
              AND a.id NOT IN (
                  SELECT DISTINCT b.apartment_id FROM bookings b
                   WHERE b.stay && daterange($1, $2)
                     AND (b.booking_status = 'PENDING'
                          OR (b.booking_status = 'APPROVED' AND b.lease_ended_at IS NULL)))
            ORDER BY a.id
            LIMIT $4""",
        start,
        end,
        after_id,
        limit,
        where.building_id,
        where.apartment_type,
        where.min_rooms,
        where.max_monthly_rent,
    )
    return [r["id"] for r in rows]


@dataclass(frozen=True)
class RangeCheck:
    """An apartment against a range: let outside this service, or a live stay on its nights."""

    let_outside: bool
    clash: Stay | None


async def check_range(conn: Conn, apartment_id: str, start: date, end: date) -> RangeCheck | None:
    """One read for a reserve: None when the apartment does not exist."""
    record = await conn.fetchrow(
        """SELECT a.apartment_status = 'OCCUPIED' AS let_outside,
                  b.id, b.user_id, b.start_date, b.end_date, b.booking_status, b.lease_ended_at
             FROM apartments a
             LEFT JOIN LATERAL (
                 SELECT id, user_id, start_date, end_date, booking_status, lease_ended_at
                   FROM bookings
                  WHERE apartment_id = a.id AND stay && daterange($2, $3)
                    AND (booking_status = 'PENDING'
                         OR (booking_status = 'APPROVED' AND lease_ended_at IS NULL))
                  ORDER BY start_date
                  LIMIT 1) b ON true
            WHERE a.id = $1""",
        apartment_id,
        start,
        end,
    )
    if record is None:
        return None
    clash = None if record["id"] is None else _stay(record)
    return RangeCheck(bool(record["let_outside"]), clash)


async def calendar_of(
    conn: Conn, apartment_id: str, start: date, end: date
) -> tuple[bool, list[Stay]] | None:
    """(let outside, the stays meeting ``[start, end)``); None when there is no apartment."""
    let_outside: bool | None = await conn.fetchval(
        "SELECT apartment_status = 'OCCUPIED' FROM apartments WHERE id = $1", apartment_id
    )
    if let_outside is None:
        return None
    return let_outside, await stays_between(conn, apartment_id, start, end)
