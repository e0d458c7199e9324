"""The LISTEN connection outlives whatever goes wrong while it is being set up (real Postgres)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest

from api.notify import CHANNEL, BookingBroadcaster


async def test_listener_survives_an_unexpected_error_between_connect_and_listen(
    migrated_database_url: str, pool: asyncpg.Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = asyncpg.Connection.add_listener
    failures = {"left": 2}

    async def flaky_add_listener(self: asyncpg.Connection, *args: Any, **kwargs: Any) -> None:
        # What a connection dropped right after connect raises: not a PostgresError.
        if failures["left"]:
            failures["left"] -= 1
            raise asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
        await original(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "add_listener", flaky_add_listener)
    broadcaster = BookingBroadcaster(migrated_database_url, reconnect_delay=0.05)
    await broadcaster.start()  # returns only once a LISTEN is in place
    try:
        assert failures["left"] == 0
        assert broadcaster.listening
        with broadcaster.subscribe("notify-test-booking") as queue:
            notice = json.dumps({"id": "notify-test-booking", "status": "APPROVED"})
            await pool.execute("SELECT pg_notify($1, $2)", CHANNEL, notice)
            assert await asyncio.wait_for(queue.get(), 5) == "APPROVED"
    finally:
        await broadcaster.stop()
