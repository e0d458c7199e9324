"""SQL for bookings, payments, refunds and the booking event log.

Each function is one statement on a connection the caller owns, so an activity composes
several into one transaction. Status changes go through functions that take the expected
current status, so that a stale caller changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

from booking.calendar import Stay
from booking.contract import BookingInput
from booking.store import Conn, columns


@dataclass(frozen=True)
class BookingRow:
    id: str
    workflow_id: str
    user_id: str
    apartment_id: str
    start_date: date
    end_date: date
    booking_status: str
    amount_due: int
    currency: str
    hold_expires_at: datetime | None
    paid_at: datetime | None
    cancellation_reason: str | None
    lease_ended_at: datetime | None
    idempotency_key: str | None
    created_on: datetime
    update_on: datetime
    hold_extensions: int = 0
    # The rent the stay was booked at (0006; None only for rows written by hand).
    monthly_rent: int | None = None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> BookingRow:
        values = dict(record)
        values["currency"] = values["currency"].strip()
        return cls(**values)


@dataclass(frozen=True)
class PaymentRow:
    id: int
    booking_id: str
    payment_reference: str
    amount: int
    currency: str
    outcome: str
    received_at: datetime


@dataclass(frozen=True)
class RentTerms:
    monthly_rent: int
    currency: str
    # Let outside this service (an Admin's OCCUPIED): no stay can be booked.
    let_outside: bool = False


@dataclass(frozen=True)
class ReservationFacts:
    """What a reserve decides by, read together (one round trip) under the tenant's lock."""

    # A row with this booking's id exists: a retry of its own commit, or a waiting-list offer.
    placed: bool
    # The tenant's open holds that count against its limit: waiting-list offers do not (the
    # tenant queued for them; the limit is on holds a tenant grabs).
    held: int
    # The apartment's terms (``rent_terms``); None: no such apartment.
    terms: RentTerms | None
    # A live stay sharing a night with the range (``calendar.live_overlap``).
    clash: Stay | None


BOOKING_COLUMNS = columns(BookingRow)


async def bound_transaction(conn: Conn, *, lock_timeout_ms: int, statement_timeout_ms: int) -> None:
    """Bound how long the caller's open transaction may wait on a lock or run one statement.

    ``is_local`` (true) scopes both to this transaction, so a pooled connection goes back clean.
    """
    await conn.execute(
        """SELECT set_config('lock_timeout', $1, true),
                  set_config('statement_timeout', $2, true)""",
        f"{lock_timeout_ms}ms",
        f"{statement_timeout_ms}ms",
    )


async def get_booking(
    conn: Conn, booking_id: str, *, for_update: bool = False
) -> BookingRow | None:
    lock = " FOR UPDATE" if for_update else ""
    record = await conn.fetchrow(
        f"SELECT {BOOKING_COLUMNS} FROM bookings WHERE id = $1{lock}", booking_id
    )
    return None if record is None else BookingRow.from_record(record)


async def rent_terms(conn: Conn, apartment_id: str) -> RentTerms | None:
    """The apartment's rent and whether it is let outside this service; None: no apartment."""
    record = await conn.fetchrow(
        """SELECT monthly_rent, currency, apartment_status = 'OCCUPIED' AS let_outside
             FROM apartments WHERE id = $1""",
        apartment_id,
    )
    return _terms(record)


async def booked_rent(conn: Conn, booking: BookingRow) -> int:
    """The monthly rent a stay was booked at (part of its terms); a row written without it
    (by hand) takes the apartment's rent now, or what paying the stay cost."""
    if booking.monthly_rent is not None:
        return booking.monthly_rent
    terms = await rent_terms(conn, booking.apartment_id)
    return terms.monthly_rent if terms else booking.amount_due


