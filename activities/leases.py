"""Leases: the end of a paid stay, which frees the apartment (or hands it on)."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity

from activities.base import (
    ActivityBase,
    earlier_outcome,
    locked_booking,
    outcome_details,
    permanent,
)
from activities.db_errors import permanent_db_errors
from booking.contract import (
    APPROVED,
    END_LEASE,
    END_LEASE_AND_OFFER,
    STAY_STARTED,
    EndLeaseRequest,
    ReleaseOutcome,
    StayStartRequest,
)
from booking.errors import (
    ValidationError,
)
from booking.offers import offer_next
from booking.store import bookings as store


class LeaseActivities(ActivityBase):
    """The lease's end: recorded once, the apartment to the next tenant waiting or VACANT."""

    @activity.defn(name=END_LEASE_AND_OFFER)
    async def end_lease_and_offer(self, request: EndLeaseRequest) -> ReleaseOutcome:
        """Record the lease end; the apartment goes to the first tenant waiting, or VACANT."""
        async with self._connection() as conn:
            with permanent_db_errors("lease end not recorded"):
                async with self._transaction(conn):
                    booking = await _lease_to_end(conn, request.booking_id)
                    if booking is None:
                        return await earlier_outcome(conn, request.booking_id, "LEASE_ENDED")
                    terms = await store.lock_apartment(conn, booking.apartment_id)
                    await store.end_lease(conn, booking.id, request.ended_at)
                    offer, lapsed = await offer_next(
                        conn,
                        booking,
                        terms,
                        request.ended_at,
                        self._policy.waitlist_offer_seconds,
                    )
                    outcome = ReleaseOutcome(True, offer, lapsed_entries=lapsed)
                    await store.append_event(
                        conn,
                        booking.id,
                        APPROVED,
                        APPROVED,
                        "LEASE_ENDED",
                        outcome_details(outcome),
                    )
        return outcome

    @activity.defn(name=STAY_STARTED)
    async def stay_started(self, request: StayStartRequest) -> bool:
        """A paid stay's first night has come: record it once and tell subscribers (the
        apartment's status for today now reads OCCUPIED). False: recorded before, or the
        booking is no longer a running lease."""
        async with self._connection() as conn:
            with permanent_db_errors("stay start not recorded"):
                async with self._transaction(conn):
                    booking = await locked_booking(conn, request.booking_id)
                    if booking.booking_status != APPROVED or booking.lease_ended_at is not None:
                        return False
                    if await store.event_details(conn, booking.id, "STAY_STARTED") is not None:
                        return False  # an earlier attempt committed
                    await store.touch_and_notify(conn, booking.id)
                    await store.append_event(
                        conn,
                        booking.id,
                        APPROVED,
                        APPROVED,
                        "STAY_STARTED",
                        {"startedAt": request.started_at.isoformat()},
                    )
        return True

    @activity.defn(name=END_LEASE)
    async def end_lease(self, request: EndLeaseRequest) -> None:
        """Record the lease end; the tenant's apartment goes back to VACANT."""
        async with self._connection() as conn:
            with permanent_db_errors("lease end not recorded"):
                async with self._transaction(conn):
                    booking = await _lease_to_end(conn, request.booking_id)
                    if booking is None:
                        return  # an earlier attempt committed
                    await store.end_lease(conn, booking.id, request.ended_at)
                    await store.append_event(conn, booking.id, APPROVED, APPROVED, "LEASE_ENDED")


async def _lease_to_end(
    conn: PoolConnectionProxy[asyncpg.Record], booking_id: str
) -> store.BookingRow | None:
    """The APPROVED booking whose lease is to end, its row locked; None: it has ended already
    (an earlier attempt committed)."""
    booking = await locked_booking(conn, booking_id)
    if booking.lease_ended_at is not None:
        return None
    if booking.booking_status != APPROVED:
        raise permanent(
            f"booking is {booking.booking_status}, not APPROVED", ValidationError.error_type
        )
    return booking
