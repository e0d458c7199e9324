"""What the API process holds open for its lifetime, handed to every request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

import asyncpg
from temporalio.client import Client

from api.auth import Authenticator
from api.metrics import ApiMetrics
from booking.settings import Settings
from booking.store import Conn

if TYPE_CHECKING:
    from api.notify import BookingBroadcaster

P = ParamSpec("P")
T = TypeVar("T")


@dataclass
class Services:
    settings: Settings
    authenticator: Authenticator
    metrics: ApiMetrics
    pool: asyncpg.Pool | None = None
    client: Client | None = None
    broadcaster: BookingBroadcaster | None = None

    def require_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the database pool is not open (lifespan not started)")
        return self.pool

    def require_client(self) -> Client:
        if self.client is None:
            raise RuntimeError("the Temporal client is not connected (lifespan not started)")
        return self.client


class Reader:
    """Runs read functions from ``booking.store.reads`` on pooled connections.

    One per request; ``queries`` counts the round trips, which is how the
    tests prove that nested fields are batched, and what the
    ``booking_api_db_queries_per_request`` histogram reports.
    """

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self.queries = 0

    def fresh(self) -> Reader:
        """A reader on the same pool with its own count (one per operation)."""
        return Reader(self._pool)

    async def run(
        self, fn: Callable[Concatenate[Conn, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        self.queries += 1
        async with self._pool.acquire() as conn:
            try:
                return await fn(conn, *args, **kwargs)
            except asyncpg.DataError as err:
                # A value Postgres cannot even compare (a NUL character, found by the
                # fuzz tests) is the caller's mistake, not ours.
                from booking.errors import ValidationError

                raise ValidationError(
                    "an argument holds a value that cannot be stored (for example a NUL character)"
                ) from err
