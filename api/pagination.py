"""Opaque ``nextToken`` values: a keyset cursor, base64url-encoded JSON.

Clients must treat the token as opaque; a token that does not decode, or that
was made for another list, is a ``ValidationError``.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from booking.errors import ValidationError

DEFAULT_LIMIT = 50
MAX_LIMIT = 100


def page_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def encode_token(kind: str, cursor: list[Any]) -> str:
    raw = json.dumps({"k": kind, "c": cursor}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str | None) -> list[Any] | None:
    if token is None:
        return None
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data["k"] != kind or not isinstance(data["c"], list):
            raise ValueError(kind)
        cursor: list[Any] = data["c"]
        return cursor
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise ValidationError("nextToken is not valid for this list") from None
