"""Signed JWTs shaped like the Cognito ID tokens AppSync accepted.

``sub`` is the user id and ``cognito:groups`` the groups (``Admins``,
``Tenants``, ``Caretakers``); the API verifies them (``api.auth``). Minting
exists for development and tests: production tokens come from the identity
provider behind ``BOOKING_JWKS_URL``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import jwt

GROUPS = ("Admins", "Tenants", "Caretakers")
ISSUER = "booking-dev"


def mint_token(
    secret: str,
    user_id: str,
    groups: Sequence[str],
    ttl_seconds: int = 3600,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    email: str | None = None,
) -> str:
    """Return an HS256 JWT for ``user_id`` in ``groups``, valid for ``ttl_seconds``; with
    ``email``, the ``email`` claim an ID token carries (a tenant registers with it)."""
    if not user_id:
        raise ValueError("a token needs a user id")
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    if ttl_seconds <= 0:
        raise ValueError("ttl_seconds must be positive")
    now = int(time.time())
    claims = {
        "sub": user_id,
        "cognito:groups": list(groups),
        # The API checks iss and aud only when BOOKING_JWT_ISSUER / _AUDIENCE are set;
        # minting with the same settings keeps dev tokens valid then.
        "iss": issuer or ISSUER,
        "iat": now,
        "exp": now + ttl_seconds,
        "jti": str(uuid.uuid4()),
        "token_use": "id",
    }
    if audience:
        claims["aud"] = audience
    if email:
        claims["email"] = email
        claims["email_verified"] = True
    return jwt.encode(claims, secret, algorithm="HS256")
