"""The benchmark's own SQL: bulk test data and the checks it makes afterwards.

Kept apart from ``booking/store`` because nothing here is part of the service:
it only seeds rows the benchmark books against (ids prefixed with the run id,
so a run against an existing database never touches other rows) and reads the
outcome back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime

import asyncpg

from booking import rent as rent_rules
from booking.store import Conn
from booking.store.rent import invoice_id_for


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
    """Apartments of this run with two live stays (open holds, running leases) that share a
    night: a double booking, whatever the constraint says."""
    rows = await conn.fetch(
        """SELECT DISTINCT a.apartment_id
             FROM bookings a JOIN bookings b
               ON b.apartment_id = a.apartment_id AND b.id > a.id AND b.stay && a.stay
            WHERE a.apartment_id LIKE $1 || '%'
              AND (a.booking_status = 'PENDING'
                   OR (a.booking_status = 'APPROVED' AND a.lease_ended_at IS NULL))
              AND (b.booking_status = 'PENDING'
                   OR (b.booking_status = 'APPROVED' AND b.lease_ended_at IS NULL))""",
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


async def apartment_status_counts(
    conn: Conn, apartment_ids: Sequence[str], day: date
) -> dict[str, int]:
    """The apartments' statuses for ``day`` (the first night of the bench's stays)."""
    rows = await conn.fetch(
        """SELECT apartment_status AS s, count(*) AS n
             FROM apartments_on($2) WHERE id = ANY($1::text[]) GROUP BY 1""",
        list(apartment_ids),
        day,
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


async def seed_calendar(
    conn: Conn,
    building_id: str,
    user_id: str,
    prefix: str,
    apartments: int,
    stays_per_apartment: int,
    today: date,
) -> int:
    """``apartments`` apartments with ``stays_per_apartment`` stays each, in one statement per
    table: 10-night stays every 14 days from about two years back, each apartment's pattern
    shifted; past stays are ended leases, the rest paid or (one in five) held. Every fourth
    apartment has no stay in the next 120 days, so a search for a month soon finds some.
    Returns the number of stays written."""
    await conn.execute(
        """INSERT INTO apartments (id, apartment_number, building_id, apartment_type,
                                   apartment_status, kitchen, number_of_rooms, monthly_rent,
                                   currency)
           SELECT $1 || i, i::text, $2,
                  (ARRAY['SINGLE_ROOM', 'DOUBLE_ROOM', 'VILLA'])[1 + i % 3],
                  'VACANT', true, 1 + i % 4, 50000 + (i % 10) * 10000, 'EUR'
             FROM generate_series(0, $3 - 1) AS i""",
        prefix,
        building_id,
        apartments,
    )
    status: str = await conn.execute(
        """INSERT INTO bookings (id, workflow_id, user_id, apartment_id, start_date, end_date,
                                 booking_status, amount_due, currency, hold_expires_at,
                                 paid_at, lease_ended_at)
           SELECT $1 || i || '-' || k, 'bench-calendar-' || $1 || i || '-' || k, $2, $1 || i,
                  s.first, s.first + 10,
                  CASE WHEN s.first >= $5 AND k % 5 = 0 THEN 'PENDING' ELSE 'APPROVED' END,
                  50000, 'EUR', now() + interval '1 day',
                  CASE WHEN s.first >= $5 AND k % 5 = 0 THEN NULL ELSE now() END,
                  CASE WHEN s.first + 10 <= $5 THEN now() END
             FROM generate_series(0, $3 - 1) AS i,
                  generate_series(0, $4 - 1) AS k,
                  LATERAL (SELECT $5::date - 700 + k * 14 + (i * 3) % 14 AS first) s
            WHERE NOT (i % 4 = 0 AND s.first + 10 > $5 AND s.first < $5 + 120)""",
        prefix,
        user_id,
        apartments,
        stays_per_apartment,
        today,
    )
    await conn.execute("ANALYZE bookings")
    await conn.execute("ANALYZE apartments")
    return int(status.split()[-1])


async def plans_of(conn: Conn, call: Callable[[Conn], Awaitable[object]]) -> list[str]:
    """The plans of the statements ``call`` runs on ``conn``, as Postgres ran them
    (``auto_explain`` with ANALYZE and BUFFERS, sent to this session as log messages): the
    service's own SQL, not a copy of it."""
    plans: list[str] = []

    def heard(_conn: object, message: asyncpg.PostgresLogMessage) -> None:
        if "Query Text:" in str(message.message):
            plans.append(str(message.message))

    try:
        await conn.execute("LOAD 'auto_explain'")
    except asyncpg.PostgresError as err:
        return [f"(no plan: auto_explain cannot be loaded: {err})"]
    await conn.execute(
        """SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;
           SET auto_explain.log_buffers = on; SET auto_explain.log_nested_statements = on;
           SET client_min_messages = log"""
    )
    conn.add_log_listener(heard)
    try:
        await call(conn)
    finally:
        conn.remove_log_listener(heard)
        await conn.execute(
            """RESET client_min_messages; RESET auto_explain.log_min_duration;
               RESET auto_explain.log_analyze; RESET auto_explain.log_buffers;
               RESET auto_explain.log_nested_statements"""
        )
    return plans


