"""The pool's release: no reset query, and still nothing carried to the next borrower."""

from __future__ import annotations

import asyncpg

from booking.db import create_pool


async def _last_query(pool: asyncpg.Pool, observer: asyncpg.Connection) -> str:
    """What the pool's one session ran last, seen from another session once it is idle."""
    async with pool.acquire() as conn:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        await conn.fetchval("SELECT 'probe'")
    query = await observer.fetchval("SELECT query FROM pg_stat_activity WHERE pid = $1", pid)
    assert isinstance(query, str)
    return query


async def test_release_runs_no_reset_query(migrated_database_url: str) -> None:
    observer = await asyncpg.connect(migrated_database_url)
    ours = await create_pool(migrated_database_url, min_size=1, max_size=1)
    default = await asyncpg.create_pool(migrated_database_url, min_size=1, max_size=1)
    try:
        assert await _last_query(ours, observer) == "SELECT 'probe'"
        # The control: asyncpg's own pool ends each borrowing with its reset query.
        assert "RESET ALL" in await _last_query(default, observer)
    finally:
        await ours.close()
        await default.close()
        await observer.close()


async def test_a_transaction_left_open_is_rolled_back_on_release(
    migrated_database_url: str,
) -> None:
    pool = await create_pool(migrated_database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            # Left open on purpose, as a bug would: the release must not hand it on.
            await conn.execute("BEGIN")
            await conn.execute("CREATE TABLE pool_release_probe (x int)")
        async with pool.acquire() as conn:
            # The same server session (max_size 1), outside any transaction, the table gone.
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SELECT to_regclass('pool_release_probe')") is None
    finally:
        await pool.close()
