"""Mail to tenants (issue 25, WIP): the messages, the outbox's atomicity (a notification is
written with its event or not at all), and delivery against a real SMTP server (aiosmtpd):
accepted, refused for good (5xx: recorded, not retried), refused for now (4xx: retried)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from activities.mail import MailActivities
from booking.devstack.mailbox import LocalMailbox
from booking.devstack.net import free_port
from booking.mail import KINDS, MailFacts, money, render
from booking.maildir import messages
from booking.mailer import PermanentRefusal, SmtpConfig, send
from booking.store import bookings as booking_store
from booking.store import mail as store
from tests.helpers import make_rental
from tests.smtp import SmtpInbox


def test_money_is_shown_in_the_currency_from_minor_units() -> None:
    assert money(123_456, "EUR") == "1,234.56 EUR"
    assert money(5, "USD") == "0.05 USD"
    assert money(5_000, "JPY") == "5,000 JPY"
    assert money(1_234_567, "KWD") == "1,234.567 KWD"


@pytest.mark.parametrize("kind", KINDS)
def test_every_message_names_the_apartment_and_the_stay(kind: str) -> None:
    facts = MailFacts(
        apartment_id="apt-<9>",
        start_date=date(2027, 1, 1),
        end_date=date(2027, 4, 1),
        currency="EUR",
        amount_due=125_000,
        hold_expires_at=datetime(2026, 12, 6, 12, 0, tzinfo=UTC),
        details={
            "dueDate": "2027-02-01",
            "amount": 125_000,
            "paymentReference": "ref-1",
            "lateFee": 2_500,
            "refunded": 125_000,
        },
    )
    mail = render(kind, facts)
    for body in (mail.text, mail.html):
        assert "2027-01-01" in body and "2027-04-01" in body
    assert "apt-<9>" in mail.text and "apt-&lt;9&gt;" in mail.html  # escaped in HTML
    assert "<9>" not in mail.html
    if kind not in ("HOLD_EXPIRED", "OFFER_LAPSED", "WAITLIST_LAPSED", "LEASE_RENEWED"):
        assert "1,250.00 EUR" in mail.text


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpInbox, SmtpConfig]]:
    with SmtpInbox() as inbox:
        yield inbox, SmtpConfig(host=inbox.host, port=inbox.port)


async def _booking(pool: asyncpg.Pool, email_address: str | None = None) -> tuple[str, str]:
    rental = await make_rental(pool, monthly_rent=80_000)
    if email_address is not None:
        await pool.execute(
            "UPDATE users SET email = $2 WHERE id = $1", rental.user_id, email_address
        )
    booking_id = str(uuid.uuid4())
    today = datetime.now(UTC).date()
    await pool.execute(
        """INSERT INTO bookings (id, workflow_id, user_id, apartment_id, start_date, end_date,
                                 booking_status, amount_due, currency, hold_expires_at)
           VALUES ($1, $2, $3, $4, $5, $6, 'PENDING', 80000, 'EUR', now() + interval '1 hour')""",
        booking_id,
        f"booking-{booking_id}",
        rental.user_id,
        rental.apartment_id,
        today + timedelta(days=10),
        today + timedelta(days=20),
    )
    return booking_id, rental.user_id


async def test_a_notification_is_written_with_its_event_or_not_at_all(
    pool: asyncpg.Pool,
) -> None:
    booking_id, _ = await _booking(pool)
    async with pool.acquire() as conn:
        with pytest.raises(RuntimeError):
            async with conn.transaction():
                await booking_store.append_event(conn, booking_id, None, "PENDING", "RESERVED")
                raise RuntimeError("the transition rolls back")
        assert await store.pending_for(conn, booking_id) == []
        await booking_store.append_event(conn, booking_id, None, "PENDING", "RESERVED")
        # A transition nobody is told of writes none.
        await booking_store.append_event(conn, booking_id, "PENDING", "PENDING", "HOLD_EXTENDED")
        pending = await store.pending_for(conn, booking_id)
    assert [(n.kind, n.status, n.attempts) for n in pending] == [("HOLD_PLACED", "PENDING", 0)]
    assert pending[0].to_address is not None and pending[0].to_address.endswith("@example.com")


async def test_an_account_without_a_valid_address_gets_no_attempt(pool: asyncpg.Pool) -> None:
    booking_id, _ = await _booking(pool, email_address=f"not-an-address-{uuid.uuid4().hex}")
    async with pool.acquire() as conn:
        await booking_store.append_event(conn, booking_id, None, "PENDING", "RESERVED")
        assert await store.pending_for(conn, booking_id) == []
        row = await conn.fetchrow(
            "SELECT status, attempts, last_error FROM notifications WHERE booking_id = $1",
            booking_id,
        )
    assert row is not None
    assert (row["status"], row["attempts"]) == ("FAILED", 0)
    assert "no valid email" in row["last_error"]


async def test_delivery_accepted_refused_for_good_and_refused_for_now(
    pool: asyncpg.Pool, smtp: tuple[SmtpInbox, SmtpConfig]
) -> None:
    inbox, config = smtp
    outcomes = {}
    for local in ("tenant", "gone", "busy"):
        booking_id, _ = await _booking(
            pool, email_address=f"{local}-{uuid.uuid4().hex}@example.com"
        )
        async with pool.acquire() as conn:
            await booking_store.append_event(
                conn,
                booking_id,
                None,
                "PENDING",
                "RESERVED",
                {"holdExpiresAt": "2027-01-01T00:00:00+00:00"},
            )
            (notification,) = await store.pending_for(conn, booking_id)
        try:
            await send(config, notification)
            outcomes[local] = "sent"
        except PermanentRefusal as err:
            outcomes[local] = f"permanent: {err}"
        except Exception as err:  # a temporary refusal: the activity retries it
            outcomes[local] = f"retry: {type(err).__name__}"
        if local == "tenant":
            (message,) = inbox.deliveries
            assert message.message_id == notification.message_id
            assert message.to == notification.to_address
            assert "apartment" in message.subject.lower()
            assert message.text and message.html
    assert outcomes["tenant"] == "sent"
    assert outcomes["gone"].startswith("permanent:") and "550" in outcomes["gone"]
    assert outcomes["busy"].startswith("retry:")
    assert len(inbox.deliveries) == 1


async def test_send_pending_records_each_outcome(
    pool: asyncpg.Pool, smtp: tuple[SmtpInbox, SmtpConfig]
) -> None:
    """Sent: SENT at once; refused for good: FAILED with the reason, never again; refused for
    now: still PENDING with the attempt and reason recorded, and the call raises (retried)."""
    inbox, config = smtp
    mail = MailActivities(pool, config)
    outcomes: dict[str, tuple[str, int, str | None]] = {}
    for local in ("tenant", "gone", "busy"):
        address = f"{local}-{uuid.uuid4().hex}@example.com"
        booking_id, _ = await _booking(pool, email_address=address)
        async with pool.acquire() as conn:
            await booking_store.append_event(conn, booking_id, None, "PENDING", "RESERVED")
            await booking_store.append_event(conn, booking_id, "PENDING", "APPROVED", "PAID")
        try:
            sent = await mail.send_pending(booking_id)
        except Exception:
            sent = -1
        row = await pool.fetchrow(
            "SELECT string_agg(status, ',' ORDER BY id) AS statuses, sum(attempts) AS attempts, "
            "max(last_error) AS error FROM notifications WHERE booking_id = $1",
            booking_id,
        )
        assert row is not None
        outcomes[local] = (f"{sent}:{row['statuses']}", int(row["attempts"]), row["error"])
        again = await mail.send_pending(booking_id) if local != "busy" else None
        assert again in (0, None)  # nothing sent twice
    assert outcomes["tenant"] == ("2:SENT,SENT", 2, None)
    assert outcomes["gone"][:2] == ("0:FAILED,FAILED", 2) and "550" in str(outcomes["gone"][2])
    assert outcomes["busy"][:2] == ("-1:PENDING,PENDING", 1) and "451" in str(outcomes["busy"][2])
    assert len(inbox.deliveries) == 2


async def test_the_dev_mailbox_keeps_each_message_once(pool: asyncpg.Pool, tmp_path: Path) -> None:
    """`booking dev`'s mailbox: what the worker sends lands under the data directory, plain
    text and HTML; the same message sent again (a retry after a crash) is kept once."""
    mailbox = LocalMailbox(tmp_path / "mailbox", port=free_port())
    mailbox.start()
    try:
        config = SmtpConfig(host=mailbox.host, port=mailbox.port)
        booking_id, _ = await _booking(pool)
        async with pool.acquire() as conn:
            await booking_store.append_event(conn, booking_id, None, "PENDING", "RESERVED")
            (notification,) = await store.pending_for(conn, booking_id)
        await send(config, notification)
        await send(config, notification)
    finally:
        mailbox.stop()
    (kept,) = messages(tmp_path / "mailbox")
    assert kept.message_id == notification.message_id
    assert kept.to == notification.to_address
    assert "apartment" in kept.subject.lower() and kept.html is not None
    assert notification.apartment_id in kept.text and notification.apartment_id in kept.html