async def all_bookings(conn: Conn) -> int:
    """Every booking row in the database (the calendar scenario's size)."""
    count: int = await conn.fetchval("SELECT count(*) FROM bookings")
    return count


async def seed_leases(
    conn: Conn,
    building_id: str,
    user_id: str,
    prefix: str,
    count: int,
    start: date,
    end: date,
    rent: int,
) -> list[str]:
    """``count`` paid leases ``[start, end)`` of apartments ``prefix || i``, with every
    period's invoice (the first PAID, the others SCHEDULED); the booking ids, by ``i``."""
    await conn.execute(
        """INSERT INTO apartments (id, apartment_number, building_id, apartment_type,
                                   apartment_status, kitchen, number_of_rooms, monthly_rent,
                                   currency)
           SELECT $1 || i, i::text, $2, 'SINGLE_ROOM', 'VACANT', true, 1, $4, 'EUR'
             FROM generate_series(0, $3 - 1) AS i""",
        prefix,
        building_id,
        count,
        rent,
    )
    await conn.execute(
        """INSERT INTO bookings (id, workflow_id, user_id, apartment_id, start_date, end_date,
                                 booking_status, amount_due, currency, paid_at, monthly_rent)
           SELECT $1 || i || '-b', 'booking-' || $1 || i || '-b', $2, $1 || i, $4, $5,
                  'APPROVED', $6, 'EUR', now(), $6
             FROM generate_series(0, $3 - 1) AS i""",
        prefix,
        user_id,
        count,
        start,
        end,
        rent,
    )
    booking_ids = [f"{prefix}{i}-b" for i in range(count)]
    periods = rent_rules.rent_periods(start, end, rent, rent)
    records = [
        (
            invoice_id_for(booking_id, p.seq),
            booking_id,
            p.seq,
            p.period_start,
            p.period_end,
            p.due_date,
            p.rent,
            "EUR",
            "PAID" if p.seq == 0 else "SCHEDULED",
            datetime.now(UTC) if p.seq == 0 else None,
            f"bench-{booking_id}" if p.seq == 0 else None,
        )
        for booking_id in booking_ids
        for p in periods
    ]
    await conn.copy_records_to_table(
        "rent_invoices",
        records=records,
        columns=[
            "id",
            "booking_id",
            "seq",
            "period_start",
            "period_end",
            "due_date",
            "rent",
            "currency",
            "status",
            "paid_at",
            "payment_reference",
        ],
    )
    return booking_ids


async def count_issued(conn: Conn, prefix: str) -> int:
    """The seeded leases' second invoices ISSUED so far."""
    count: int = await conn.fetchval(
        """SELECT count(*) FROM rent_invoices
            WHERE booking_id LIKE $1 || '%' AND seq = 1 AND status = 'ISSUED'""",
        prefix,
    )
    return count


async def issue_events(conn: Conn, prefix: str) -> tuple[int, int]:
    """(RENT_ISSUED events of these leases, distinct invoices they name)."""
    row = await conn.fetchrow(
        """SELECT count(*) AS events, count(DISTINCT details->>'invoiceId') AS invoices
             FROM booking_events
            WHERE booking_id LIKE $1 || '%' AND reason = 'RENT_ISSUED'""",
        prefix,
    )
    assert row is not None
    return int(row["events"]), int(row["invoices"])
