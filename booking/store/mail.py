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


async def pending_for(conn: Conn, booking_id: str) -> list[Notification]:
    """The booking's notifications still to send, oldest first (read, not locked: the sender
    takes each with :func:`take`)."""
    rows = await conn.fetch(
        """SELECT n.id, n.kind, n.to_address, n.message_id, n.status, n.attempts,
                  b.apartment_id, b.start_date, b.end_date, b.currency, b.amount_due,
                  b.hold_expires_at, e.details::text AS details
             FROM notifications n
             JOIN bookings b ON b.id = n.booking_id
             JOIN booking_events e ON e.id = n.event_id
            WHERE n.booking_id = $1 AND n.status = 'PENDING'
            ORDER BY n.id""",
        booking_id,
    )
    found = []
    for row in rows:
        values = dict(row)
        values["currency"] = values["currency"].strip()
        values["details"] = json.loads(values["details"])
        found.append(Notification(**values))
    return found


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
