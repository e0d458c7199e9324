"""Leases: the end of a paid stay, which frees the apartment (or hands it on)."""

from __future__ import annotations

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity

from activities.base import ActivityBase, earlier_outcome, outcome_details, permanent
from activities.db_errors import permanent_db_errors
from booking.contract import (
    APPROVED,
    END_LEASE,
    END_LEASE_AND_OFFER,
    EndLeaseRequest,
    Offer,
    ReleaseOutcome,
)
from booking.errors import (
    BookingNotFound,
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
                    offer: Offer | None = None
                    lapsed: list[str] = []
                    # Only the tenant's own lease hands the apartment on (an admin may have
                    # let it to someone else meanwhile).
                    if await store.occupied_by(conn, booking.apartment_id, booking.user_id):
                        offer, lapsed = await offer_next(
                            conn,
                            booking.apartment_id,
                            terms,
                            request.ended_at,
                            self._policy.waitlist_offer_seconds,
                        )
                    if offer is None:
                        await store.vacate_after_lease(conn, booking.apartment_id, booking.user_id)
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
                    await store.vacate_after_lease(conn, booking.apartment_id, booking.user_id)
                    await store.append_event(conn, booking.id, APPROVED, APPROVED, "LEASE_ENDED")


async def _lease_to_end(
    conn: PoolConnectionProxy[asyncpg.Record], booking_id: str
) -> store.BookingRow | None:
    """The APPROVED booking whose lease is to end, its row locked; None: it has ended already
    (an earlier attempt committed)."""
    booking = await store.get_booking(conn, booking_id, for_update=True)
    if booking is None:
        raise permanent(f"booking {booking_id} does not exist", BookingNotFound.error_type)
    if booking.lease_ended_at is not None:
        return None
    if booking.booking_status != APPROVED:
        raise permanent(
            f"booking is {booking.booking_status}, not APPROVED", ValidationError.error_type
        )
    return booking