async def share_apartment(conn: Conn, apartment_id: str) -> RentTerms | None:
    """The apartment's terms, its row locked against a release until the caller commits
    (a release takes it for update before it looks at the waiting list)."""
    record = await conn.fetchrow(
        """SELECT monthly_rent, currency, apartment_status = 'OCCUPIED' AS let_outside
             FROM apartments WHERE id = $1 FOR SHARE""",
        apartment_id,
    )
    return _terms(record)


def _terms(record: asyncpg.Record | None) -> RentTerms | None:
    if record is None:
        return None
    return RentTerms(
        int(record["monthly_rent"]), str(record["currency"]).strip(), bool(record["let_outside"])
    )


async def reservation_facts(conn: Conn, booking: BookingInput) -> ReservationFacts:
    """Everything a reserve checks before its insert, in one statement (one snapshot).

    The terms read as ``rent_terms`` does and the clash as ``calendar.live_overlap`` does: a
    reserve is a round trip per statement, and its latency is mostly those (BENCHMARKS.md).
    """
    record = await conn.fetchrow(
        """SELECT EXISTS (SELECT 1 FROM bookings WHERE id = $1) AS placed,
                  (SELECT count(*) FROM bookings b
                    WHERE b.user_id = $2 AND b.booking_status = 'PENDING'
                      AND NOT EXISTS (SELECT 1 FROM waitlist_entries w
                                       WHERE w.offered_booking_id = b.id)) AS held,
                  a.id IS NOT NULL AS found, a.monthly_rent, a.currency,
                  a.apartment_status = 'OCCUPIED' AS let_outside,
                  s.id AS clash_id, s.user_id AS clash_user_id,
                  s.start_date AS clash_start_date, s.end_date AS clash_end_date,
                  s.booking_status AS clash_status, s.lease_ended_at AS clash_lease_ended_at
             FROM (VALUES (1)) AS one (x)
             LEFT JOIN apartments a ON a.id = $3
             LEFT JOIN LATERAL (
                  SELECT id, user_id, start_date, end_date, booking_status, lease_ended_at
                    FROM bookings
                   WHERE apartment_id = $3 AND stay && daterange($4, $5)
                     AND (booking_status = 'PENDING'
                          OR (booking_status = 'APPROVED' AND lease_ended_at IS NULL))
                   ORDER BY start_date
                   LIMIT 1) s ON true""",
        booking.booking_id,
        booking.user_id,
        booking.apartment_id,
        booking.start_date,
        booking.end_date,
    )
    assert record is not None  # one row always: the facts of a missing apartment are NULLs
    clash = None
    if record["clash_id"] is not None:
        clash = Stay(
            record["clash_id"],
            record["clash_user_id"],
            record["clash_start_date"],
            record["clash_end_date"],
            record["clash_status"],
            record["clash_lease_ended_at"],
        )
    return ReservationFacts(
        placed=bool(record["placed"]),
        held=int(record["held"]),
        terms=_terms(record) if record["found"] else None,
        clash=clash,
    )


async def insert_booking(
    conn: Conn,
    booking: BookingInput,
    *,
    workflow_id: str,
    amount_due: int,
    currency: str,
    hold_expires_at: datetime,
    monthly_rent: int,
    reason: str,
    details: dict[str, Any],
) -> None:
    """The PENDING row and its first event (``reason``: why it was placed), one statement."""
    await conn.execute(
        """WITH placed AS (
               INSERT INTO bookings (id, workflow_id, user_id, apartment_id, start_date,
                                     end_date, booking_status, amount_due, currency,
                                     hold_expires_at, idempotency_key, monthly_rent)
               VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', $7, $8, $9, $10, $11)
               RETURNING id)
           INSERT INTO booking_events (booking_id, from_status, to_status, reason, details)
           SELECT id, NULL, 'PENDING', $12, $13::jsonb FROM placed""",
        booking.booking_id,
        workflow_id,
        booking.user_id,
        booking.apartment_id,
        booking.start_date,
        booking.end_date,
        amount_due,
        currency,
        hold_expires_at,
        booking.idempotency_key,
        monthly_rent,
        reason,
        json.dumps(details),
    )


