"""A directory of received mail, one ``.eml`` file per Message-ID: what `booking dev`'s local
SMTP server writes (``booking.devstack.mailbox``) and its mailbox page reads (``api.mailbox``).

The standard library only, so that the API reads it without the SMTP server's package.
"""

from __future__ import annotations

import email
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path

# A kept message's name: the first 24 hex digits of its Message-ID's SHA-256.
NAME = re.compile(r"^[0-9a-f]{24}$")


def file_name(message_id: str | None, content: bytes) -> str:
    """Where a message is kept: by its Message-ID (one file however often it is sent), or by
    its bytes when it has none."""
    key = message_id or hashlib.sha256(content).hexdigest()
    return hashlib.sha256(str(key).encode()).hexdigest()[:24] + ".eml"


@dataclass(frozen=True)
class StoredMail:
    name: str  # the file's stem (see :data:`NAME`)
    message_id: str
    sender: str
    to: str
    subject: str
    received: datetime
    text: str
    html: str | None


def _read(path: Path) -> StoredMail:
    parsed = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    text_part = parsed.get_body(preferencelist=("plain",))
    html_part = parsed.get_body(preferencelist=("html",))
    return StoredMail(
        name=path.stem,
        message_id=str(parsed.get("Message-ID", "")),
        sender=str(parsed.get("From", "")),
        to=str(parsed.get("To", "")),
        subject=str(parsed.get("Subject", "")),
        received=datetime.fromtimestamp(path.stat().st_mtime, UTC),
        text=text_part.get_content() if text_part is not None else "",
        html=html_part.get_content() if html_part is not None else None,
    )


def messages(directory: Path) -> list[StoredMail]:
    """What the directory holds, newest first (none when it does not exist yet)."""
    if not directory.is_dir():
        return []
    paths = sorted(directory.glob("*.eml"), key=lambda p: (p.stat().st_mtime, p.name), reverse=True)
    return [_read(path) for path in paths]


def message(directory: Path, name: str) -> StoredMail | None:
    """One kept message by its name; None for a name that is not one (or not there)."""
    if not NAME.match(name):
        return None
    path = directory / f"{name}.eml"
    return _read(path) if path.is_file() else None
