"""The API's read path: a :class:`Reader` per request, and its DataLoaders.

Every read goes through ``Reader.run`` (one pooled connection per call, bounded in time);
the DataLoaders batch nested fields so that one nested field costs one query per request,
not one per parent.
"""

from __future__ import annotations

import asyncio
import functools
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg
from strawberry.dataloader import DataLoader

from api.cost import MAX_LIST_ITEMS
from api.errors import ServiceUnavailable
from booking.errors import ValidationError
from booking.store import Conn, reads
from booking.store.bookings import BookingRow
from booking.store.reads import ApartmentRow, BuildingRow, UserRow

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", UserRow, BuildingRow, ApartmentRow, BookingRow)

# asyncpg's errors of a connection that went away or never came (the server is restarting).
_UNREACHABLE = (OSError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError)


class Reader:
    """Runs read functions from ``booking.store.reads`` on pooled connections.

    One per request; ``queries`` counts the round trips, which is how the tests prove that
    nested fields are batched, and what the ``booking_api_db_queries_per_request`` histogram
    reports. Each call waits at most ``timeout`` seconds for a connection and its statement
    (``BOOKING_DB_TIMEOUT_SECONDS``): a database that stops answering makes a read answer
    ``ServiceUnavailable`` instead of holding the request.
    """

    def __init__(self, pool: asyncpg.Pool, timeout: float) -> None:
        self._pool = pool
        self._timeout = timeout
        self.queries = 0

    def fresh(self) -> Reader:
        """A reader on the same pool with its own count (one per operation)."""
        return Reader(self._pool, self._timeout)

    async def run(
        self, fn: Callable[Concatenate[Conn, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        self.queries += 1

        async def read() -> T:
            async with self._pool.acquire() as conn:
                return await fn(conn, *args, **kwargs)

        try:
            return await within(self._timeout, read())
        except asyncpg.DataError as err:
            # A value Postgres cannot even compare (a NUL character, found by the fuzz
            # tests) is the caller's mistake, not ours.
            raise ValidationError(
                "an argument holds a value that cannot be stored (for example a NUL character)"
            ) from err


async def within(seconds: float, work: Awaitable[T]) -> T:
    """``work``'s result, or ServiceUnavailable once ``seconds`` have passed.

    The work runs as a task of its own, abandoned (cancelled, not awaited) at the deadline:
    a database that stopped answering would otherwise hold the caller in the cleanup of its
    connection (the pool resets it before taking it back) long past the deadline.
    """
    task = asyncio.ensure_future(work)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        _ABANDONED.add(task)
        task.add_done_callback(_forget)
        raise ServiceUnavailable("the database did not answer in time; retry shortly")
    try:
        return task.result()
    except _UNREACHABLE as err:
        raise ServiceUnavailable("the database is not reachable; retry shortly") from err


# Abandoned work, kept referenced until it ends (its exceptions are of no interest any more).
_ABANDONED: set[asyncio.Future[Any]] = set()


def _forget(task: asyncio.Future[Any]) -> None:
    _ABANDONED.discard(task)
    if not task.cancelled():
        task.exception()


def _in_key_order(keys: Sequence[str], rows: list[R], key: Callable[[R], str]) -> list[R | None]:
    by_key = {key(r): r for r in rows}
    return [by_key.get(k) for k in keys]


class Loaders:
    """The DataLoaders of one operation, each made when first used: a WebSocket connection's
    context holds a Loaders it never loads through (every operation gets ``fresh()`` ones),
    and 10,000 subscribers should not hold five idle DataLoaders each."""

    def __init__(self, reader: Reader) -> None:
        self.reader = reader
        # The day an apartment's status is read for: one per operation, so that every
        # apartment of one answer stands on the same day.
        self.today = datetime.now(UTC).date()

    @functools.cached_property
    def users(self) -> DataLoader[str, UserRow | None]:
        async def load(ids: list[str]) -> list[UserRow | None]:
            rows = await self.reader.run(reads.users_by_ids, ids)
            return _in_key_order(ids, rows, lambda r: r.id)

        return DataLoader(load)

    @functools.cached_property
    def buildings(self) -> DataLoader[str, BuildingRow | None]:
        async def load(ids: list[str]) -> list[BuildingRow | None]:
            rows = await self.reader.run(reads.buildings_by_ids, ids)
            return _in_key_order(ids, rows, lambda r: r.id)

        return DataLoader(load)

    @functools.cached_property
    def apartments(self) -> DataLoader[str, ApartmentRow | None]:
        async def load(ids: list[str]) -> list[ApartmentRow | None]:
            rows = await self.reader.run(reads.apartments_by_ids, ids, self.today)
            return _in_key_order(ids, rows, lambda r: r.id)

        return DataLoader(load)

    @functools.cached_property
    def building_apartments(self) -> DataLoader[str, list[ApartmentRow]]:
        async def load(ids: list[str]) -> list[list[ApartmentRow]]:
            grouped: dict[str, list[ApartmentRow]] = defaultdict(list)
            # One more than a list may hold, so that a longer one is refused, not cut short.
            rows = await self.reader.run(
                reads.apartments_by_building_ids, ids, self.today, per_building=MAX_LIST_ITEMS + 1
            )
            for row in rows:
                grouped[row.building_id].append(row)
            return [grouped.get(i, []) for i in ids]

        return DataLoader(load)

    @functools.cached_property
    def available_from(self) -> DataLoader[str, date | None]:
        """An apartment's first free night from today: read only for the apartments whose
        ``availableFrom`` is asked for (it walks their stays)."""

        async def load(ids: list[str]) -> list[date | None]:
            found = await self.reader.run(reads.available_from, ids, self.today)
            return [found.get(i) for i in ids]

        return DataLoader(load)

    @functools.cached_property
    def bookings(self) -> DataLoader[str, BookingRow | None]:
        async def load(ids: list[str]) -> list[BookingRow | None]:
            rows = await self.reader.run(reads.bookings_by_ids, ids)
            return _in_key_order(ids, rows, lambda r: r.id)

        return DataLoader(load)

    def fresh(self) -> Loaders:
        """New loaders (empty caches) on a new reader: one per operation of a WebSocket."""
        return Loaders(self.reader.fresh())
