"""The catalog's writes: users, buildings and apartments, each one checked transaction.

A catalog row has no timer and waits on no event, so it needs no workflow: the API (and
``booking seed``) call these functions on a pooled connection, and each one validates its
record, writes it and appends a ``catalog_events`` row in one transaction. Booking state
(holds, payments, leases) is never written here: only the booking workflow's activities
change it, and an apartment's RESERVED status comes only from a hold.

A constraint the database enforces comes back as the domain error a client can act on
(an e-mail already in use, an unknown owner); creates are idempotent on the record's id.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from booking.errors import (
    BuildingNotFound,
    DomainError,
    UserNotFound,
    ValidationError,
)
from booking.store import Conn
from booking.store import catalog as store
from booking.store.catalog import ApartmentData, BuildingData, UserData, UserUpdate

USER_TYPES = frozenset({"ADMIN", "TENANT", "CARETAKER"})
APARTMENT_TYPES = frozenset({"SINGLE_ROOM", "DOUBLE_ROOM", "VILLA"})
# RESERVED is reached only through a booking's hold, never set by hand.
CREATABLE_STATUSES = frozenset({"VACANT", "OCCUPIED"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")

# Which domain error a violated constraint means, for every catalog write.
_BY_CONSTRAINT: Mapping[str, tuple[type[DomainError], str]] = {
    "users_email_key": (ValidationError, "email is already in use"),
    "users_pkey": (ValidationError, "a user with this id already exists"),
    "buildings_user_id_fkey": (UserNotFound, "the building's owner (userId) does not exist"),
    "apartments_building_id_fkey": (BuildingNotFound, "the building does not exist"),
    "apartments_caretaker_id_fkey": (UserNotFound, "the caretaker does not exist"),
    "apartments_building_id_apartment_number_key": (
        ValidationError,
        "the building already has an apartment with this number",
    ),
}


@dataclass(frozen=True)
class CatalogResult:
    id: str
    # False when a retried create found its row already written, or a delete found nothing.
    changed: bool
    at: datetime


@asynccontextmanager
async def _write(conn: Conn, what: str) -> AsyncIterator[None]:
    """One transaction; a constraint or data error becomes the domain error it means."""
    try:
        async with conn.transaction():
            yield
    except asyncpg.IntegrityConstraintViolationError as exc:
        constraint = getattr(exc, "constraint_name", None) or ""
        error, message = _BY_CONSTRAINT.get(constraint, (ValidationError, f"{what}: not allowed"))
        raise error(message) from exc
    except asyncpg.DataError as exc:
        # A value the column cannot hold (too long, a NUL character): the caller's input.
        raise ValidationError(f"{what}: a value cannot be stored") from exc


def _check_user_fields(first_name: str, last_name: str, user_type: str) -> None:
    if not first_name.strip() or not last_name.strip():
        raise ValidationError("firstName and lastName must not be empty")
    if user_type not in USER_TYPES:
        raise ValidationError(f"userType must be one of {sorted(USER_TYPES)}")


async def create_user(conn: Conn, user: UserData, *, actor: str) -> CatalogResult:
    _check_user_fields(user.first_name, user.last_name, user.user_type)
    if not _EMAIL.match(user.email):
        raise ValidationError("email is not an e-mail address")
    async with _write(conn, "user not created"):
        changed, at = await store.insert_user(conn, user)
        if at is None:
            # A repeat must be the same request: answering the account as it is would say
            # this one was created.
            raise ValidationError(
                f"an account with id {user.id} already exists with other details "
                "(updateUserAccount changes them)"
            )
        if changed:
            await store.append_event(conn, "create_user", user.id, actor)
    return CatalogResult(user.id, changed, at)


async def update_user(conn: Conn, update: UserUpdate, *, actor: str) -> CatalogResult:
    _check_user_fields(update.first_name, update.last_name, update.user_type)
    async with _write(conn, "user not updated"):
        at = await store.update_user(conn, update)
        if at is None:
            raise UserNotFound(f"user {update.id} does not exist")
        await store.append_event(conn, "update_user", update.id, actor)
    return CatalogResult(update.id, True, at)


async def delete_user(conn: Conn, user_id: str, *, actor: str) -> CatalogResult:
    async with _write(conn, "user not deleted"):
        # Bookings, buildings and tenancies keep their history; a user that has any is not
        # deleted rather than cascading it away.
        if await store.user_has_history(conn, user_id):
            raise ValidationError(
                f"user {user_id} has bookings, buildings or apartments and cannot be deleted"
            )
        at = await store.delete_user(conn, user_id)
        if at is None:
            raise UserNotFound(f"user {user_id} does not exist")
        await store.append_event(conn, "delete_user", user_id, actor)
    return CatalogResult(user_id, True, at)


async def create_building(conn: Conn, building: BuildingData, *, actor: str) -> CatalogResult:
    if not building.name.strip():
        raise ValidationError("name must not be empty")
    if building.number_of_apartments < 0:
        raise ValidationError("numberOfApartments must not be negative")
    async with _write(conn, "building not created"):
        changed, at = await store.insert_building(conn, building)
        if changed:
            await store.append_event(conn, "create_building", building.id, actor)
    return CatalogResult(building.id, changed, at)


async def create_apartment(conn: Conn, apartment: ApartmentData, *, actor: str) -> CatalogResult:
    if apartment.apartment_type not in APARTMENT_TYPES:
        raise ValidationError(f"apartmentType must be one of {sorted(APARTMENT_TYPES)}")
    if apartment.apartment_status not in CREATABLE_STATUSES:
        raise ValidationError(
            "a new apartment is VACANT or OCCUPIED; RESERVED comes from a booking"
        )
    if apartment.number_of_rooms < 0 or apartment.monthly_rent < 0:
        raise ValidationError("numberOfRooms and monthlyRent must not be negative")
    if not _CURRENCY.match(apartment.currency):
        raise ValidationError("currency must be an ISO 4217 code such as EUR")
    async with _write(conn, "apartment not created"):
        changed, at = await store.insert_apartment(conn, apartment)
        if changed:
            await store.append_event(conn, "create_apartment", apartment.id, actor)
    return CatalogResult(apartment.id, changed, at)
