"""Mail from a workflow: after a transition that told its tenant something, send it.

The transition's activity wrote the notification (the outbox row) in its own transaction;
the workflow then runs ``send_mail`` in the background, so that a mail server that is down
delays mail and never a booking: a payment, an expiry or a rent step does not wait for it.
One delivery runs at a time per workflow; transitions meanwhile are covered by one more run
after it (each run sends everything pending). The workflow waits for delivery only before it
ends or continues as new, and gives up after :data:`MAIL_GIVE_UP` (the rows stay PENDING,
and ``booking doctor`` reports them).

Whether a workflow mails is the worker's answer when the booking was placed (or the entry
joined): a worker without a mail server (``BOOKING_SMTP_HOST`` unset, as in most tests) says
no, and the workflow then schedules no mail activity at all. Executions recorded before
:data:`MAIL_PATCH` send nothing (their transitions wrote no notifications then); the patch is
asked once per run, at the run's first mail.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

from booking.contract import SEND_MAIL, MailRequest

MAIL_PATCH = "tenant-mail"
# A mail server that refuses for now (4xx) or cannot be reached is tried again at growing
# intervals, up to one every ten minutes, for three days.
MAIL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=10),
)
MAIL_GIVE_UP = timedelta(days=3)
# One attempt: a few messages, each one SMTP conversation (aiosmtplib's timeout is 10 s); the
# activity heartbeats before each, so a worker killed mid-send is noticed within the
# heartbeat timeout and another one takes over.
MAIL_ATTEMPT = timedelta(seconds=60)
MAIL_HEARTBEAT = timedelta(seconds=15)


class Mailer:
    """One workflow's mail: :meth:`send` after each transition that writes a notification."""

    def __init__(self, request: MailRequest) -> None:
        self._request = request
        # Whether the worker delivers mail: set from its answer (False until then).
        self.delivers = False
        self._enabled: bool | None = None
        self._wanted = 0
        self._done = 0
        self._task: asyncio.Task[None] | None = None

    def enabled(self) -> bool:
        """Whether this run sends mail (MAIL_PATCH, asked once per run)."""
        if not self.delivers:
            return False
        if self._enabled is None:
            self._enabled = workflow.patched(MAIL_PATCH)
        return self._enabled

    def send(self) -> None:
        """Deliver what the transition that just committed wrote, in the background."""
        if not self.enabled():
            return
        self._wanted += 1
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._deliver())

    def idle(self) -> bool:
        return self._done >= self._wanted

    async def settled(self) -> None:
        """Wait until no handler runs and no mail is on its way: before the run ends or
        continues as new (a handler still running may send mail, and a run's activities end
        with it)."""
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not self.idle():
            await workflow.wait_condition(self.idle)
            await workflow.wait_condition(workflow.all_handlers_finished)

    async def _deliver(self) -> None:
        while self._done < self._wanted:
            wanted = self._wanted
            try:
                # Why a loop: transitions while this runs ask for one more run, which sends
                # what they wrote.
                await workflow.execute_activity(
                    SEND_MAIL,
                    self._request,
                    result_type=int,
                    start_to_close_timeout=MAIL_ATTEMPT,
                    heartbeat_timeout=MAIL_HEARTBEAT,
                    schedule_to_close_timeout=MAIL_GIVE_UP,
                    retry_policy=MAIL_RETRY,
                    summary="mail the tenant",
                )
            except ActivityError as err:
                # Given up: the notifications stay PENDING with their last error, for an
                # operator (booking doctor). The booking itself is not affected.
                workflow.logger.warning("mail not delivered: %s", err.cause or err)
            self._done = wanted
