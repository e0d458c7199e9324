"""SQL for ``booking doctor``: finding drift between rows and workflows, and the safe repairs.

The finders only read. The repair statements are used by ``booking.doctor``'s repairs only,
inside its transactions; each carries its own guard in the WHERE clause, so a repair run
against a database that healed in the meantime changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from booking.store import Conn


@dataclass(frozen=True)
class ApartmentDrift:
    apartment_id: str
    apartment_status: str
    tenant_id: str | None
    booking_id: str | None  # the apartment's most recent booking, if any


@dataclass(frozen=True)
class OpenBooking:
    """A booking that still needs its workflow: PENDING, or APPROVED with its lease running."""

    booking_id: str
    workflow_id: str
    apartment_id: str
    booking_status: str
    end_date: date
    hold_expires_at: datetime | None


@dataclass(frozen=True)
class WaitingDrift:
    """A free apartment with tenants waiting for it: nothing will offer it to them."""

    apartment_id: str
    first_entry_id: str
    waiting: int


@dataclass(frozen=True)
class EntryDrift:
    """A waiting-list entry that disagrees with its offer or its workflow."""

    entry_id: str
    workflow_id: str
    apartment_id: str
    status: str
    offered_booking_id: str | None
    booking_status: str | None


@dataclass(frozen=True)
class BookingDrift:
    booking_id: str
    apartment_id: str
    booking_status: str
    apartment_status: str


async def reserved_without_hold(conn: Conn) -> list[ApartmentDrift]:
    """Apartments RESERVED with no PENDING booking: a hold that nothing will ever release."""
    rows = await conn.fetch(
        """SELECT a.id, a.apartment_status, a.tenant_id,
                  (SELECT b.id FROM bookings b WHERE b.apartment_id = a.id
                    ORDER BY b.created_on DESC, b.id DESC LIMIT 1) AS booking_id
             FROM apartments a
            WHERE a.apartment_status = 'RESERVED'
              AND NOT EXISTS (SELECT 1 FROM bookings b
                               WHERE b.apartment_id = a.id AND b.booking_status = 'PENDING')
            ORDER BY a.id"""
    )
    return [
        ApartmentDrift(r["id"], r["apartment_status"], r["tenant_id"], r["booking_id"])
        for r in rows
    ]


async def open_bookings(conn: Conn) -> list[OpenBooking]:
    rows = await conn.fetch(
        """SELECT id, workflow_id, apartment_id, booking_status, end_date, hold_expires_at
             FROM bookings
            WHERE booking_status = 'PENDING'
               OR (booking_status = 'APPROVED' AND lease_ended_at IS NULL)
            ORDER BY created_on, id"""
    )
    return [
        OpenBooking(
            r["id"],
            r["workflow_id"],
            r["apartment_id"],
            r["booking_status"],
            r["end_date"],
            r["hold_expires_at"],
        )
        for r in rows
    ]


async def pending_without_reservation(conn: Conn) -> list[BookingDrift]:
    """PENDING bookings whose apartment is not RESERVED (the hold's mark was lost)."""
    rows = await conn.fetch(
        """SELECT b.id, b.apartment_id, b.booking_status, a.apartment_status
             FROM bookings b JOIN apartments a ON a.id = b.apartment_id
            WHERE b.booking_status = 'PENDING' AND a.apartment_status <> 'RESERVED'
            ORDER BY b.id"""
    )
    return [
        BookingDrift(r["id"], r["apartment_id"], r["booking_status"], r["apartment_status"])
        for r in rows
    ]


async def approved_without_payment(conn: Conn) -> list[BookingDrift]:
    """APPROVED bookings with no APPLIED payment row: paid according to whom?"""
    rows = await conn.fetch(
        """SELECT b.id, b.apartment_id, b.booking_status, a.apartment_status
             FROM bookings b JOIN apartments a ON a.id = b.apartment_id
            WHERE b.booking_status = 'APPROVED'
              AND NOT EXISTS (SELECT 1 FROM payments p
                               WHERE p.booking_id = b.id AND p.outcome = 'APPLIED')
            ORDER BY b.id"""
    )
    return [
        BookingDrift(r["id"], r["apartment_id"], r["booking_status"], r["apartment_status"])
        for r in rows
    ]


async def occupied_after_lease(conn: Conn) -> list[ApartmentDrift]:
    """Apartments still OCCUPIED by a tenant whose lease here has ended, with no lease running.

    An apartment OCCUPIED by someone who never booked it here (let outside the system by
    an admin) is not drift and is not listed.
    """
    rows = await conn.fetch(
        """SELECT a.id, a.apartment_status, a.tenant_id,
                  (SELECT b.id FROM bookings b
                    WHERE b.apartment_id = a.id AND b.user_id = a.tenant_id
                      AND b.booking_status = 'APPROVED' AND b.lease_ended_at IS NOT NULL
                    ORDER BY b.lease_ended_at DESC, b.id DESC LIMIT 1) AS booking_id
             FROM apartments a
            WHERE a.apartment_status = 'OCCUPIED'
              AND a.tenant_id IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM bookings b
                               WHERE b.apartment_id = a.id AND b.booking_status = 'APPROVED'
                                 AND b.lease_ended_at IS NULL)
              AND EXISTS (SELECT 1 FROM bookings b
                           WHERE b.apartment_id = a.id AND b.user_id = a.tenant_id
                             AND b.booking_status = 'APPROVED'
                             AND b.lease_ended_at IS NOT NULL)
            ORDER BY a.id"""
    )
    return [
        ApartmentDrift(r["id"], r["apartment_status"], r["tenant_id"], r["booking_id"])
        for r in rows
    ]


async def waiting_on_free_apartment(conn: Conn) -> list[WaitingDrift]:
    """VACANT apartments, held and let by nobody, with WAITING entries: a release that did not
    offer (an older worker, a repair, a row edited by hand)."""
    rows = await conn.fetch(
        """SELECT a.id,
                  (SELECT w.id FROM waitlist_entries w
                    WHERE w.apartment_id = a.id AND w.status = 'WAITING'
                    ORDER BY w.seq LIMIT 1) AS first_entry_id,
                  (SELECT count(*) FROM waitlist_entries w
                    WHERE w.apartment_id = a.id AND w.status = 'WAITING') AS waiting
             FROM apartments a
            WHERE a.apartment_status = 'VACANT'
              AND EXISTS (SELECT 1 FROM waitlist_entries w
                           WHERE w.apartment_id = a.id AND w.status = 'WAITING')
              -- held by nobody, let to nobody
              AND NOT EXISTS (SELECT 1 FROM bookings b
                               WHERE b.apartment_id = a.id
                                 AND (b.booking_status = 'PENDING'
                                      OR (b.booking_status = 'APPROVED'
                                          AND b.lease_ended_at IS NULL)))
            ORDER BY a.id"""
    )
    return [WaitingDrift(r["id"], r["first_entry_id"], int(r["waiting"])) for r in rows]


async def offers_not_pending(conn: Conn) -> list[EntryDrift]:
    """Entries OFFERED whose offered booking is no longer PENDING: paid (should be BOOKED) or
    cancelled (should be LAPSED) without the entry being told."""
    rows = await conn.fetch(
        """SELECT w.id, w.workflow_id, w.apartment_id, w.status, w.offered_booking_id,
                  b.booking_status
             FROM waitlist_entries w JOIN bookings b ON b.id = w.offered_booking_id
            WHERE w.status = 'OFFERED' AND b.booking_status <> 'PENDING'
            ORDER BY w.id"""
    )
    return [_entry_drift(r) for r in rows]


async def live_entries(conn: Conn) -> list[EntryDrift]:
    """Entries still on a list (WAITING or OFFERED): each needs its workflow."""
    rows = await conn.fetch(
        """SELECT w.id, w.workflow_id, w.apartment_id, w.status, w.offered_booking_id,
                  NULL AS booking_status
             FROM waitlist_entries w
            WHERE w.status IN ('WAITING', 'OFFERED')
            ORDER BY w.id"""
    )
    return [_entry_drift(r) for r in rows]


def _entry_drift(r: asyncpg.Record) -> EntryDrift:
    return EntryDrift(
        r["id"],
        r["workflow_id"],
        r["apartment_id"],
        r["status"],
        r["offered_booking_id"],
        r["booking_status"],
    )


# -- repairs (booking.doctor only) ---------------------------------------------------------


async def lock_apartment(conn: Conn, apartment_id: str) -> str | None:
    """Lock the apartment row for this transaction; return its status (None: no such row)."""
    status: str | None = await conn.fetchval(
        "SELECT apartment_status FROM apartments WHERE id = $1 FOR UPDATE", apartment_id
    )
    return status


async def held_by_pending(conn: Conn, apartment_id: str) -> bool:
    """Whether a PENDING booking holds the apartment."""
    held: bool = await conn.fetchval(
        """SELECT EXISTS (SELECT 1 FROM bookings b
                           WHERE b.apartment_id = $1 AND b.booking_status = 'PENDING')""",
        apartment_id,
    )
    return held


async def free_for_offer(conn: Conn, apartment_id: str) -> bool:
    """Whether the (locked) apartment is VACANT with no live booking: free to offer."""
    free: bool = await conn.fetchval(
        """SELECT EXISTS (
                  SELECT 1 FROM apartments a
                   WHERE a.id = $1 AND a.apartment_status = 'VACANT'
                     AND NOT EXISTS (SELECT 1 FROM bookings b
                                      WHERE b.apartment_id = a.id
                                        AND (b.booking_status = 'PENDING'
                                             OR (b.booking_status = 'APPROVED'
                                                 AND b.lease_ended_at IS NULL))))""",
        apartment_id,
    )
    return free


async def latest_booking(conn: Conn, apartment_id: str) -> tuple[str, str] | None:
    """(id, status) of the apartment's most recent booking."""
    row = await conn.fetchrow(
        """SELECT id, booking_status FROM bookings WHERE apartment_id = $1
            ORDER BY created_on DESC, id DESC LIMIT 1""",
        apartment_id,
    )
    return None if row is None else (row["id"], row["booking_status"])
