"""Leases: the end of a paid stay, which frees the apartment (or hands it on), and its end
moved earlier (notice) or later (renewal), its invoices following."""

from __future__ import annotations

from datetime import date

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
from activities.rent import invoice_state, rent_schedule
from booking import rent
from booking.calendar import let_outside_message, taken_message
from booking.contract import (
    APPROVED,
    END_LEASE,
    END_LEASE_AND_OFFER,
    MOVE_LEASE_END,
    STAY_STARTED,
    EndLeaseRequest,
    LeaseMove,
    LeaseMoveRequest,
    ReleaseOutcome,
    StayStartRequest,
)
from booking.errors import ApartmentUnavailable, LeaseNotChangeable, ValidationError
from booking.offers import FreedNights, offer_next
from booking.store import bookings as store
from booking.store import calendar as calendar_store
from booking.store import rent as rent_store

_MOVE_CONSTRAINTS = {
    # The read below saw the nights free; a stay placed since meets the constraint.
    "bookings_no_overlapping_stays": (
        ApartmentUnavailable.error_type,
        "another stay holds some of the nights after this stay",
    ),
}


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

    @activity.defn(name=MOVE_LEASE_END)
    async def move_lease_end(self, request: LeaseMoveRequest) -> LeaseMove:
        """Move a running stay's end to ``request.end_date`` in one transaction: the booking's
        nights, its invoices (booking.rent.reshape), refunds of rent paid for nights given up,
        and nights freed offered to the waiting list. A retry after a commit answers what the
        commit did."""
        async with self._connection() as conn:
            with permanent_db_errors("lease end not moved", by_constraint=_MOVE_CONSTRAINTS):
                async with self._transaction(conn):
                    booking = await locked_booking(conn, request.booking_id)
                    if booking.end_date == request.end_date:
                        return await self._moved(conn, booking.id, request.end_date)
                    if booking.booking_status != APPROVED or booking.lease_ended_at is not None:
                        raise permanent(
                            f"booking {booking.id} is not a running stay",
                            LeaseNotChangeable.error_type,
                        )
                    terms = await store.lock_apartment(conn, booking.apartment_id)
                    old_end, new_end = booking.end_date, request.end_date
                    if new_end > old_end:
                        if terms is None or terms.let_outside:
                            raise permanent(
                                let_outside_message(booking.apartment_id),
                                ApartmentUnavailable.error_type,
                            )
                        clash = await calendar_store.live_overlap(
                            conn, booking.apartment_id, old_end, new_end
                        )
                        if clash is not None:
                            raise permanent(
                                taken_message(booking.apartment_id, clash, old_end, new_end),
                                ApartmentUnavailable.error_type,
                            )
                    await store.move_end(conn, booking.id, new_end)
                    invoices = await rent_store.invoices_for(conn, booking.id)
                    monthly = await store.booked_rent(conn, booking)
                    change = rent.reshape(
                        [_written(i) for i in invoices],
                        booking.start_date,
                        old_end,
                        new_end,
                        monthly,
                    )
                    refunded = await _apply(conn, booking, change)
                    outcome = None
                    if new_end < old_end:
                        offer, lapsed = await offer_next(
                            conn,
                            FreedNights(booking.apartment_id, new_end, old_end),
                            terms,
                            request.at,
                            self._policy.waitlist_offer_seconds,
                        )
                        outcome = ReleaseOutcome(True, offer, lapsed_entries=lapsed)
                    details = outcome_details(outcome) if outcome else {}
                    details.update(
                        {
                            "from": old_end.isoformat(),
                            "to": new_end.isoformat(),
                            "refunded": refunded,
                        }
                    )
                    await store.append_event(
                        conn,
                        booking.id,
                        APPROVED,
                        APPROVED,
                        "LEASE_ENDS_EARLIER" if new_end < old_end else "LEASE_RENEWED",
                        details,
                    )
                    return await self._moved(conn, booking.id, new_end)

    async def _moved(
        self, conn: PoolConnectionProxy[asyncpg.Record], booking_id: str, end_date: date
    ) -> LeaseMove:
        """What the (possibly earlier) commit of the move to ``end_date`` did."""
        details = await store.event_details(conn, booking_id, "LEASE_ENDS_EARLIER") or {}
        if details.get("to") != end_date.isoformat():
            details = await store.event_details(conn, booking_id, "LEASE_RENEWED") or {}
        outcome = None
        if details.get("to") == end_date.isoformat() and details["to"] < details["from"]:
            outcome = await earlier_outcome(conn, booking_id, "LEASE_ENDS_EARLIER")
        invoices = await rent_store.invoices_for(conn, booking_id)
        schedule = rent_schedule(self._policy.rent_rules, invoices) if invoices else None
        return LeaseMove(
            invoices=[invoice_state(i) for i in invoices] if invoices else None,
            outcome=outcome,
            refunded=int(details.get("refunded", 0)),
            schedule=schedule,
        )


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


def _written(row: rent_store.RentInvoiceRow) -> rent.WrittenInvoice:
    return rent.WrittenInvoice(
        row.id,
        row.seq,
        row.period_start,
        row.period_end,
        row.rent,
        row.late_fee,
        row.status,
        row.refunded,
    )


async def _apply(
    conn: PoolConnectionProxy[asyncpg.Record], booking: store.BookingRow, change: rent.Reshape
) -> int:
    """Write the invoice changes; the rent refunded."""
    for resized in change.resized:
        await rent_store.resize(conn, resized.invoice_id, resized.period_end, resized.rent)
    for invoice_id in change.voided:
        await rent_store.void(conn, invoice_id)
    refunded = 0
    for invoice_id, amount in change.refunds:
        await rent_store.refund(conn, invoice_id, amount)
        refunded += amount
    if change.added:
        await rent_store.insert_schedule(
            conn, booking.id, change.added, booking.currency, first_paid=None
        )
    return refunded
