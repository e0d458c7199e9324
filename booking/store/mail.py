"""SQL for the mail outbox (0007_mail.sql): notifications written by a trigger with the event
they report, sent by the worker's mail activity."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from booking.store import Conn


@dataclass(frozen=True)
class Notification:
    id: int
    kind: str
    to_address: str | None
    message_id: str
    status: str
    attempts: int
    # The stay it is about.
    apartment_id: str
    start_date: date
    end_date: date
    currency: str
    amount_due: int | None
    hold_expires_at: datetime | None
    details: dict[str, Any]


_PENDING = """SELECT n.id, n.kind, n.to_address, n.message_id, n.status, n.attempts,
                  coalesce(b.apartment_id, w.apartment_id) AS apartment_id,
                  coalesce(b.start_date, w.start_date) AS start_date,
                  coalesce(b.end_date, w.end_date) AS end_date,
                  coalesce(b.currency, a.currency) AS currency, b.amount_due,
                  b.hold_expires_at, e.details::text AS details
             FROM notifications n
             JOIN booking_events e ON e.id = n.event_id
             LEFT JOIN bookings b ON b.id = n.booking_id
             LEFT JOIN waitlist_entries w ON w.id = n.waitlist_entry_id
             JOIN apartments a ON a.id = coalesce(b.apartment_id, w.apartment_id)
            WHERE n.status = 'PENDING' AND"""


async def pending_for(
    conn: Conn, booking_id: str | None = None, *, entry_id: str | None = None
) -> list[Notification]:
    """A booking's notifications still to send (an offer's included), or with ``entry_id`` a
    waiting-list entry's that concern no booking; oldest first. Read, not locked: the sender
    takes each with :func:`take`."""
    if booking_id is not None:
        rows = await conn.fetch(f"{_PENDING} n.booking_id = $1 ORDER BY n.id", booking_id)
    else:
        rows = await conn.fetch(
            f"{_PENDING} n.waitlist_entry_id = $1 AND n.booking_id IS NULL ORDER BY n.id",
            entry_id,
        )
    return [_notification(row) for row in rows]


def _notification(row: Any) -> Notification:
    values = dict(row)
    values["currency"] = values["currency"].strip()
    values["details"] = json.loads(values["details"])
    return Notification(**values)


async def mark_sent(conn: Conn, notification_id: int) -> None:
    await conn.execute(
        """UPDATE notifications SET status = 'SENT', sent_on = now(), attempts = attempts + 1,
                  last_error = NULL
            WHERE id = $1 AND status = 'PENDING'""",
        notification_id,
    )


async def mark_failed(conn: Conn, notification_id: int, reason: str) -> None:
    """Refused for good (a 5xx): recorded, never tried again."""
    await conn.execute(
        """UPDATE notifications SET status = 'FAILED', attempts = attempts + 1, last_error = $2
            WHERE id = $1 AND status = 'PENDING'""",
        notification_id,
        reason,
    )


async def mark_attempt(conn: Conn, notification_id: int, reason: str) -> None:
    """A temporary refusal or a connection error: still PENDING, to be tried again."""
    await conn.execute(
        """UPDATE notifications SET attempts = attempts + 1, last_error = $2
            WHERE id = $1 AND status = 'PENDING'""",
        notification_id,
        reason,
    )


async def take(conn: Conn, notification_id: int) -> bool:
    """Lock one notification for its send (in the caller's transaction); False when another
    sender holds it or it is no longer PENDING."""
    found = await conn.fetchval(
        """SELECT 1 FROM notifications WHERE id = $1 AND status = 'PENDING'
              FOR UPDATE SKIP LOCKED""",
        notification_id,
    )
    return found is not None


async def pending_by_id(conn: Conn, ids: list[int]) -> list[Notification]:
    """These notifications, those still PENDING, oldest first (booking doctor's repair)."""
    rows = await conn.fetch(f"{_PENDING} n.id = ANY($1::bigint[]) ORDER BY n.id", ids)
    return [_notification(row) for row in rows]


@dataclass(frozen=True)
class MailProblem:
    """A notification stuck PENDING, or FAILED (booking doctor)."""

    id: int
    kind: str
    status: str
    to_address: str | None
    attempts: int
    last_error: str | None
    created_on: datetime
    booking_id: str | None
    waitlist_entry_id: str | None
    apartment_id: str


async def mail_problems(conn: Conn, stuck_seconds: int, failed_days: int) -> list[MailProblem]:
    """PENDING for longer than ``stuck_seconds``, and FAILED in the last ``failed_days``."""
    rows = await conn.fetch(
        """SELECT n.id, n.kind, n.status, n.to_address, n.attempts, n.last_error, n.created_on,
                  n.booking_id, n.waitlist_entry_id,
                  coalesce(b.apartment_id, w.apartment_id) AS apartment_id
             FROM notifications n
             LEFT JOIN bookings b ON b.id = n.booking_id
             LEFT JOIN waitlist_entries w ON w.id = n.waitlist_entry_id
            WHERE (n.status = 'PENDING'
                   AND n.created_on < now() - make_interval(secs => $1::int))
               OR (n.status = 'FAILED'
                   AND n.created_on >= now() - make_interval(days => $2::int))
            ORDER BY n.id""",
        stuck_seconds,
        failed_days,
    )
    return [MailProblem(**dict(row)) for row in rows]


@dataclass(frozen=True)
class MailCounts:
    pending: int
    sent: int
    failed: int
    oldest_pending_seconds: float


async def counts(conn: Conn) -> MailCounts:
    """How many notifications are in each state, and how long the oldest PENDING has waited
    (the API's metrics)."""
    row = await conn.fetchrow(
        """SELECT count(*) FILTER (WHERE status = 'PENDING') AS pending,
                  count(*) FILTER (WHERE status = 'SENT') AS sent,
                  count(*) FILTER (WHERE status = 'FAILED') AS failed,
                  coalesce(extract(epoch FROM now() - min(created_on)
                                   FILTER (WHERE status = 'PENDING')), 0)::float8 AS oldest
             FROM notifications"""
    )
    assert row is not None
    return MailCounts(row["pending"], row["sent"], row["failed"], row["oldest"])
