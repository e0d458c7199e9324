"""Authentication as AppSync does it: an API key, or a Cognito-style JWT.

``x-api-key`` names a trusted backend caller (every operation, in anyone's
name). ``Authorization`` carries a JWT, with or without ``Bearer ``: HS256
signed with ``BOOKING_JWT_SECRET`` or RS256 with a key from ``BOOKING_JWKS_URL``
(:class:`JwksKeys`: keys the provider publishes later are picked up without a
restart, and tokens with made-up key ids cannot make us fetch more than a few
times a minute).
PyJWT checks the signature, the algorithm (only the configured ones, never
``none``), ``exp`` (required) and, when ``BOOKING_JWT_ISSUER`` /
``BOOKING_JWT_AUDIENCE`` are set, ``iss`` / ``aud`` (then required; unset,
they are not checked). ``sub`` is the user id and ``cognito:groups``
the groups. Any failure is ``UnauthorizedException`` (HTTP 401); the reason is
logged, never the token.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import jwt

from booking.contract import text_problem
from booking.errors import UnauthorizedException
from booking.settings import Settings

log = logging.getLogger(__name__)

MISSING = "Valid authorization header not provided."
DENIED = "You are not authorized to make this call."
_LEEWAY_SECONDS = 5
# What converting a claim someone chose can raise (OSError: a timestamp the platform refuses).
_UNCONVERTIBLE = (ArithmeticError, ValueError, TypeError, OSError)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an API key (trusted backend) or a user's JWT."""

    user_id: str | None
    groups: frozenset[str]
    trusted: bool  # an x-api-key caller: every operation, in anyone's name
    # When the credential stops being valid (a JWT's exp); None: an API key, until revoked.
    expires_at: datetime | None = None
    # The token's `email` claim (ID tokens carry it): the only email a caller who is not an
    # Admin may put on its own account.
    email: str | None = None

    @property
    def is_admin(self) -> bool:
        return self.trusted or "Admins" in self.groups

    @property
    def sees_all_bookings(self) -> bool:
        # Caretakers run the buildings, so they see every booking of an
        # apartment; tenants see their own only.
        return self.is_admin or "Caretakers" in self.groups

    @property
    def actor(self) -> str:
        """Who made a change, as the audit trails record it."""
        return "api-key" if self.trusted else f"user:{self.user_id}"

    def may_act_for(self, user_id: str) -> bool:
        return self.is_admin or self.user_id == user_id

    def may_read_account(self, user_id: str) -> bool:
        # Caretakers look after the tenants of their buildings, so they read any
        # account; tenants read their own only, wherever the account is nested.
        return self.is_admin or "Caretakers" in self.groups or self.user_id == user_id


