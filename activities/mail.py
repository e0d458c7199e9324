"""Mail to tenants: the notifications a booking's transitions wrote (its outbox rows), sent over
SMTP. One message per notification, with the notification's own Message-ID on every attempt.

WIP (issue 25): not yet called by the workflows; ``send`` is the delivery rule, tested against
a real SMTP server.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib

from booking.mail import Mail, MailFacts, render
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
