"""What every activity shares: its bounds in the database, its policy, its base class.

The activities of ApartmentBookingWorkflow and WaitlistEntryWorkflow, every database write of a
booking and of a waiting list, live by feature beside this module (``holds``, ``payments``,
``leases``, ``waitlist``); ``activities.BookingActivities`` is all of them on one pool.

Each activity is one transaction and idempotent by booking id (or payment reference): a retry
after a commit whose answer was lost finds its work done and reports it again. Constraint and
data errors are permanent (non-retryable ``ApplicationError``); anything else (a lost
connection, a restarting server, a serialization failure) propagates so Temporal retries it.
Every status change appends a ``booking_events`` row in the same transaction; the bookings
and waitlist triggers announce it with ``pg_notify``.

The waiting list: a release (``release_and_offer``) or a lease's end (``end_lease_and_offer``)
locks the apartment's row, then gives the apartment to the first WAITING entry in the same
transaction (its booking row inserted PENDING, the entry OFFERED), so the apartment never
shows VACANT while someone waits; ``join_waitlist`` takes the same row lock (shared), so a
join and a release are ordered: the join either is seen by the release or sees VACANT.

Every attempt is bounded inside the database (:class:`AttemptBounds`): it commits within
``AttemptBounds.total`` of its start or not at all. Temporal does not cancel an attempt that
runs past its ``start_to_close_timeout`` (these activities do not heartbeat), so without the
bound a slow attempt the workflow has given up on could still commit later. A lock or
statement timeout is transient: it becomes a retryable ``DatabaseBusy`` error. (A COMMIT cut
short in flight is the one outcome nobody can know; the workflow's sweep after a failed reserve
covers it.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio.exceptions import ApplicationError

from booking.contract import ACTIVITY_TIMEOUT, BookingInput, Offer, ReleaseOutcome
from booking.errors import BookingNotFound
from booking.rent import RentRules
from booking.store import bookings as store


@dataclass(frozen=True)
class AttemptBounds:
    """How long one activity attempt may spend in the database.

    ``total`` covers waiting for a pooled connection and the whole transaction; it is well
    under the workflow's ``start_to_close_timeout`` so that, by the time Temporal starts a
    retry, the attempt before it has committed or rolled back for good.
    """

    acquire: timedelta = timedelta(seconds=2)
    lock: timedelta = timedelta(seconds=3)
    statement: timedelta = timedelta(seconds=3)
    total: timedelta = timedelta(seconds=9)

    def __post_init__(self) -> None:
        if not self.lock <= self.total < ACTIVITY_TIMEOUT:
            raise ValueError("attempt bounds must satisfy lock <= total < ACTIVITY_TIMEOUT")


# A lock wait or statement cut short by the bounds: the same attempt later may well succeed.
# Retryable, so it never reaches a client; the workflow's retry policy takes it.
DATABASE_BUSY = "DatabaseBusy"
_BUSY = (TimeoutError, asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError)


def permanent(message: str, error_type: str) -> ApplicationError:
    return ApplicationError(message, type=error_type, non_retryable=True)


async def locked_booking(
    conn: PoolConnectionProxy[asyncpg.Record], booking_id: str
) -> store.BookingRow:
    """The booking's row, locked for this transaction; BookingNotFound (for good) if none."""
    booking = await store.get_booking(conn, booking_id, for_update=True)
    if booking is None:
        raise permanent(f"booking {booking_id} does not exist", BookingNotFound.error_type)
    return booking


def _ms(span: timedelta) -> int:
    return max(1, int(span.total_seconds() * 1000))


