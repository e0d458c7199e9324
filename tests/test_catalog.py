"""booking.catalog against the real database: checked, idempotent, audited catalog writes."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable

import asyncpg
import pytest

from booking import catalog
from booking.errors import DomainError
from booking.store.catalog import ApartmentData, BuildingData, UserData, UserUpdate

ACTOR = "test"


def _user(**overrides: object) -> UserData:
    uid = str(uuid.uuid4())
    fields: dict[str, object] = {
        "id": uid,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": f"{uid}@example.com",
        "verified": True,
        "user_type": "TENANT",
    }
    fields.update(overrides)
    return UserData(**fields)  # type: ignore[arg-type]


async def _error_type(write: Awaitable[object]) -> str:
    with pytest.raises(DomainError) as refused:
        await write
    return refused.value.error_type


async def _audit(pool: asyncpg.Pool, target_id: str) -> list[tuple[str, str]]:
    rows = await pool.fetch(
        "SELECT operation, actor FROM catalog_events WHERE target_id = $1 ORDER BY id", target_id
    )
    return [(r["operation"], r["actor"]) for r in rows]


async def test_user_lifecycle(pool: asyncpg.Pool) -> None:
    user = _user()
    async with pool.acquire() as conn:
        created = await catalog.create_user(conn, user, actor=ACTOR)
        assert created.changed and created.id == user.id
        # The same create again (a retried API call) writes nothing new.
        again = await catalog.create_user(conn, user, actor=ACTOR)
        assert not again.changed
        assert await conn.fetchval("SELECT count(*) FROM users WHERE id = $1", user.id) == 1

        update = UserUpdate(user.id, "Ada", "King", False, "CARETAKER")
        await catalog.update_user(conn, update, actor="user:" + user.id)
        row = await conn.fetchrow(
            "SELECT last_name, user_type, updated_on FROM users WHERE id = $1", user.id
        )
        assert row is not None
        assert (row["last_name"], row["user_type"]) == ("King", "CARETAKER")
        assert row["updated_on"] is not None

        deleted = await catalog.delete_user(conn, user.id, actor=ACTOR)
        assert deleted.changed
        assert await conn.fetchval("SELECT count(*) FROM users WHERE id = $1", user.id) == 0
        # Deleting again: there is nothing to delete.
        assert await _error_type(catalog.delete_user(conn, user.id, actor=ACTOR)) == (
            "UserNotFound"
        )
    # One audit row per change, none for the create that changed nothing or the refusal.
    assert await _audit(pool, user.id) == [
        ("create_user", ACTOR),
        ("update_user", "user:" + user.id),
        ("delete_user", ACTOR),
    ]


async def test_duplicate_email_is_a_validation_error(pool: asyncpg.Pool) -> None:
    first = _user()
    async with pool.acquire() as conn:
        await catalog.create_user(conn, first, actor=ACTOR)
        clash = _user(email=first.email.upper())  # e-mails are unique regardless of case
        assert await _error_type(catalog.create_user(conn, clash, actor=ACTOR)) == (
            "ValidationError"
        )
    assert await _audit(pool, clash.id) == []


async def test_bad_user_input_is_rejected_before_the_database(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        for bad in (
            _user(email="not-an-address"),
            _user(first_name=" "),
            _user(user_type="OWNER"),
        ):
            assert await _error_type(catalog.create_user(conn, bad, actor=ACTOR)) == (
                "ValidationError"
            )
            assert await conn.fetchval("SELECT count(*) FROM users WHERE id = $1", bad.id) == 0


async def test_update_of_unknown_user(pool: asyncpg.Pool) -> None:
    update = UserUpdate(str(uuid.uuid4()), "No", "Body", False, "TENANT")
    async with pool.acquire() as conn:
        assert await _error_type(catalog.update_user(conn, update, actor=ACTOR)) == ("UserNotFound")


async def test_building_and_apartment(pool: asyncpg.Pool) -> None:
    owner = _user(user_type="ADMIN")
    building = BuildingData(
        str(uuid.uuid4()), owner.id, "Elm House", "1 Elm St", "12345", "Springfield", "US", 2
    )
    apartment = ApartmentData(
        id=str(uuid.uuid4()),
        apartment_number="1A",
        building_id=building.id,
        number_of_rooms=3,
        kitchen=True,
        apartment_type="DOUBLE_ROOM",
        apartment_status="VACANT",
        monthly_rent=125_000,
        currency="EUR",
    )
    async with pool.acquire() as conn:
        await catalog.create_user(conn, owner, actor=ACTOR)
        await catalog.create_building(conn, building, actor=ACTOR)
        await catalog.create_apartment(conn, apartment, actor=ACTOR)
        row = await conn.fetchrow(
            "SELECT apartment_status, monthly_rent, currency FROM apartments WHERE id = $1",
            apartment.id,
        )
        assert row is not None
        assert (row["apartment_status"], row["monthly_rent"], row["currency"]) == (
            "VACANT",
            125_000,
            "EUR",
        )

        # The owner now has a building: deleting them would orphan it.
        assert await _error_type(catalog.delete_user(conn, owner.id, actor=ACTOR)) == (
            "ValidationError"
        )

        same_number = ApartmentData(**{**apartment.__dict__, "id": str(uuid.uuid4())})
        assert await _error_type(catalog.create_apartment(conn, same_number, actor=ACTOR)) == (
            "ValidationError"
        )

        orphan = ApartmentData(
            **{**apartment.__dict__, "id": str(uuid.uuid4()), "building_id": "nope"}
        )
        assert await _error_type(catalog.create_apartment(conn, orphan, actor=ACTOR)) == (
            "BuildingNotFound"
        )

        reserved = ApartmentData(
            **{
                **apartment.__dict__,
                "id": str(uuid.uuid4()),
                "apartment_number": "9Z",
                "apartment_status": "RESERVED",
            }
        )
        assert await _error_type(catalog.create_apartment(conn, reserved, actor=ACTOR)) == (
            "ValidationError"
        )
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM apartments WHERE id = ANY($1::text[])",
                [same_number.id, orphan.id, reserved.id],
            )
            == 0
        )
    assert await _audit(pool, apartment.id) == [("create_apartment", ACTOR)]


async def test_building_for_unknown_owner(pool: asyncpg.Pool) -> None:
    building = BuildingData(str(uuid.uuid4()), "ghost", "X", "1 St", "1", "C", "US", 1)
    async with pool.acquire() as conn:
        assert await _error_type(catalog.create_building(conn, building, actor=ACTOR)) == (
            "UserNotFound"
        )


async def test_the_audit_trail_is_append_only(pool: asyncpg.Pool) -> None:
    user = _user()
    async with pool.acquire() as conn:
        await catalog.create_user(conn, user, actor=ACTOR)
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM catalog_events WHERE target_id = $1", user.id)
    assert await _audit(pool, user.id) == [("create_user", ACTOR)]
