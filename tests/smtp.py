"""A real SMTP server for the tests (aiosmtpd on a free port), recording every delivery.

Refuses by the recipient's local part: ``gone...`` for good (550), ``busy...`` for now (451).
With :meth:`SmtpInbox.hold_replies`, it takes a message's data and keeps the client waiting
for the answer (a worker can be killed "mid-send"); each delivery is recorded either way, as
a real server that already has the bytes may deliver them.
"""

from __future__ import annotations

import asyncio
import email
import threading
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from booking.devstack.net import free_port


@dataclass(frozen=True)
class Received:
    message_id: str
    to: str
    subject: str
    text: str
    html: str


class SmtpInbox:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.deliveries: list[Received] = []
        self._held = threading.Event()
        self._held.set()
        self.waiting = 0  # clients kept waiting for their answer right now
        self._controller = Controller(self, hostname=self.host, port=self.port)

    def start(self) -> SmtpInbox:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._held.set()
        self._controller.stop()

    def __enter__(self) -> SmtpInbox:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def hold_replies(self) -> None:
        self._held.clear()

    def release_replies(self) -> None:
        self._held.set()

    @property
    def settings(self) -> dict[str, str]:
        return {"BOOKING_SMTP_HOST": self.host, "BOOKING_SMTP_PORT": str(self.port)}

    def to(self, address: str) -> list[Received]:
        """What reached ``address``, in order; a message delivered twice (same Message-ID) is
        listed once, as a mailbox shows it."""
        seen: dict[str, Received] = {}
        for mail in self.deliveries:
            if mail.to == address:
                seen.setdefault(mail.message_id, mail)
        return list(seen.values())

    def copies(self, message_id: str) -> int:
        return sum(1 for mail in self.deliveries if mail.message_id == message_id)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address.startswith("gone"):
            return "550 5.1.1 no such mailbox"
        if address.startswith("busy"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        text = parsed.get_body(preferencelist=("plain",))
        page = parsed.get_body(preferencelist=("html",))
        self.deliveries.append(
            Received(
                message_id=str(parsed["Message-ID"]),
                to=str(parsed["To"]),
                subject=str(parsed["Subject"]),
                text=text.get_content() if text is not None else "",
                html=page.get_content() if page is not None else "",
            )
        )
        if not self._held.is_set():
            self.waiting += 1
            try:
                await asyncio.get_running_loop().run_in_executor(None, self._held.wait)
            finally:
                self.waiting -= 1
        return "250 accepted"
