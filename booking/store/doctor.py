"""SQL for ``booking doctor``: finding drift between rows and workflows, and the safe repairs.

The finders only read. The repairs (``booking.doctor``) write through the statements the
activities use, re-checking under row locks what the finder saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from booking.store import Conn


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
    """A WAITING entry whose range is free: nothing will offer it its nights."""

    apartment_id: str
    entry_id: str
    start_date: date
    end_date: date


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


async def approved_without_payment(conn: Conn) -> list[BookingDrift]:
    """APPROVED bookings with no APPLIED payment row: paid according to whom?"""
    rows = await conn.fetch(
        """SELECT b.id, b.apartment_id, b.booking_status
             FROM bookings b
            WHERE b.booking_status = 'APPROVED'
              AND NOT EXISTS (SELECT 1 FROM payments p
                               WHERE p.booking_id = b.id AND p.outcome = 'APPLIED')
            ORDER BY b.id"""
    )
    return [BookingDrift(r["id"], r["apartment_id"], r["booking_status"]) for r in rows]


async def waiting_on_free_range(conn: Conn, today: date) -> list[WaitingDrift]:
    """WAITING entries whose whole range is free (no live stay shares a night with it) and
    still to come, of an apartment not let outside: a release that did not offer (an older
    worker, a repair, a row edited by hand). Nothing will offer them their nights."""
    rows = await conn.fetch(
        """SELECT w.id, w.apartment_id, w.start_date, w.end_date
             FROM waitlist_entries w JOIN apartments a ON a.id = w.apartment_id
            WHERE w.status = 'WAITING' AND w.start_date >= $1
              AND a.apartment_status = 'VACANT'
              AND NOT EXISTS (SELECT 1 FROM bookings b
                               WHERE b.apartment_id = w.apartment_id AND b.stay && w.stay
                                 AND (b.booking_status = 'PENDING'
                                      OR (b.booking_status = 'APPROVED'
                                          AND b.lease_ended_at IS NULL)))
            ORDER BY w.apartment_id, w.seq""",
        today,
    )
    return [WaitingDrift(r["apartment_id"], r["id"], r["start_date"], r["end_date"]) for r in rows]


async def overlapping_stays(conn: Conn) -> list[tuple[str, str, str]]:
    """(apartment, booking, booking) for two live stays that share a night: what the exclusion
    constraint forbids, so only a dropped constraint or a restore can show one."""
    rows = await conn.fetch(
        """SELECT a.apartment_id, a.id AS first_id, b.id AS second_id
             FROM bookings a JOIN bookings b
               ON b.apartment_id = a.apartment_id AND b.id > a.id AND b.stay && a.stay
            WHERE (a.booking_status = 'PENDING'
                   OR (a.booking_status = 'APPROVED' AND a.lease_ended_at IS NULL))
              AND (b.booking_status = 'PENDING'
                   OR (b.booking_status = 'APPROVED' AND b.lease_ended_at IS NULL))
            ORDER BY a.apartment_id, a.id, b.id"""
    )
    return [(r["apartment_id"], r["first_id"], r["second_id"]) for r in rows]


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


@dataclass(frozen=True)
class InvoiceDrift:
    """An invoice still open (SCHEDULED, ISSUED, OVERDUE) that no running lease will collect:
    its stay was cancelled or has ended, or its period starts on or after the move-out day."""

    booking_id: str
    apartment_id: str
    invoice_id: str
    status: str
    period_start: date
    why: str


async def invoices_without_lease(conn: Conn) -> list[InvoiceDrift]:
    rows = await conn.fetch(
        """SELECT b.id AS booking_id, b.apartment_id, i.id AS invoice_id, i.status,
                  i.period_start,
                  CASE WHEN b.booking_status <> 'APPROVED' THEN 'the booking is '
                                                                 || b.booking_status
                       WHEN b.lease_ended_at IS NOT NULL THEN 'the lease has ended'
                       ELSE 'its period starts after the stay ends (' || b.end_date || ')'
                  END AS why
             FROM rent_invoices i JOIN bookings b ON b.id = i.booking_id
            WHERE i.status IN ('SCHEDULED', 'ISSUED', 'OVERDUE')
              AND (b.booking_status <> 'APPROVED' OR b.lease_ended_at IS NOT NULL
                   OR i.period_start >= b.end_date)
            ORDER BY b.id, i.seq"""
    )
    return [InvoiceDrift(**dict(r)) for r in rows]


@dataclass(frozen=True)
class LeaseInvoice:
    booking_id: str
    workflow_id: str
    apartment_id: str
    invoice_id: str
    status: str
    amount_due: int
    # Unchanged for longer than any step takes to reach its workflow (retries included): a
    # difference now is drift, not a step whose answer is on its way.
    settled: bool


async def running_lease_invoices(conn: Conn, settle_seconds: int) -> list[LeaseInvoice]:
    """Every invoice of a lease that is running (what its workflow should agree with)."""
    rows = await conn.fetch(
        """SELECT b.id AS booking_id, b.workflow_id, b.apartment_id, i.id AS invoice_id,
                  i.status, i.rent + i.late_fee AS amount_due,
                  i.updated_on < now() - make_interval(secs => $1) AS settled
             FROM rent_invoices i JOIN bookings b ON b.id = i.booking_id
            WHERE b.booking_status = 'APPROVED' AND b.lease_ended_at IS NULL
              AND i.period_start < b.end_date
            ORDER BY b.id, i.seq""",
        settle_seconds,
    )
    return [LeaseInvoice(**dict(r)) for r in rows]


async def void_stray_invoice(conn: Conn, invoice_id: str) -> str | None:
    """VOID an open invoice no running lease will collect, re-checked under its row lock; the
    booking it belonged to, or None when it is no longer such an invoice."""
    booking_id: str | None = await conn.fetchval(
        """UPDATE rent_invoices i SET status = 'VOID', updated_on = now()
             FROM bookings b
            WHERE i.id = $1 AND b.id = i.booking_id
              AND i.status IN ('SCHEDULED', 'ISSUED', 'OVERDUE')
              AND (b.booking_status <> 'APPROVED' OR b.lease_ended_at IS NOT NULL
                   OR i.period_start >= b.end_date)
        RETURNING i.booking_id""",
        invoice_id,
    )
    return booking_id
