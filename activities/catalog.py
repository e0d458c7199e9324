"""Activities that write users, buildings and apartments (see workflows/catalog.py)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import asyncpg
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db_errors import permanent_db_errors
from booking.store import catalog as store
from workflows.catalog import (
    ApartmentData,
    BuildingData,
    CatalogResult,
    UserData,
    UserUpdate,
)

USER_TYPES = frozenset({"ADMIN", "TENANT", "CARETAKER"})
APARTMENT_TYPES = frozenset({"SINGLE_ROOM", "DOUBLE_ROOM", "VILLA"})
# RESERVED is reached only through a booking's hold, never set by hand.
CREATABLE_STATUSES = frozenset({"VACANT", "OCCUPIED"})
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def _invalid(message: str) -> ApplicationError:
    return ApplicationError(message, type="ValidationError", non_retryable=True)


def _check_user_fields(first_name: str, last_name: str, user_type: str) -> None:
    if not first_name.strip() or not last_name.strip():
        raise _invalid("firstName and lastName must not be empty")
    if user_type not in USER_TYPES:
        raise _invalid(f"userType must be one of {sorted(USER_TYPES)}")


class CatalogActivities:
    """Handed the pool once; every method is one short transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="create_user")
    async def create_user(self, user: UserData) -> CatalogResult:
        _check_user_fields(user.first_name, user.last_name, user.user_type)
        if not _EMAIL.match(user.email):
            raise _invalid("email is not an e-mail address")
        async with self._pool.acquire() as conn:
            with permanent_db_errors("user not created"):
                changed, at = await store.insert_user(conn, user)
        return CatalogResult("create_user", user.id, changed, at)

    @activity.defn(name="update_user")
    async def update_user(self, update: UserUpdate) -> CatalogResult:
        _check_user_fields(update.first_name, update.last_name, update.user_type)
        async with self._pool.acquire() as conn:
            with permanent_db_errors("user not updated"):
                at = await store.update_user(conn, update)
        if at is None:
            raise ApplicationError(f"no user {update.id}", type="UserNotFound", non_retryable=True)
        return CatalogResult("update_user", update.id, True, at)

    @activity.defn(name="delete_user")
    async def delete_user(self, user_id: str) -> CatalogResult:
        async with self._pool.acquire() as conn, conn.transaction():
            # Bookings, buildings and tenancies keep their history; a user
            # that has any is not deleted rather than cascading it away.
            if await store.user_has_history(conn, user_id):
                raise _invalid(
                    f"user {user_id} has bookings, buildings or apartments and cannot be deleted"
                )
            deleted = await store.delete_user(conn, user_id)
            at = await conn.fetchval("SELECT now()")
        return CatalogResult("delete_user", user_id, deleted, at)

    @activity.defn(name="create_building")
    async def create_building(self, building: BuildingData) -> CatalogResult:
        if not building.name.strip():
            raise _invalid("name must not be empty")
        if building.number_of_apartments < 0:
            raise _invalid("numberOfApartments must not be negative")
        async with self._pool.acquire() as conn:
            with permanent_db_errors(
                "building not created", by_constraint={"buildings_user_id_fkey": "UserNotFound"}
            ):
                changed, at = await store.insert_building(conn, building)
        return CatalogResult("create_building", building.id, changed, at)

    @activity.defn(name="create_apartment")
    async def create_apartment(self, apartment: ApartmentData) -> CatalogResult:
        if apartment.apartment_type not in APARTMENT_TYPES:
            raise _invalid(f"apartmentType must be one of {sorted(APARTMENT_TYPES)}")
        if apartment.apartment_status not in CREATABLE_STATUSES:
            raise _invalid("a new apartment is VACANT or OCCUPIED; RESERVED comes from a booking")
        if apartment.number_of_rooms < 0 or apartment.monthly_rent < 0:
            raise _invalid("numberOfRooms and monthlyRent must not be negative")
        if not _CURRENCY.match(apartment.currency):
            raise _invalid("currency must be an ISO 4217 code such as EUR")
        async with self._pool.acquire() as conn:
            with permanent_db_errors(
                "apartment not created",
                by_constraint={
                    "apartments_building_id_fkey": "BuildingNotFound",
                    "apartments_caretaker_id_fkey": "UserNotFound",
                },
            ):
                changed, at = await store.insert_apartment(conn, apartment)
        return CatalogResult("create_apartment", apartment.id, changed, at)

    def all(self) -> list[Callable[..., Any]]:
        """The bound activity methods, for ``Worker(activities=...)``."""
        return [
            self.create_user,
            self.update_user,
            self.delete_user,
            self.create_building,
            self.create_apartment,
        ]
