"""Live booking updates: one LISTEN connection per API process, fanned out to subscribers.

The activities change a booking and ``pg_notify('booking_status', ...)`` in the
same transaction (a trigger in 0001_initial.sql), and Postgres delivers the
notice to every listening connection, so every API process sees every
transition within milliseconds, with no polling. A notice only says "booking X
changed"; subscribers read the row itself, so a notice lost while the
connection was being re-established costs nothing: on reconnect every
subscriber is told to re-read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg

log = logging.getLogger(__name__)

CHANNEL = "booking_status"
# A waiting-list entry changed (0004): subscribers listen per apartment, see waitlist_key.
WAITLIST_CHANNEL = "waitlist_entry"
# A rent invoice changed (0006): subscribers listen per booking, see rent_key.
RENT_CHANNEL = "rent_invoice"
# Persisted queries one API process registered, for the others (api.persisted_queries).
PERSISTED_QUERY_CHANNEL = "persisted_query"
APPLICATION_NAME = "booking-api-listener"  # how operators (and tests) find it in pg_stat_activity
RESYNC = "*"  # put on every queue after a reconnect: "re-read, you may have missed something"


def waitlist_key(apartment_id: str) -> str:
    """What to subscribe to for an apartment's waiting list: a change of any entry on it
    (positions move when one ahead leaves or gets an offer)."""
    return f"waitlist:{apartment_id}"


def rent_key(booking_id: str) -> str:
    """What to subscribe to for a lease's invoices: a change of any of them."""
    return f"rent:{booking_id}"


class BookingBroadcaster:
    def __init__(
        self,
        dsn: str,
        *,
        reconnect_delay: float = 0.5,
        on_persisted_query: Callable[[str, str, str], None] | None = None,
    ) -> None:
        self._dsn = dsn
        self._on_persisted_query = on_persisted_query
        self._reconnect_delay = reconnect_delay
        self._subscribers: dict[str, set[asyncio.Queue[str]]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._conn: asyncpg.Connection | None = None

    @property
    def listening(self) -> bool:
        return self._connected.is_set()

    async def start(self) -> None:
        """Start listening; returns once the first LISTEN is in place (10 s at most)."""
        self._task = asyncio.create_task(self._run(), name="booking-status-listener")
        async with asyncio.timeout(10):
            await self._connected.wait()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @contextlib.contextmanager
    def subscribe(self, booking_id: str) -> Iterator[asyncio.Queue[str]]:
        """A queue that receives the booking's new status on every transition (or, for a
        :func:`waitlist_key`, every change on that apartment's waiting list)."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers[booking_id].add(queue)
        try:
            yield queue
        finally:
            queues = self._subscribers.get(booking_id)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._subscribers[booking_id]

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._fan_out(CHANNEL, payload, lambda notice: str(notice["id"]))

    def _on_waitlist(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._fan_out(
            WAITLIST_CHANNEL, payload, lambda notice: waitlist_key(str(notice["apartmentId"]))
        )

    def _on_rent(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        self._fan_out(RENT_CHANNEL, payload, lambda notice: rent_key(str(notice["bookingId"])))

    def _fan_out(
        self, channel: str, payload: object, key_of: Callable[[dict[str, Any]], str]
    ) -> None:
        """A notice's status to every queue subscribed to its key (a malformed one: logged)."""
        try:
            notice = json.loads(str(payload))
            key = key_of(notice)
            status = str(notice["status"])
        except (ValueError, KeyError, TypeError):
            log.warning("ignored malformed %s notification", channel)
            return
        for queue in self._subscribers.get(key, ()):
            queue.put_nowait(status)

    def _on_persisted(self, _conn: object, _pid: int, _channel: str, payload: object) -> None:
        if self._on_persisted_query is None:
            return
        try:
            notice = json.loads(str(payload))
            sha, query = str(notice["sha256Hash"]), str(notice["query"])
            # Counted against the caller who registered it, in every process.
            owner = str(notice.get("owner", "peer"))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignored malformed %s notification", PERSISTED_QUERY_CHANNEL)
            return
        self._on_persisted_query(sha, query, owner)

    def _on_termination(self, _conn: object) -> None:
        self._lost.set()

    async def _run(self) -> None:
        listened = False
        while True:
            try:
                listened = await self._listen_until_lost(resync=listened) or listened
            except Exception as err:
                # Whatever goes wrong (connect refused, the connection dropping between
                # connect and LISTEN: InterfaceError, ConnectionDoesNotExistError, ...),
                # the listener must outlive it: live updates stop only with the process.
                log.warning("LISTEN connection failed (%s: %s); retrying", type(err).__name__, err)
            await asyncio.sleep(self._reconnect_delay)

    async def _listen_until_lost(self, *, resync: bool) -> bool:
        """Connect, LISTEN and wait until the connection is lost; True once it listened."""
        conn = await asyncpg.connect(
            self._dsn, server_settings={"application_name": APPLICATION_NAME}
        )
        self._conn = conn
        self._lost.clear()
        try:
            conn.add_termination_listener(self._on_termination)
            await conn.add_listener(CHANNEL, self._on_notification)
            await conn.add_listener(WAITLIST_CHANNEL, self._on_waitlist)
            await conn.add_listener(RENT_CHANNEL, self._on_rent)
            await conn.add_listener(PERSISTED_QUERY_CHANNEL, self._on_persisted)
            self._connected.set()
            if resync:
                log.info("LISTEN connection re-established; subscribers re-read")
                for queues in list(self._subscribers.values()):
                    for queue in queues:
                        queue.put_nowait(RESYNC)
            await self._lost.wait()
            log.warning("LISTEN connection lost; reconnecting")
            return True
        finally:
            self._connected.clear()
            self._conn = None
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.shield(conn.close(timeout=2))
