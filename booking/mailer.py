"""Sending the outbox's notifications over SMTP (``aiosmtplib``): the delivery rule, shared by
the worker's mail activity (``activities.mail``) and ``booking doctor --repair`` (mail whose
workflow will never send it).

One message per notification, with the notification's own Message-ID on every attempt. Each
message is its own transaction: taken under a row lock (``SKIP LOCKED``: two senders never
send one message at once), handed to the server, marked SENT. A sender that dies between the
server's "250" and that commit leaves the row PENDING, and the next attempt sends the same
message again with the same Message-ID, which a mailbox shows once. A 5xx answer is FAILED for
good, with the server's words; a 4xx or a connection error is recorded on the row and raised,
to be retried.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from booking.mail import Mail, MailFacts, render
from booking.settings import Settings
from booking.store import mail as store
from booking.store.mail import Notification


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 25
    username: str | None = None
    password: str | None = None
    start_tls: bool = False
    use_tls: bool = False
    sender: str = "Apartment booking <booking@localhost>"
    timeout: float = 10.0


class PermanentRefusal(Exception):
    """The server refused the message for good (a 5xx): recorded, never retried."""


def message_for(notification: Notification, mail: Mail, sender: str) -> EmailMessage:
    assert notification.to_address is not None
    message = EmailMessage()
    message["From"] = sender
    message["To"] = notification.to_address
    message["Subject"] = mail.subject
    message["Message-ID"] = notification.message_id
    message.set_content(mail.text)
    message.add_alternative(mail.html, subtype="html")
    return message


def mail_for(notification: Notification) -> Mail:
    return render(
        notification.kind,
        MailFacts(
            apartment_id=notification.apartment_id,
            start_date=notification.start_date,
            end_date=notification.end_date,
            currency=notification.currency,
            amount_due=notification.amount_due,
            hold_expires_at=notification.hold_expires_at,
            details=notification.details,
        ),
    )


async def send(config: SmtpConfig, notification: Notification) -> None:
    """Hand one notification to the SMTP server. PermanentRefusal for a 5xx answer; any other
    failure (a 4xx, a connection error, a timeout) is raised as it came, to be retried."""
    message = message_for(notification, mail_for(notification), config.sender)
    try:
        await aiosmtplib.send(
            message,
            hostname=config.host,
            port=config.port,
            username=config.username,
            password=config.password,
            start_tls=config.start_tls,
            use_tls=config.use_tls,
            timeout=config.timeout,
        )
    except aiosmtplib.SMTPRecipientsRefused as err:
        codes = [refusal.code for refusal in err.recipients]
        if codes and all(code >= 500 for code in codes):
            raise PermanentRefusal(str(err)) from err
        raise
    except aiosmtplib.SMTPResponseException as err:
        if err.code >= 500:
            raise PermanentRefusal(f"{err.code} {err.message}") from err
        raise


@dataclass
class Delivery:
    """What one call of :func:`deliver` did."""

    sent: int = 0
    failed: int = 0  # refused for good
    deferred: int = 0  # refused for now or unreachable: still PENDING, retried


async def deliver(
    pool: Any,
    config: SmtpConfig,
    notifications: list[Notification],
    delivery: Delivery | None = None,
    *,
    before_each: Callable[[Notification], None] | None = None,
) -> int:
    """Send ``notifications`` in order; how many were sent. A 5xx is recorded FAILED; any
    other failure is recorded, leaves the rest PENDING and is raised (to be retried)."""
    delivery = delivery or Delivery()
    async with pool.acquire() as conn:
        for notification in notifications:
            if before_each is not None:
                before_each(notification)
            # One transaction per message: a message the server accepted is marked SENT at
            # once, whatever happens to the next one.
            failure: Exception | None = None
            async with conn.transaction():
                if not await store.take(conn, notification.id):
                    continue  # another sender has it, or it was settled meanwhile
                try:
                    await send(config, notification)
                except PermanentRefusal as err:
                    await store.mark_failed(conn, notification.id, str(err))
                    delivery.failed += 1
                    continue
                except Exception as err:  # temporary: recorded, then retried
                    failure = err
                    reason = f"{type(err).__name__}: {err}"
                    await store.mark_attempt(conn, notification.id, reason[:500])
                    delivery.deferred += 1
                else:
                    await store.mark_sent(conn, notification.id)
                    delivery.sent += 1
            if failure is not None:
                raise failure
    return delivery.sent


def smtp_config(settings: Settings) -> SmtpConfig | None:
    """The worker's mail server, from its settings; None when BOOKING_SMTP_HOST is unset."""
    if not settings.smtp_host:
        return None
    return SmtpConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        username=settings.smtp_username,
        password=settings.smtp_password,
        start_tls=settings.smtp_starttls,
        use_tls=settings.smtp_tls,
        sender=settings.mail_from,
    )
