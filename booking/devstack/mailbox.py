"""`booking dev`'s mailbox: a local SMTP server (aiosmtpd) that keeps every message it accepts
under the data directory, one ``.eml`` file per Message-ID (a message sent again after a crash
is the same message: it is kept once, as a mail client would show it once).

WIP (issue 25): started by `booking dev` when BOOKING_SMTP_HOST is unset; the dev API's
mailbox page reads it with :func:`messages`.
"""

from __future__ import annotations

import email
import hashlib
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from booking.devstack.net import free_port


@dataclass(frozen=True)
class StoredMail:
    name: str  # the file's stem: a hash of the Message-ID
    message_id: str
    to: str
    subject: str
    text: str
    html: str | None


class _Keeper:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.content
        parsed = email.message_from_bytes(content)
        key = parsed.get("Message-ID") or hashlib.sha256(content).hexdigest()
        name = hashlib.sha256(str(key).encode()).hexdigest()[:24]
        path = self._directory / f"{name}.eml"
        if not path.exists():
            temporary = path.with_suffix(".part")
            temporary.write_bytes(content)
            temporary.replace(path)
        return "250 kept"


class LocalMailbox:
    """The server; ``port`` once started."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        # aiosmtpd's start() connects to the port it was given to check the server is up: it
        # needs a real one, not 0.
        self._controller = Controller(
            _Keeper(directory), hostname=host, port=port or free_port(host)
        )

    @property
    def host(self) -> str:
        return str(self._controller.hostname)

    @property
    def port(self) -> int:
        return int(self._controller.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()


def messages(directory: Path) -> list[StoredMail]:
    """What the mailbox holds, newest first."""
    found = []
    paths = sorted(directory.glob("*.eml"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in paths:
        parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        text_part = parsed.get_body(preferencelist=("plain",))
        html_part = parsed.get_body(preferencelist=("html",))
        found.append(
            StoredMail(
                name=path.stem,
                message_id=str(parsed.get("Message-ID", "")),
                to=str(parsed.get("To", "")),
                subject=str(parsed.get("Subject", "")),
                text=text_part.get_content() if text_part is not None else "",
                html=html_part.get_content() if html_part is not None else None,
            )
        )
    return found
