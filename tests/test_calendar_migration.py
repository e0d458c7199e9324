"""Migrating a database in place to the calendar (0005): every booking becomes its range, the
apartment switch keeps only what no booking says, and what the stays say is read for a day."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest

from booking.db import load_migrations, migrate


async def _database(server_url: str) -> str:
    name = f"calendar_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return server_url.rsplit("/", 1)[0] + f"/{name}"


async def _migrate_until(conn: asyncpg.Connection, last: int) -> None:
    """The migrations up to ``last`` only, as a server running the code before would have."""
    await conn.execute(
        """CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL,
                                           applied_at timestamptz NOT NULL DEFAULT now())"""
    )
    for migration in load_migrations():
        if migration.version > last:
            break
        await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            migration.version,
            migration.name,
        )


async def _booking(
    conn: asyncpg.Connection, apartment: str, user: str, start: date, end: date, status: str
) -> str:
    booking_id = str(uuid.uuid4())
    paid = datetime.now(UTC) if status == "APPROVED" else None
    await conn.execute(
        """INSERT INTO bookings (id, workflow_id, user_id, apartment_id, start_date, end_date,
                                 booking_status, amount_due, currency, paid_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 'EUR', $8)""",
        booking_id,
        f"booking-{booking_id}",
        user,
        apartment,
        start,
        end,
        status,
        paid,
    )
    return booking_id


async def test_existing_rows_become_stays_and_statuses_are_read_for_a_day(
    migrated_database_url: str,
) -> None:
    url = await _database(migrated_database_url)
    today = datetime.now(UTC).date()
    conn = await asyncpg.connect(url)
    try:
        await _migrate_until(conn, 4)
        await conn.execute(
            """INSERT INTO users (id, first_name, last_name, email, user_type)
               VALUES ('t1', 'T', 'One', 't1@example.com', 'TENANT'),
                      ('t2', 'T', 'Two', 't2@example.com', 'TENANT'),
                      ('owner', 'O', 'Wner', 'o@example.com', 'ADMIN')"""
        )
        await conn.execute(
            """INSERT INTO buildings (id, user_id, name, street_address, postal_code, city,
                                      country, number_of_apartments)
               VALUES ('b', 'owner', 'B', 's', 'p', 'c', 'DE', 4)"""
        )
        for apartment, status, tenant in (
            ("held", "RESERVED", None),
            ("let", "OCCUPIED", "t1"),
            ("outside", "OCCUPIED", "t2"),
            ("free", "VACANT", None),
        ):
            await conn.execute(
                """INSERT INTO apartments (id, apartment_number, building_id, tenant_id,
                                           apartment_type, apartment_status, kitchen,
                                           number_of_rooms, monthly_rent, currency)
                   VALUES ($1, $1, 'b', $3, 'VILLA', $2, true, 3, 1000, 'EUR')""",
                apartment,
                status,
                tenant,
            )
        # Under the old switch: a hold booked ahead, a lease running now.
        hold_start = today + timedelta(days=40)
        await _booking(conn, "held", "t2", hold_start, hold_start + timedelta(days=30), "PENDING")
        lease = await _booking(
            conn, "let", "t1", today - timedelta(days=10), today + timedelta(days=100), "APPROVED"
        )

        # The calendar's migration, and any after it.
        assert next(m.version for m in await migrate(url)) == 5

        async def on(day: date) -> dict[str, tuple[str, str | None, date | None]]:
            rows = await conn.fetch(
                "SELECT id, apartment_status, tenant_id, apartment_available_from(id, $1) AS "
                "available_from FROM apartments_on($1)",
                day,
            )
            return {
                r["id"]: (r["apartment_status"], r["tenant_id"], r["available_from"]) for r in rows
            }

        now = await on(today)
        # The hold is for later: VACANT today, as the calendar says (the switch said RESERVED).
        assert now["held"] == ("VACANT", None, today)
        assert now["let"] == ("OCCUPIED", "t1", today + timedelta(days=100))
        # Let outside this service (no booking says so): OCCUPIED, never bookable.
        assert now["outside"] == ("OCCUPIED", "t2", None)
        assert now["free"] == ("VACANT", None, today)
        assert (await on(hold_start))["held"] == ("RESERVED", None, hold_start + timedelta(30))
        # The switch no longer carries a booking's state.
        switch = {
            r["id"]: r["apartment_status"]
            for r in await conn.fetch("SELECT id, apartment_status FROM apartments")
        }
        assert switch == {
            "held": "VACANT",
            "let": "VACANT",
            "outside": "OCCUPIED",
            "free": "VACANT",
        }
        stay = await conn.fetchval("SELECT stay FROM bookings WHERE id = $1", lease)
        assert (stay.lower, stay.upper) == (today - timedelta(days=10), today + timedelta(100))
        # From now on the constraint guards every night of the existing stays.
        with pytest.raises(asyncpg.ExclusionViolationError):
            await _booking(
                conn, "let", "t2", today + timedelta(99), today + timedelta(120), "PENDING"
            )
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "UPDATE apartments SET apartment_status = 'RESERVED' WHERE id = 'free'"
            )
    finally:
        await conn.close()
