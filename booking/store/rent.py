"""SQL for rent invoices: a lease's schedule, and each invoice's transitions.

Written by the lease workflow's activities only; every transition names the status it
expects, so a repeated or stale call changes nothing (and says so).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import asyncpg

from booking.rent import RentPeriod
from booking.store import Conn, columns

# Invoice ids: one per (booking, period), the same on every attempt.
_INVOICE_NAMESPACE = uuid.UUID("6f1d3a52-2b7c-4d8e-9a0f-5c4b3e2d1a09")

SCHEDULED = "SCHEDULED"
ISSUED = "ISSUED"
PAID = "PAID"
OVERDUE = "OVERDUE"
VOID = "VOID"


@dataclass(frozen=True)
class RentInvoiceRow:
    id: str
    booking_id: str
    seq: int
    period_start: date
    period_end: date
    due_date: date
    rent: int
    late_fee: int
    refunded: int
    currency: str
    status: str
    issued_at: datetime | None
    paid_at: datetime | None
    payment_reference: str | None
    created_on: datetime
    updated_on: datetime

    @property
    def amount_due(self) -> int:
        return self.rent + self.late_fee

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> RentInvoiceRow:
        values = dict(record)
        values["currency"] = values["currency"].strip()
        return cls(**values)


INVOICE_COLUMNS = columns(RentInvoiceRow)


def invoice_id_for(booking_id: str, seq: int) -> str:
    return str(uuid.uuid5(_INVOICE_NAMESPACE, f"{booking_id}/{seq}"))


async def insert_schedule(
    conn: Conn,
    booking_id: str,
    periods: Sequence[RentPeriod],
    currency: str,
    *,
    first_paid: tuple[datetime, str] | None,
) -> None:
    """One invoice per period, SCHEDULED (the first PAID by ``first_paid``: when and by which
    reference the booking was paid); periods already written are left as they are."""
    rows = []
    for period in periods:
        paid = first_paid if period.seq == 0 else None
        rows.append(
            (
                invoice_id_for(booking_id, period.seq),
                booking_id,
                period.seq,
                period.period_start,
                period.period_end,
                period.due_date,
                period.rent,
                currency,
                PAID if paid else SCHEDULED,
                paid[0] if paid else None,
                paid[1] if paid else None,
            )
        )
    await conn.executemany(
        """INSERT INTO rent_invoices (id, booking_id, seq, period_start, period_end, due_date,
                                      rent, currency, status, paid_at, payment_reference)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           ON CONFLICT (booking_id, seq) DO NOTHING""",
        rows,
    )


async def invoices_for(conn: Conn, booking_id: str) -> list[RentInvoiceRow]:
    rows = await conn.fetch(
        f"SELECT {INVOICE_COLUMNS} FROM rent_invoices WHERE booking_id = $1 ORDER BY seq",
        booking_id,
    )
    return [RentInvoiceRow.from_record(r) for r in rows]


async def get_invoice(
    conn: Conn, invoice_id: str, *, for_update: bool = False
) -> RentInvoiceRow | None:
    lock = " FOR UPDATE" if for_update else ""
    record = await conn.fetchrow(
        f"SELECT {INVOICE_COLUMNS} FROM rent_invoices WHERE id = $1{lock}", invoice_id
    )
    return None if record is None else RentInvoiceRow.from_record(record)


async def issue(conn: Conn, invoice_id: str, at: datetime) -> bool:
    """SCHEDULED -> ISSUED."""
    result = await conn.execute(
        """UPDATE rent_invoices SET status = 'ISSUED', issued_at = $2, updated_on = now()
            WHERE id = $1 AND status = 'SCHEDULED'""",
        invoice_id,
        at,
    )
    return result == "UPDATE 1"


async def mark_overdue(conn: Conn, invoice_id: str, late_fee: int) -> bool:
    """ISSUED -> OVERDUE with its late fee (added once: only from ISSUED)."""
    result = await conn.execute(
        """UPDATE rent_invoices SET status = 'OVERDUE', late_fee = $2, updated_on = now()
            WHERE id = $1 AND status = 'ISSUED'""",
        invoice_id,
        late_fee,
    )
    return result == "UPDATE 1"


async def pay(conn: Conn, invoice_id: str, reference: str, at: datetime) -> bool:
    """SCHEDULED, ISSUED or OVERDUE -> PAID by ``reference``."""
    result = await conn.execute(
        """UPDATE rent_invoices
              SET status = 'PAID', paid_at = $3, payment_reference = $2, updated_on = now()
            WHERE id = $1 AND status IN ('SCHEDULED', 'ISSUED', 'OVERDUE')""",
        invoice_id,
        reference,
        at,
    )
    return result == "UPDATE 1"


async def applied_reference(conn: Conn, booking_id: str) -> str | None:
    """The reference of the payment that paid the booking (its first period)."""
    reference: str | None = await conn.fetchval(
        """SELECT payment_reference FROM payments
            WHERE booking_id = $1 AND outcome = 'APPLIED'""",
        booking_id,
    )
    return reference


async def rent_event_recorded(conn: Conn, booking_id: str, reason: str, key: str) -> bool:
    """Whether the booking's event log already has ``reason`` for ``key`` (an invoice and,
    for a reminder, its time): a step runs once however often its activity is retried."""
    found = await conn.fetchval(
        """SELECT 1 FROM booking_events
            WHERE booking_id = $1 AND reason = $2 AND details->>'key' = $3""",
        booking_id,
        reason,
        key,
    )
    return found is not None


async def touch(conn: Conn, invoice_id: str) -> None:
    """A reminder changes no column; touching the row announces it (the notify trigger)."""
    await conn.execute("UPDATE rent_invoices SET updated_on = now() WHERE id = $1", invoice_id)


async def resize(conn: Conn, invoice_id: str, period_end: date, rent: int) -> None:
    """A lease's end moved: the period it falls in ends there (a cut-short unpaid period costs
    its nights; a paid one keeps what it cost, the difference refunded by ``refund``)."""
    await conn.execute(
        """UPDATE rent_invoices SET period_end = $2, rent = $3, updated_on = now()
            WHERE id = $1 AND status <> 'VOID'""",
        invoice_id,
        period_end,
        rent,
    )


async def void(conn: Conn, invoice_id: str) -> None:
    """A period the lease no longer has (paid or not): VOID."""
    await conn.execute(
        """UPDATE rent_invoices SET status = 'VOID', updated_on = now()
            WHERE id = $1 AND status <> 'VOID'""",
        invoice_id,
    )


async def refund(conn: Conn, invoice_id: str, amount: int) -> None:
    await conn.execute(
        """UPDATE rent_invoices SET refunded = refunded + $2, updated_on = now()
            WHERE id = $1""",
        invoice_id,
        amount,
    )


async def booking_reference_used(conn: Conn, booking_id: str, reference: str) -> bool:
    """Whether ``reference`` was a payment of the booking itself (paid or refunded)."""
    found = await conn.fetchval(
        "SELECT 1 FROM payments WHERE booking_id = $1 AND payment_reference = $2",
        booking_id,
        reference,
    )
    return found is not None