@dataclass(frozen=True)
class BookingPolicy:
    """The rules of the worker's settings that its activities apply (``Settings`` defaults).

    ``max_holds_per_tenant``: a tenant's open holds at once (None: no limit); offers of the
    waiting list are not refused by it (the tenant queued for them before).
    ``waitlist_offer_seconds``: how long an offer holds the apartment for its tenant.
    """

    max_holds_per_tenant: int | None = 3
    waitlist_offer_seconds: int = 86_400
    # A lease's rent rules (BOOKING_RENT_*, BOOKING_LATE_FEE), handed to each lease as it begins.
    rent_rules: RentRules = field(default_factory=RentRules)
    # How long before a hold ends its tenant is reminded (BOOKING_HOLD_REMINDER_SECONDS, 0:
    # never); answered with each reservation.
    hold_reminder_seconds: int = 300
    # Whether this worker delivers mail (BOOKING_SMTP_HOST set): a booking or entry whose
    # worker answered no is never mailed (its notifications stay PENDING, unsent).
    mail: bool = False


class ActivityBase:
    """Handed the pool once; each activity method is one short, bounded transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bounds: AttemptBounds | None = None,
        policy: BookingPolicy | None = None,
    ) -> None:
        self._pool = pool
        self._bounds = bounds or AttemptBounds()
        self._policy = policy or BookingPolicy()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection for one attempt, given up (rolled back) after ``total``."""
        bounds = self._bounds
        try:
            async with asyncio.timeout(bounds.total.total_seconds()):
                async with self._pool.acquire(timeout=bounds.acquire.total_seconds()) as conn:
                    yield conn
        except _BUSY as exc:
            raise ApplicationError(
                f"database busy ({exc.__class__.__name__}): attempt given up, will retry",
                type=DATABASE_BUSY,
            ) from exc

    @asynccontextmanager
    async def _transaction(self, conn: PoolConnectionProxy[asyncpg.Record]) -> AsyncIterator[None]:
        async with conn.transaction():
            await store.bound_transaction(
                conn,
                lock_timeout_ms=_ms(self._bounds.lock),
                statement_timeout_ms=_ms(self._bounds.statement),
            )
            yield

    def all(self) -> list[Callable[..., Any]]:
        """The bound activity methods (every ``@activity.defn`` of the class), for
        ``Worker(activities=...)``."""
        return [
            getattr(self, name)
            for name in dir(type(self))
            if hasattr(getattr(type(self), name), "__temporal_activity_definition")
        ]


def outcome_details(outcome: ReleaseOutcome) -> dict[str, Any]:
    """What a release did, in its event row, for a retry to answer the same."""
    details: dict[str, Any] = {}
    if outcome.offer is not None:
        booking = outcome.offer.booking
        details["offer"] = {
            "bookingId": booking.booking_id,
            "userId": booking.user_id,
            "startDate": booking.start_date.isoformat(),
            "endDate": booking.end_date.isoformat(),
            "holdSeconds": booking.hold_seconds,
            "waitlistEntryId": booking.waitlist_entry_id,
            "holdExpiresAt": outcome.offer.hold_expires_at.isoformat(),
        }
    if outcome.settled_entry is not None:
        details["settledEntry"] = {"id": outcome.settled_entry, "status": outcome.settled_status}
    if outcome.lapsed_entries:
        details["lapsedEntries"] = outcome.lapsed_entries
    return details


async def earlier_outcome(
    conn: PoolConnectionProxy[asyncpg.Record], booking_id: str, reason: str
) -> ReleaseOutcome:
    """What the attempt that committed did (a retry after its answer was lost)."""
    details = await store.event_details(conn, booking_id, reason)
    if details is None:
        return ReleaseOutcome(False)  # released some other way (an older step, doctor)
    booking = await store.get_booking(conn, booking_id)
    assert booking is not None
    offer = None
    if "offer" in details:
        o = details["offer"]
        offer = Offer(
            BookingInput(
                booking_id=o["bookingId"],
                apartment_id=booking.apartment_id,
                user_id=o["userId"],
                start_date=date.fromisoformat(o["startDate"]),
                end_date=date.fromisoformat(o["endDate"]),
                hold_seconds=o["holdSeconds"],
                waitlist_entry_id=o["waitlistEntryId"],
            ),
            datetime.fromisoformat(o["holdExpiresAt"]),
        )
    settled = details.get("settledEntry") or {}
    return ReleaseOutcome(
        True, offer, settled.get("id"), settled.get("status"), details.get("lapsedEntries", [])
    )
