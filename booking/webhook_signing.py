"""Signing and verifying payment-provider webhooks (``Booking-Signature``).

The header is ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">``
keyed with ``BOOKING_WEBHOOK_SECRET``. Signing the timestamp together with the
body means a captured request can be replayed only while ``t`` is inside the
tolerance window, and cannot be altered at all. Several ``v1`` entries are
allowed so that a provider can sign with an old and a new secret while the
secret rotates.

``webhook_signature`` is what a provider (or a test) uses; the API uses
``verify_signature``. Neither ever puts the secret or a signature into an
exception message, because those messages are logged.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "Booking-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
# A header longer than this is not a signature; refusing it early keeps the
# parser's work bounded.
_MAX_HEADER_LENGTH = 1024
_MAX_SIGNATURES = 4
_HEX_DIGEST_LENGTH = 64


class SignatureError(Exception):
    """The request is not signed correctly; ``reason`` is a short, loggable code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def _digest(secret: str, body: bytes, t: int) -> str:
    signed = str(t).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), signed, hashlib.sha256).hexdigest()


def webhook_signature(secret: str, body: bytes, t: int) -> str:
    """The ``Booking-Signature`` header value for ``body`` sent at unix time ``t``."""
    if not secret:
        raise ValueError("a webhook secret must not be empty")
    return f"t={int(t)},v1={_digest(secret, body, int(t))}"


def parse_signature_header(header: str) -> tuple[int, list[str]]:
    """Return (t, [v1 signatures]) or raise SignatureError("malformed_signature")."""
    if len(header) > _MAX_HEADER_LENGTH:
        raise SignatureError("malformed_signature", "signature header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            raise SignatureError("malformed_signature", "signature header is not key=value pairs")
        if key == "t":
            if timestamp is not None or not value.isdigit() or len(value) > 12:
                raise SignatureError("malformed_signature", "signature header has a bad t")
            timestamp = int(value)
        elif key == "v1":
            if len(value) != _HEX_DIGEST_LENGTH or any(c not in "0123456789abcdef" for c in value):
                raise SignatureError("malformed_signature", "signature header has a bad v1")
            signatures.append(value)
        # Other schemes (v0, v2, ...) are ignored: a provider may add them.
    if timestamp is None or not signatures or len(signatures) > _MAX_SIGNATURES:
        raise SignatureError("malformed_signature", "signature header needs one t and a v1")
    return timestamp, signatures


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes,
    *,
    now: float,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
) -> int:
    """Check ``header`` against ``body``; return its timestamp or raise SignatureError.

    Every candidate signature is compared in constant time and all of them are
    compared, so the time taken says nothing about which one, or how much of
    one, matched.
    """
    if not header:
        raise SignatureError("missing_signature", f"{SIGNATURE_HEADER} header is missing")
    t, candidates = parse_signature_header(header)
    expected = _digest(secret, body, t)
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError("bad_signature", "signature does not match the body")
    # Checked after the signature: only a genuinely signed old request is
    # "stale"; anything else is simply forged.
    if abs(now - t) > tolerance_seconds:
        raise SignatureError(
            "stale_signature", f"signature timestamp is more than {tolerance_seconds} s away"
        )
    return t
