"""SQL for ``booking doctor``: finding drift between rows and workflows, and the safe repairs.

The finders only read. The repair statements are used by ``booking.doctor``'s repairs only,
inside its transactions; each carries its own guard in the WHERE clause, so a repair run
against a database that healed in the meantime changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

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


# -- repairs (booking.doctor only) ---------------------------------------------------------


async def lock_apartment(conn: Conn, apartment_id: str) -> str | None:
    """Lock the apartment row for this transaction; return its status (None: no such row)."""
    status: str | None = await conn.fetchval(
        "SELECT apartment_status FROM apartments WHERE id = $1 FOR UPDATE", apartment_id
    )
    return status


async def release_orphaned_reservation(conn: Conn, apartment_id: str) -> bool:
    """RESERVED -> VACANT, only while no PENDING booking holds the apartment."""
    result: str = await conn.execute(
        """UPDATE apartments
              SET apartment_status = 'VACANT', tenant_id = NULL, updated_on = now()
            WHERE id = $1 AND apartment_status = 'RESERVED'
              AND NOT EXISTS (SELECT 1 FROM bookings b
                               WHERE b.apartment_id = $1 AND b.booking_status = 'PENDING')""",
        apartment_id,
    )
    return result == "UPDATE 1"


async def latest_booking(conn: Conn, apartment_id: str) -> tuple[str, str] | None:
    """(id, status) of the apartment's most recent booking."""
    row = await conn.fetchrow(
        """SELECT id, booking_status FROM bookings WHERE apartment_id = $1
            ORDER BY created_on DESC, id DESC LIMIT 1""",
        apartment_id,
    )
    return None if row is None else (row["id"], row["booking_status"])
