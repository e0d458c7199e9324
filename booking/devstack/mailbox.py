"""`booking dev`'s mailbox: a local SMTP server (aiosmtpd) that keeps every message it accepts
under the data directory, one ``.eml`` file per Message-ID (a message sent again after a crash
is the same message: it is kept once, as a mail client would show it once).

Started by `booking dev` when BOOKING_SMTP_HOST is unset (and by the end-to-end tests); the
dev API's mailbox page reads the directory with :mod:`booking.maildir`. aiosmtpd is a
development package: only ``booking dev`` and the tests import this module.
"""

from __future__ import annotations

import email
import logging
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

from booking.devstack.net import free_port
from booking.maildir import file_name


class _Keeper:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content: bytes = envelope.content
        parsed = email.message_from_bytes(content)
        path = self._directory / file_name(parsed.get("Message-ID"), content)
        if not path.exists():
            temporary = path.with_suffix(".part")
            temporary.write_bytes(content)
            temporary.replace(path)
        return "250 kept"


class LocalMailbox:
    """The server; ``port`` once started."""

    def __init__(self, directory: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        # aiosmtpd logs every connection at INFO (its own start-up check included): noise in
        # booking dev's output; problems still show.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
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