class JwksKeys:
    """The identity provider's public keys, by key id, fetched when a token needs them.

    The key set is kept for ``lifespan`` seconds. A token whose ``kid`` is not in it makes
    us fetch the set again, but never sooner than ``min_interval`` seconds after the last
    fetch: a key the provider has just published is found within seconds, and a stream of
    tokens with made-up key ids costs at most ``60 / min_interval`` fetches a minute.
    """

    def __init__(
        self, url: str, *, lifespan: float = 300, min_interval: float = 10, timeout: float = 5
    ) -> None:
        self._url = url
        self._lifespan = lifespan
        self._min_interval = min_interval
        self._timeout = timeout
        self._keys: dict[str | None, Any] = {}
        self._fetched = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0  # how often the set was fetched (tests and metrics read it)

    async def key(self, kid: str | None) -> Any:
        """The public key for ``kid``; PyJWKClientError when the provider has none."""
        now = time.monotonic()
        if now - self._fetched > self._lifespan or (
            kid not in self._keys and now - self._fetched >= self._min_interval
        ):
            async with self._lock:
                # Another request may have fetched while we waited.
                if time.monotonic() - self._fetched >= self._min_interval:
                    await self._fetch()
        if kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        raise jwt.PyJWKClientError(f"no signing key with kid {kid!r}")

    async def _fetch(self) -> None:
        self._fetched = time.monotonic()
        self.fetches += 1
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as http:
                response = await http.get(self._url)
                response.raise_for_status()
                key_set = jwt.PyJWKSet.from_dict(response.json())
        except (httpx.HTTPError, ValueError, jwt.PyJWKSetError) as err:
            # Keep the keys we had: the provider may be down for a moment.
            log.warning("fetching the JWKS failed (%s); keeping %d key(s)", err, len(self._keys))
            return
        self._keys = {k.key_id: k.key for k in key_set.keys if k.public_key_use in (None, "sig")}


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._api_keys = tuple(k.encode() for k in settings.api_keys)
        self._secret = settings.jwt_secret
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.jwks = JwksKeys(settings.jwks_url) if settings.jwks_url else None

    async def authenticate(self, headers: Mapping[str, str]) -> Principal:
        api_key = headers.get("x-api-key")
        if api_key is not None:
            return self._check_api_key(api_key)
        authorization = headers.get("authorization")
        if authorization:
            return await self._check_jwt(authorization)
        raise UnauthorizedException(MISSING)

    def _check_api_key(self, api_key: str) -> Principal:
        candidate = api_key.encode()
        # Compare against every key, in constant time, so timing reveals nothing.
        matched = False
        for key in self._api_keys:
            matched |= hmac.compare_digest(candidate, key)
        if not matched:
            log.info("rejected request: unknown API key")
            raise UnauthorizedException(DENIED)
        return Principal(user_id=None, groups=frozenset(), trusted=True)

    async def _check_jwt(self, authorization: str) -> Principal:
        token = authorization.strip()
        if token[:7].lower() == "bearer ":
            token = token[7:].strip()
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            key: object
            if algorithm == "HS256" and self._secret:
                key = self._secret
            elif algorithm == "RS256" and self.jwks is not None:
                key = await self.jwks.key(header.get("kid"))
            else:
                raise jwt.InvalidAlgorithmError(f"algorithm {algorithm!r} is not accepted")
            required = ["exp", "sub"]
            if self._issuer is not None:
                required.append("iss")
            if self._audience is not None:
                required.append("aud")
            claims = jwt.decode(
                token,
                key,  # type: ignore[arg-type]
                algorithms=[algorithm],
                options={"require": required, "verify_aud": self._audience is not None},
                issuer=self._issuer,
                audience=self._audience,
                leeway=_LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            log.info("rejected request: expired token")
            raise UnauthorizedException("Token has expired.") from None
        except (jwt.PyJWTError, jwt.PyJWKClientError, *_UNCONVERTIBLE) as err:
            # _UNCONVERTIBLE: a signed claim PyJWT compares without converting it safely (an
            # `exp` of 1e400 is infinity, and int(inf) overflows).
            log.info("rejected request: invalid token (%s)", type(err).__name__)
            raise UnauthorizedException(DENIED) from None
        return _principal(claims)


def _principal(claims: Mapping[str, Any]) -> Principal:
    """The caller a verified token's claims name; any claim we cannot use as ours is a 401.

    A signature proves who wrote the claims, not that they fit: an ``exp`` past the year 9999
    has no datetime, a ``sub`` with control characters would make ids that are not one
    caller's alone (``booking.contract.booking_id_for`` joins user and key with NUL).
    """
    sub = claims.get("sub")
    groups = claims.get("cognito:groups") or []
    if (
        not isinstance(sub, str)
        or not sub
        or text_problem("sub", sub) is not None
        or not isinstance(groups, list)
    ):
        log.info("rejected request: token lacks a usable sub or cognito:groups")
        raise UnauthorizedException(DENIED)
    try:
        expires_at = datetime.fromtimestamp(int(claims["exp"]), UTC)
    except _UNCONVERTIBLE:
        log.info("rejected request: token's exp is not a time we can represent")
        raise UnauthorizedException(DENIED) from None
    email = claims.get("email")
    return Principal(
        user_id=sub,
        groups=frozenset(g for g in groups if isinstance(g, str)),
        trusted=False,
        expires_at=expires_at,
        email=email if isinstance(email, str) and email else None,
    )
