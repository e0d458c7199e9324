"""The worker's mail activity: the notifications a booking's (or a waiting-list entry's)
transitions wrote, sent over SMTP by :mod:`booking.mailer`'s rule.

The workflow whose transition wrote a notification runs ``send_mail`` after it, in the
background (a mail server that is down delays mail, never a booking), with Temporal's retries
and backoff (``workflows.mail``). The activity heartbeats before each message, so that a worker
killed mid-send is noticed within the heartbeat timeout and another one sends what is still
PENDING. Outcomes are counted in the worker's metrics (``booking_mail_sent``,
``booking_mail_failed``, ``booking_mail_deferred``).
"""

from __future__ import annotations

from typing import Any

from temporalio import activity

from booking.contract import SEND_MAIL, MailRequest
from booking.mailer import Delivery, SmtpConfig, deliver
from booking.store import mail as store
from booking.store.mail import Notification


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
        """Send what is PENDING, in order (see :func:`booking.mailer.deliver`). Without a
        configured server nothing is sent (the notifications stay PENDING)."""
        if self._config is None:
            return 0
        async with self._pool.acquire() as conn:
            pending = await store.pending_for(conn, booking_id, entry_id=entry_id)
        return await deliver(self._pool, self._config, pending, delivery, before_each=_alive)


def _alive(notification: Notification) -> None:
    if activity.in_activity():
        activity.heartbeat(notification.id)