async def approve_paid(
    conn: Conn,
    booking_id: str,
    *,
    reference: str,
    amount: int,
    currency: str,
    paid_at: datetime,
) -> bool:
    """PENDING -> APPROVED with its APPLIED payment and the PAID event, in one statement;
    False (nothing written) when the booking is not PENDING."""
    approved: str | None = await conn.fetchval(
        """WITH approved AS (
               UPDATE bookings
                  SET booking_status = 'APPROVED', paid_at = $2, update_on = now()
                WHERE id = $1 AND booking_status = 'PENDING'
            RETURNING id),
           paid AS (
               INSERT INTO payments (booking_id, payment_reference, amount, currency, outcome,
                                     received_at)
               SELECT id, $3, $4, $5, 'APPLIED', $2 FROM approved)
           INSERT INTO booking_events (booking_id, from_status, to_status, reason, details)
           SELECT id, 'PENDING', 'APPROVED', 'PAID', $6::jsonb FROM approved
        RETURNING booking_id""",
        booking_id,
        paid_at,
        reference,
        amount,
        currency,
        json.dumps({"paymentReference": reference}),
    )
    return approved is not None


async def cancel_booking(conn: Conn, booking_id: str, reason: str) -> bool:
    result = await conn.execute(
        """UPDATE bookings
              SET booking_status = 'CANCELLED', cancellation_reason = $2, update_on = now()
            WHERE id = $1 AND booking_status = 'PENDING'""",
        booking_id,
        reason,
    )
    return result == "UPDATE 1"


async def end_lease(conn: Conn, booking_id: str, ended_at: datetime) -> bool:
    result = await conn.execute(
        """UPDATE bookings
              SET lease_ended_at = $2, update_on = now()
            WHERE id = $1 AND booking_status = 'APPROVED' AND lease_ended_at IS NULL""",
        booking_id,
        ended_at,
    )
    return result == "UPDATE 1"


async def move_end(conn: Conn, booking_id: str, end_date: date) -> None:
    """A running stay's move-out day moves (endLease, renewLease); the exclusion constraint
    refuses a later day whose nights another live stay has."""
    await conn.execute(
        """UPDATE bookings SET end_date = $2, update_on = now()
            WHERE id = $1 AND booking_status = 'APPROVED' AND lease_ended_at IS NULL""",
        booking_id,
        end_date,
    )


async def touch_and_notify(conn: Conn, booking_id: str) -> None:
    """Announce a change no status column shows (a stay's first night): the booking's
    ``update_on`` moves, so subscribers read it (and its apartment) again."""
    await conn.execute(
        """WITH touched AS (
               UPDATE bookings SET update_on = now() WHERE id = $1
            RETURNING id, booking_status, apartment_id)
           SELECT pg_notify('booking_status', json_build_object(
                      'id', id, 'status', booking_status, 'apartmentId', apartment_id)::text)
             FROM touched""",
        booking_id,
    )


async def append_event(
    conn: Conn,
    booking_id: str | None,
    from_status: str | None,
    to_status: str,
    reason: str,
    details: dict[str, Any] | None = None,
    *,
    waitlist_entry_id: str | None = None,
) -> None:
    """One transition: a booking's, or (with ``waitlist_entry_id``) a waiting-list entry's,
    whose statuses ``from_status`` / ``to_status`` then are (``booking_id``: its offer)."""
    await conn.execute(
        """INSERT INTO booking_events (booking_id, from_status, to_status, reason, details,
                                       waitlist_entry_id)
           VALUES ($1, $2, $3, $4, $5::jsonb, $6)""",
        booking_id,
        from_status,
        to_status,
        reason,
        json.dumps(details or {}),
        waitlist_entry_id,
    )


async def event_details(conn: Conn, booking_id: str, reason: str) -> dict[str, Any] | None:
    """The details of the booking's last transition for ``reason`` (what a retry finds)."""
    raw: str | None = await conn.fetchval(
        """SELECT details::text FROM booking_events
            WHERE booking_id = $1 AND reason = $2 AND waitlist_entry_id IS NULL
            ORDER BY id DESC LIMIT 1""",
        booking_id,
        reason,
    )
    if raw is None:
        return None
    details: dict[str, Any] = json.loads(raw)
    return details


