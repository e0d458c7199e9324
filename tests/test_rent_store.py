"""Rent invoices in Postgres (0006, booking.store.rent): the schedule is written once, each
transition happens once from the status it expects, and a reference pays one invoice."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import asyncpg
import pytest

from booking.rent import rent_periods
from booking.store import rent as store
from tests.helpers import make_rental


async def _approved_lease(pool: asyncpg.Pool) -> tuple[str, list[store.RentInvoiceRow]]:
    rental = await make_rental(pool, monthly_rent=100_000)
    booking_id = str(uuid.uuid4())
    start, end = date(2031, 1, 31), date(2031, 5, 15)
    paid_at = datetime(2031, 1, 20, tzinfo=UTC)
    await pool.execute(
        """INSERT INTO bookings (id, workflow_id, user_id, apartment_id, start_date, end_date,
                                 booking_status, amount_due, currency, paid_at, monthly_rent)
           VALUES ($1, $2, $3, $4, $5, $6, 'APPROVED', 100000, 'EUR', $7, 100000)""",
        booking_id,
        f"booking-{booking_id}",
        rental.user_id,
        rental.apartment_id,
        start,
        end,
        paid_at,
    )
    periods = rent_periods(start, end, 100_000, 100_000)
    async with pool.acquire() as conn:
        for _ in range(2):  # a retry writes nothing more
            await store.insert_schedule(
                conn, booking_id, periods, "EUR", first_paid=(paid_at, "first")
            )
        return booking_id, await store.invoices_for(conn, booking_id)


async def test_the_schedule_is_written_once_the_first_period_paid(pool: asyncpg.Pool) -> None:
    booking_id, invoices = await _approved_lease(pool)
    assert [(i.seq, i.status, i.rent, i.due_date) for i in invoices] == [
        (0, "PAID", 100_000, date(2031, 1, 31)),
        (1, "SCHEDULED", 100_000, date(2031, 2, 28)),
        (2, "SCHEDULED", 100_000, date(2031, 3, 31)),
        (3, "SCHEDULED", 50_000, date(2031, 4, 30)),
    ]
    assert invoices[0].payment_reference == "first"
    assert len({i.id for i in invoices}) == 4
    assert invoices[1].id == store.invoice_id_for(booking_id, 1)


async def test_each_transition_happens_once_from_the_status_it_expects(pool: asyncpg.Pool) -> None:
    booking_id, invoices = await _approved_lease(pool)
    second, third, last = invoices[1], invoices[2], invoices[3]
    at = datetime(2031, 2, 21, tzinfo=UTC)
    async with pool.acquire() as conn:
        assert not await store.mark_overdue(conn, second.id, 5_000)  # not issued yet
        assert await store.issue(conn, second.id, at)
        assert not await store.issue(conn, second.id, at)
        assert await store.mark_overdue(conn, second.id, 5_000)
        assert not await store.mark_overdue(conn, second.id, 5_000)  # never compounds
        assert await store.pay(conn, second.id, "rent-2", at)
        assert not await store.pay(conn, second.id, "rent-2-again", at)
        # Paying ahead: a SCHEDULED invoice may be paid.
        assert await store.pay(conn, third.id, "rent-3", at)
        # A reference pays one invoice of a booking.
        with pytest.raises(asyncpg.UniqueViolationError):
            await store.pay(conn, last.id, "rent-3", at)
        await store.void(conn, last.id)
        rows = {i.seq: i for i in await store.invoices_for(conn, booking_id)}
    assert (rows[1].status, rows[1].late_fee, rows[1].amount_due) == ("PAID", 5_000, 105_000)
    assert rows[2].status == "PAID" and rows[3].status == "VOID"
