"""Authentication as AppSync does it: an API key, or a Cognito-style JWT.

``x-api-key`` names a trusted backend caller (every operation, in anyone's
name). ``Authorization`` carries a JWT, with or without ``Bearer ``: HS256
signed with ``BOOKING_JWT_SECRET`` or RS256 with a key from ``BOOKING_JWKS_URL``.
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
from collections.abc import Mapping
from dataclasses import dataclass

import jwt

from booking.errors import UnauthorizedException
from booking.settings import Settings

log = logging.getLogger(__name__)

MISSING = "Valid authorization header not provided."
DENIED = "You are not authorized to make this call."
_LEEWAY_SECONDS = 5


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an API key (trusted backend) or a user's JWT."""

    user_id: str | None
    groups: frozenset[str]
    trusted: bool  # an x-api-key caller: every operation, in anyone's name

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


class Authenticator:
    def __init__(self, settings: Settings) -> None:
        self._api_keys = tuple(k.encode() for k in settings.api_keys)
        self._secret = settings.jwt_secret
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._jwks = (
            jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300)
            if settings.jwks_url
            else None
        )

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
            elif algorithm == "RS256" and self._jwks is not None:
                # The JWKS fetch is blocking I/O (cached after the first call).
                signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
                key = signing_key.key
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
        except (jwt.PyJWTError, jwt.PyJWKClientError) as err:
            log.info("rejected request: invalid token (%s)", type(err).__name__)
            raise UnauthorizedException(DENIED) from None
        sub = claims.get("sub")
        groups = claims.get("cognito:groups") or []
        if not isinstance(sub, str) or not sub or not isinstance(groups, list):
            log.info("rejected request: token lacks a usable sub or cognito:groups")
            raise UnauthorizedException(DENIED)
        return Principal(
            user_id=sub,
            groups=frozenset(g for g in groups if isinstance(g, str)),
            trusted=False,
        )
