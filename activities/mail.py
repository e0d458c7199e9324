"""Mail to tenants: the notifications a booking's transitions wrote (its outbox rows), sent over
SMTP. One message per notification, with the notification's own Message-ID on every attempt.

WIP (issue 25): not yet called by the workflows; ``send`` is the delivery rule, tested against
a real SMTP server.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiosmtplib

from booking.mail import Mail, MailFacts, render
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


class MailActivities:
    """Sends a booking's pending notifications (WIP: the workflows do not call it yet)."""

    def __init__(self, pool: Any, config: SmtpConfig | None) -> None:
        self._pool = pool
        self._config = config

    async def send_pending(self, booking_id: str) -> int:
        """Every PENDING notification of the booking, in order; how many were sent. A 5xx is
        recorded FAILED; anything else leaves the rest PENDING and raises (retried)."""
        if self._config is None:
            return 0
        sent = 0
        async with self._pool.acquire() as conn:
            for notification in await store.pending_for(conn, booking_id):
                # One transaction per message: a message the server accepted is marked SENT
                # at once, whatever happens to the next one.
                failure: Exception | None = None
                async with conn.transaction():
                    if not await store.take(conn, notification.id):
                        continue
                    try:
                        await send(self._config, notification)
                    except PermanentRefusal as err:
                        await store.mark_failed(conn, notification.id, str(err))
                        continue
                    except Exception as err:  # temporary: recorded, then retried
                        failure = err
                        reason = f"{type(err).__name__}: {err}"
                        await store.mark_attempt(conn, notification.id, reason)
                    else:
                        await store.mark_sent(conn, notification.id)
                        sent += 1
                if failure is not None:
                    raise failure
        return sent
