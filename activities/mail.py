"""Mail to tenants: the notifications a booking's transitions wrote (its outbox rows), sent over
SMTP. One message per notification, with the notification's own Message-ID on every attempt.

The workflow whose transition wrote a notification runs ``send_mail`` after it, in the
background (a mail server that is down delays mail, never a booking), with Temporal's retries
and backoff. Each message is its own transaction: taken under a row lock, handed to the
server, marked SENT. A worker that dies between the server's "250" and that commit leaves the
row PENDING, and the retry sends the same message again with the same Message-ID, which a
mailbox keeps once (``booking.devstack.mailbox`` does). A 5xx answer is FAILED for good, with
the server's words; a 4xx or a connection error is recorded on the row and retried.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import aiosmtplib
from temporalio import activity

from booking.contract import SEND_MAIL, MailRequest
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
    """What one call of :meth:`MailActivities.send_pending` did."""

    sent: int = 0
    failed: int = 0  # refused for good
    deferred: int = 0  # refused for now or unreachable: still PENDING, retried


class MailActivities:
    """Sends the pending notifications of a booking or of a waiting-list entry."""

    def __init__(self, pool: Any, config: SmtpConfig | None) -> None:
        self._pool = pool
        self._config = config

    def all(self) -> list[Any]:
        return [self.send_mail]

    @activity.defn(name=SEND_MAIL)
    async def send_mail(self, request: MailRequest) -> int:
        """Every PENDING notification of the booking (or entry), oldest first; how many were
        sent. Raises (to be retried) after recording a temporary failure."""
        delivery = Delivery()
        try:
            await self.send_pending(
                request.booking_id, entry_id=request.waitlist_entry_id, delivery=delivery
            )
        finally:
            meter = activity.metric_meter()
            for name, value in (
                ("booking_mail_sent", delivery.sent),
                ("booking_mail_failed", delivery.failed),
                ("booking_mail_deferred", delivery.deferred),
            ):
                if value:
                    meter.create_counter(name, "notifications, by outcome").add(value)
        return delivery.sent

    async def send_pending(
        self,
        booking_id: str | None,
        *,
        entry_id: str | None = None,
        delivery: Delivery | None = None,
    ) -> int:
        """Send what is PENDING, in order; how many were sent. A 5xx is recorded FAILED; any
        other failure is recorded, leaves the rest PENDING and is raised (retried). Without a
        configured server nothing is sent (the notifications stay PENDING)."""
        delivery = delivery or Delivery()
        if self._config is None:
            return 0
        async with self._pool.acquire() as conn:
            for notification in await store.pending_for(conn, booking_id, entry_id=entry_id):
                if activity.in_activity():
                    # Alive: a worker that dies mid-send is noticed within the heartbeat
                    # timeout, and another one sends what is still PENDING.
                    activity.heartbeat(notification.id)
                # One transaction per message: a message the server accepted is marked SENT
                # at once, whatever happens to the next one.
                failure: Exception | None = None
                async with conn.transaction():
                    if not await store.take(conn, notification.id):
                        continue  # another sender has it, or it was settled meanwhile
                    try:
                        await send(self._config, notification)
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
