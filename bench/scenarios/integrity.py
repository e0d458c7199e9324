"""After every scenario: no apartment was ever booked twice."""

from __future__ import annotations

from bench import store
from bench.scenarios.harness import (
    Bench,
)


async def double_bookings(b: Bench) -> list[str]:
    async with b.pool.acquire() as conn:
        return await store.double_booked_apartments(conn, b.prefix)
