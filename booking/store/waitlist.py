"""SQL for the waiting lists: entries, their order, their offers.

Written by workflow activities only (``activities.waitlist``, and the hand-over of
``booking.offers`` that releases and lease ends run); the API reads through
``booking.store.reads``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from booking.contract import WaitlistJoin
from booking.store import Conn, columns

# A WAITING entry's place in its apartment's queue, counted from 1.
POSITION = """CASE WHEN w.status = 'WAITING' THEN (
        SELECT count(*) FROM waitlist_entries o
         WHERE o.apartment_id = w.apartment_id AND o.status = 'WAITING' AND o.seq <= w.seq)
    END AS position"""


@dataclass(frozen=True)
class WaitlistRow:
    id: str
    workflow_id: str
    apartment_id: str
    user_id: str
    start_date: date
    end_date: date
    status: str
    offered_booking_id: str | None
    created_on: datetime
    updated_on: datetime
    position: int | None = None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> WaitlistRow:
        return cls(**dict(record))


# ``position`` is computed (POSITION); the qualified list is for queries naming the table ``w``.
ENTRY_COLUMNS = columns(WaitlistRow, exclude=("position",))
W_ENTRY_COLUMNS = columns(WaitlistRow, table="w", exclude=("position",))


async def insert_entry(conn: Conn, join: WaitlistJoin, *, workflow_id: str) -> None:
    await conn.execute(
        """INSERT INTO waitlist_entries (id, workflow_id, apartment_id, user_id, start_date,
                                         end_date, status)
           VALUES ($1, $2, $3, $4, $5, $6, 'WAITING')""",
        join.entry_id,
        workflow_id,
        join.apartment_id,
        join.user_id,
        join.start_date,
        join.end_date,
    )


async def get_entry(conn: Conn, entry_id: str, *, for_update: bool = False) -> WaitlistRow | None:
    lock = " FOR UPDATE" if for_update else ""
    record = await conn.fetchrow(
        f"SELECT {ENTRY_COLUMNS} FROM waitlist_entries WHERE id = $1{lock}", entry_id
    )
    return None if record is None else WaitlistRow.from_record(record)


async def live_entry(conn: Conn, apartment_id: str, user_id: str) -> str | None:
    """The tenant's WAITING or OFFERED entry for this apartment, if any."""
    entry_id: str | None = await conn.fetchval(
        """SELECT id FROM waitlist_entries
            WHERE apartment_id = $1 AND user_id = $2 AND status IN ('WAITING', 'OFFERED')""",
        apartment_id,
        user_id,
    )
    return entry_id


async def waiting_for(conn: Conn, apartment_id: str, start: date, end: date) -> list[WaitlistRow]:
    """The WAITING entries that ask for any of the nights ``[start, end)``, in joining order,
    locked (the caller holds the apartment's row lock)."""
    rows = await conn.fetch(
        f"""SELECT {ENTRY_COLUMNS} FROM waitlist_entries
             WHERE apartment_id = $1 AND status = 'WAITING' AND stay && daterange($2, $3)
             ORDER BY seq FOR UPDATE""",
        apartment_id,
        start,
        end,
    )
    return [WaitlistRow.from_record(r) for r in rows]


async def entry_offered(conn: Conn, booking_id: str) -> WaitlistRow | None:
    """The OFFERED entry whose offer is this booking, locked."""
    record = await conn.fetchrow(
        f"""SELECT {ENTRY_COLUMNS} FROM waitlist_entries
             WHERE offered_booking_id = $1 AND status = 'OFFERED' FOR UPDATE""",
        booking_id,
    )
    return None if record is None else WaitlistRow.from_record(record)


async def set_status(
    conn: Conn,
    entry_id: str,
    from_status: str,
    to_status: str,
    *,
    offered_booking_id: str | None = None,
) -> bool:
    result = await conn.execute(
        """UPDATE waitlist_entries
              SET status = $3, offered_booking_id = coalesce($4, offered_booking_id),
                  updated_on = now()
            WHERE id = $1 AND status = $2""",
        entry_id,
        from_status,
        to_status,
        offered_booking_id,
    )
    return result == "UPDATE 1"
