"""What the API process holds open for its lifetime, handed to every request.

:func:`open_services` is the one place that builds them (the app's lifespan calls it): the
asyncpg pool, the Temporal client with the production data converter, the LISTEN
connection that feeds subscriptions, and the booking commands on that client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Concatenate, ParamSpec, TypeVar

import asyncpg
from temporalio.client import Client

from api.auth import Authenticator
from api.loaders import within
from api.metrics import ApiMetrics
from api.notify import PERSISTED_QUERY_CHANNEL, BookingBroadcaster
from api.operations import BookingCommands
from api.persisted_queries import PersistedQueryStore
from booking.converter import DATA_CONVERTER
from booking.db import create_pool
from booking.settings import Settings
from booking.store import Conn
from booking.temporal import connect
from booking.tracing import Tracing

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Postgres refuses NOTIFY payloads of 8,000 bytes or more.
MAX_NOTIFY_BYTES = 7_900
_BACKGROUND: set[asyncio.Future[None]] = set()


@dataclass
class Services:
    settings: Settings
    authenticator: Authenticator
    # booking.tracing: set when the OTEL_* variables ask for traces.
    tracing: Tracing | None = None
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    pool: asyncpg.Pool | None = None
    client: Client | None = None
    broadcaster: BookingBroadcaster | None = None
    commands: BookingCommands | None = None
    persisted_queries: PersistedQueryStore = field(init=False)

    def __post_init__(self) -> None:
        self.persisted_queries = PersistedQueryStore(on_new=self._announce_persisted_query)

    def _announce_persisted_query(self, sha256_hash: str, query: str, owner: str) -> None:
        """Tell the other API processes (best effort: a missed notice costs one round trip)."""
        payload = json.dumps({"sha256Hash": sha256_hash, "query": query, "owner": owner})
        if self.pool is None or len(payload.encode()) > MAX_NOTIFY_BYTES:
            return
        task = asyncio.ensure_future(self._notify(PERSISTED_QUERY_CHANNEL, payload))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    async def _notify(self, channel: str, payload: str) -> None:
        async def send() -> None:
            async with self.require_pool().acquire() as conn:
                await conn.execute("SELECT pg_notify($1, $2)", channel, payload)

        try:
            await within(self.settings.db_timeout_seconds, send())
        except Exception as err:  # the next process will ask for the query once, that's all
            log.info("persisted query not announced: %s", type(err).__name__)

    def require_pool(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the database pool is not open (lifespan not started)")
        return self.pool

    def require_client(self) -> Client:
        if self.client is None:
            raise RuntimeError("the Temporal client is not connected (lifespan not started)")
        return self.client

    def require_commands(self) -> BookingCommands:
        if self.commands is None:
            raise RuntimeError("the booking commands are not ready (lifespan not started)")
        return self.commands

    async def write(
        self, fn: Callable[Concatenate[Conn, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run one of ``booking.catalog``'s writes (a transaction of its own) on a pooled
        connection, bounded like every read."""

        async def write() -> T:
            async with self.require_pool().acquire() as conn:
                return await fn(conn, *args, **kwargs)

        return await within(self.settings.db_timeout_seconds, write())


@contextlib.asynccontextmanager
async def open_services(
    services: Services,
    *,
    pool: asyncpg.Pool | None = None,
    client: Client | None = None,
) -> AsyncIterator[Services]:
    """Open what ``services`` lacks (``pool`` and ``client`` may be injected), close it after."""
    settings = services.settings
    dsn = settings.require_database_url()
    opened_pool = None
    if pool is None:
        opened_pool = await create_pool(
            dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
    services.pool = pool or opened_pool
    services.client = client or await connect(
        settings.temporal_address,
        settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
        interceptors=services.tracing.interceptors() if services.tracing else [],
    )
    services.commands = BookingCommands(
        services.client, settings, observe=services.metrics.observe_temporal_call
    )
    broadcaster = BookingBroadcaster(dsn, on_persisted_query=services.persisted_queries.learn)
    await broadcaster.start()
    services.broadcaster = broadcaster
    log.info(
        "API ready (Temporal %s, namespace %s)",
        settings.temporal_address,
        settings.temporal_namespace,
    )
    try:
        yield services
    finally:
        await broadcaster.stop()
        services.broadcaster = None
        if opened_pool is not None:
            await opened_pool.close()
