"""8. The calendar at size: ``searchApartments`` and ``getApartmentCalendar`` through GraphQL
with 10,000 apartments and 1,000,000 stays in the database, a reserve among them, and the
plans Postgres runs them with."""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

from bench import store
from bench.scenarios.harness import LONG_HOLD, Bench, BenchFailure, CpuMeter, error_counts, ms
from bench.stats import summarize
from booking.store import Conn
from booking.store import calendar as calendar_store

SEARCH = """
query Search($input: SearchApartmentsInput!) {
  searchApartments(input: $input) { items { id apartmentStatus availableFrom } nextToken }
}
"""
CALENDAR = """
query Calendar($apartmentId: ID!, $from: AWSDate!, $to: AWSDate!) {
  getApartmentCalendar(apartmentId: $apartmentId, from: $from, to: $to) { startDate endDate state }
}
"""
# A month's search, and a year's calendar.
SEARCH_NIGHTS = 30
CALENDAR_NIGHTS = 365


async def calendar(b: Bench) -> dict[str, Any]:
    sizes = b.sizes
    apartments, per_apartment = sizes.calendar_apartments, sizes.calendar_stays
    prefix, building = f"{b.prefix}cal-", f"{b.prefix}cal-building"
    today = date.today()
    progress = b.progress
    progress.say(f"  seeding {apartments} apartments with {per_apartment} stays each")
    started = time.monotonic()
    async with b.pool.acquire() as conn, conn.transaction():
        await store.insert_building(conn, building, b.users[0], apartments)
        stays = await store.seed_calendar(
            conn, building, b.users[0], prefix, apartments, per_apartment, today
        )
    seeded_seconds = time.monotonic() - started
    async with b.pool.acquire() as conn:
        total_stays = await store.all_bookings(conn)

    # Reproducible per run, not a secret.
    rng = random.Random(b.run_id)  # noqa: S311
    queries = sizes.calendar_queries
    cpu = CpuMeter(b.stack.pids)

    # Month-long searches starting anywhere in the next year: some soon (where every fourth
    # apartment is free), most later (where every apartment has stays: the whole building is
    # looked at and nothing found, the slow case).
    search_ms: list[float] = []
    search_replies = []
    found: list[int] = []
    counter = progress.counter("searchApartments, one month, one client", queries)
    for i in range(queries + sizes.warmup):
        start = today + timedelta(days=rng.randrange(0, 330))
        variables = {
            "input": {
                "startDate": start.isoformat(),
                "endDate": (start + timedelta(days=SEARCH_NIGHTS)).isoformat(),
                "buildingId": building,
                "limit": 50,
            }
        }
        reply = await b.api.execute(SEARCH, variables, "searchApartments")
        counter.advance()
        if i < sizes.warmup:
            continue
        search_replies.append(reply)
        if reply.ok and reply.data is not None:
            search_ms.append(ms(reply.seconds))
            found.append(len(reply.data["items"]))
    counter.finish()

    calendar_ms: list[float] = []
    calendar_replies = []
    ranges: list[int] = []
    counter = progress.counter("getApartmentCalendar, one year, one client", queries)
    for i in range(queries + sizes.warmup):
        apartment = f"{prefix}{rng.randrange(apartments)}"
        first = today - timedelta(days=rng.randrange(0, 180))
        asked: dict[str, object] = {
            "apartmentId": apartment,
            "from": first.isoformat(),
            "to": (first + timedelta(days=CALENDAR_NIGHTS)).isoformat(),
        }
        reply = await b.api.execute(CALENDAR, asked, "getApartmentCalendar")
        counter.advance()
        if i < sizes.warmup:
            continue
        calendar_replies.append(reply)
        if reply.ok and reply.data is not None:
            calendar_ms.append(ms(reply.seconds))
            ranges.append(len(reply.data))
    counter.finish()

    # Reserves among the million stays: every fourth apartment is free next month.
    reserve_ms: list[float] = []
    reserve_replies = []
    count = min(sizes.reserve_count, apartments // 4 - sizes.warmup)
    counter = progress.counter("reserveApartment among 1M stays, one client", count)
    first_night = today + timedelta(days=30)
    for i in range(count + sizes.warmup):
        reply = await b.api.reserve(
            f"{prefix}{4 * i}",
            b.users[0],
            first_night.isoformat(),
            (first_night + timedelta(days=SEARCH_NIGHTS)).isoformat(),
            LONG_HOLD,
        )
        counter.advance()
        if i < sizes.warmup:
            continue
        reserve_replies.append(reply)
        if reply.ok and reply.data is not None and reply.data.get("bookingStatus") == "PENDING":
            reserve_ms.append(ms(reply.seconds))
    counter.finish()
    if not search_ms or not calendar_ms or not reserve_ms:
        raise BenchFailure(
            f"calendar queries failed: search {error_counts(search_replies)}, calendar "
            f"{error_counts(calendar_replies)}, reserve {error_counts(reserve_replies)}"
        )

    late = today + timedelta(days=200)
    soon = today + timedelta(days=30)

    def search_from(first: date) -> Callable[[Conn], Awaitable[object]]:
        return lambda conn: calendar_store.free_apartment_ids(
            conn,
            first,
            first + timedelta(days=SEARCH_NIGHTS),
            calendar_store.ApartmentFilter(building_id=building),
            limit=51,
            after_id=None,
        )

    async def year(conn: Conn) -> None:
        await calendar_store.calendar_of(
            conn, f"{prefix}1", today, today + timedelta(days=CALENDAR_NIGHTS)
        )

    async def reserve_check(conn: Conn) -> None:
        await calendar_store.check_range(
            conn, f"{prefix}1", soon, soon + timedelta(days=SEARCH_NIGHTS)
        )

    async with b.pool.acquire() as conn:
        plans = {
            "search_nothing_free": await store.plans_of(conn, search_from(late)),
            "search_some_free": await store.plans_of(conn, search_from(soon)),
            "calendar_year": await store.plans_of(conn, year),
            "reserve_range_check": await store.plans_of(conn, reserve_check),
        }
    return {
        "apartments": apartments,
        "stays_seeded": stays,
        "bookings_in_database": total_stays,
        "seed_seconds": round(seeded_seconds, 1),
        "queries": queries,
        "search_latency_ms": summarize(search_ms),
        "search_found": summarize([float(n) for n in found]),
        "calendar_latency_ms": summarize(calendar_ms),
        "calendar_ranges": summarize([float(n) for n in ranges]),
        "reserve_latency_ms": summarize(reserve_ms),
        "errors": {
            "search": error_counts(search_replies),
            "calendar": error_counts(calendar_replies),
            "reserve": error_counts(reserve_replies),
        },
        "cpu_cores_used": cpu.cores_used(),
        "plans": plans,
    }