async def lock_user(conn: Conn, user_id: str) -> bool:
    """Lock the user's row for this transaction (False: no such user).

    The reserve step takes it first, so that one tenant's concurrent reserves count the
    tenant's holds one after the other.
    """
    found = await conn.fetchval("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id)
    return found is not None


async def extend_hold(conn: Conn, booking_id: str, hold_expires_at: datetime) -> bool:
    result = await conn.execute(
        """UPDATE bookings
              SET hold_expires_at = $2, hold_extensions = hold_extensions + 1,
                  update_on = now()
            WHERE id = $1 AND booking_status = 'PENDING'""",
        booking_id,
        hold_expires_at,
    )
    return result == "UPDATE 1"


async def lock_apartment(conn: Conn, apartment_id: str) -> RentTerms | None:
    """Lock the apartment's row (a release takes it before it looks at the waiting list)."""
    record = await conn.fetchrow(
        """SELECT monthly_rent, currency, apartment_status = 'OCCUPIED' AS let_outside
             FROM apartments WHERE id = $1 FOR UPDATE""",
        apartment_id,
    )
    return _terms(record)


async def get_payment_by_reference(
    conn: Conn, booking_id: str, reference: str
) -> PaymentRow | None:
    record = await conn.fetchrow(
        """SELECT id, booking_id, payment_reference, amount, currency, outcome, received_at
             FROM payments WHERE booking_id = $1 AND payment_reference = $2""",
        booking_id,
        reference,
    )
    if record is None:
        return None
    values = dict(record)
    values["currency"] = values["currency"].strip()
    return PaymentRow(**values)


async def insert_payment(
    conn: Conn,
    *,
    booking_id: str,
    reference: str,
    amount: int,
    currency: str,
    outcome: str,
    received_at: datetime,
) -> int:
    payment_id: int = await conn.fetchval(
        """INSERT INTO payments (booking_id, payment_reference, amount, currency, outcome,
                                 received_at)
           VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING id""",
        booking_id,
        reference,
        amount,
        currency,
        outcome,
        received_at,
    )
    return payment_id


async def insert_refund(
    conn: Conn,
    *,
    payment_id: int,
    booking_id: str,
    amount: int,
    currency: str,
    reason: str,
) -> tuple[int, bool]:
    """(refund id, created): a second call for the same payment returns the first refund."""
    refund_id: int | None = await conn.fetchval(
        """INSERT INTO refunds (payment_id, booking_id, amount, currency, reason)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (payment_id) DO NOTHING
        RETURNING id""",
        payment_id,
        booking_id,
        amount,
        currency,
        reason,
    )
    if refund_id is not None:
        return refund_id, True
    existing: int = await conn.fetchval("SELECT id FROM refunds WHERE payment_id = $1", payment_id)
    return existing, False


async def record_step_function_execution(conn: Conn, execution_id: str, arn: str) -> None:
    await conn.execute(
        """INSERT INTO step_function_executions (id, arn) VALUES ($1, $2)
           ON CONFLICT (id) DO NOTHING""",
        execution_id,
        arn,
    )


async def insert_unplaced_payment(
    conn: Conn,
    *,
    booking_id: str,
    reference: str,
    amount: int,
    currency: str,
    received_at: datetime,
    reason: str,
) -> bool:
    """Record money for a booking that has no row; False when it was recorded before."""
    inserted: int | None = await conn.fetchval(
        """INSERT INTO unplaced_payments (booking_id, payment_reference, amount, currency,
                                          received_at, refund_reason)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (booking_id, payment_reference) DO NOTHING
        RETURNING id""",
        booking_id,
        reference,
        amount,
        currency,
        received_at,
        reason,
    )
    return inserted is not None
