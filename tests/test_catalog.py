"""CatalogWorkflow + CatalogActivities against the real database and Temporal test server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.catalog import CatalogActivities
from workflows.catalog import (
    ApartmentData,
    BuildingData,
    CatalogRequest,
    CatalogWorkflow,
    UserData,
    UserUpdate,
    run_catalog_write,
)


@pytest.fixture
async def client(
    env: WorkflowEnvironment, pool: asyncpg.Pool, task_queue: str
) -> AsyncIterator[Client]:
    client = env.client
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[CatalogWorkflow],
        activities=CatalogActivities(pool).all(),
    ):
        yield client


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


async def _error_type(client: Client, task_queue: str, request: CatalogRequest) -> str | None:
    with pytest.raises(WorkflowFailureError) as failure:
        await run_catalog_write(client, task_queue, request)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    return cause.type


async def test_user_lifecycle(client: Client, task_queue: str, pool: asyncpg.Pool) -> None:
    user = _user()
    created = await run_catalog_write(client, task_queue, CatalogRequest("create_user", user=user))
    assert created.changed and created.id == user.id
    # The same create again (a retried API call) writes nothing new.
    again = await run_catalog_write(client, task_queue, CatalogRequest("create_user", user=user))
    assert not again.changed
    assert await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", user.id) == 1

    update = UserUpdate(user.id, "Ada", "King", False, "CARETAKER")
    await run_catalog_write(client, task_queue, CatalogRequest("update_user", user_update=update))
    row = await pool.fetchrow(
        "SELECT last_name, user_type, updated_on FROM users WHERE id = $1", user.id
    )
    assert row is not None
    assert (row["last_name"], row["user_type"]) == ("King", "CARETAKER")
    assert row["updated_on"] is not None

    deleted = await run_catalog_write(
        client, task_queue, CatalogRequest("delete_user", user_id=user.id)
    )
    assert deleted.changed
    assert await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", user.id) == 0


async def test_duplicate_email_is_a_validation_error(client: Client, task_queue: str) -> None:
    first = _user()
    await run_catalog_write(client, task_queue, CatalogRequest("create_user", user=first))
    clash = _user(email=first.email.upper())  # e-mails are unique regardless of case
    assert await _error_type(client, task_queue, CatalogRequest("create_user", user=clash)) == (
        "ValidationError"
    )


async def test_bad_user_input_is_rejected_before_the_database(
    client: Client, task_queue: str, pool: asyncpg.Pool
) -> None:
    bad = _user(email="not-an-address")
    assert await _error_type(client, task_queue, CatalogRequest("create_user", user=bad)) == (
        "ValidationError"
    )
    assert await pool.fetchval("SELECT count(*) FROM users WHERE id = $1", bad.id) == 0


async def test_update_of_unknown_user(client: Client, task_queue: str) -> None:
    update = UserUpdate(str(uuid.uuid4()), "No", "Body", False, "TENANT")
    request = CatalogRequest("update_user", user_update=update)
    assert await _error_type(client, task_queue, request) == "UserNotFound"


async def test_building_and_apartment(client: Client, task_queue: str, pool: asyncpg.Pool) -> None:
    owner = _user(user_type="ADMIN")
    await run_catalog_write(client, task_queue, CatalogRequest("create_user", user=owner))
    building = BuildingData(
        str(uuid.uuid4()), owner.id, "Elm House", "1 Elm St", "12345", "Springfield", "US", 2
    )
    await run_catalog_write(
        client, task_queue, CatalogRequest("create_building", building=building)
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
    await run_catalog_write(
        client, task_queue, CatalogRequest("create_apartment", apartment=apartment)
    )
    row = await pool.fetchrow(
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
    request = CatalogRequest("delete_user", user_id=owner.id)
    assert await _error_type(client, task_queue, request) == "ValidationError"

    same_number = ApartmentData(**{**apartment.__dict__, "id": str(uuid.uuid4())})
    request = CatalogRequest("create_apartment", apartment=same_number)
    assert await _error_type(client, task_queue, request) == "ValidationError"

    orphan = ApartmentData(**{**apartment.__dict__, "id": str(uuid.uuid4()), "building_id": "nope"})
    request = CatalogRequest("create_apartment", apartment=orphan)
    assert await _error_type(client, task_queue, request) == "BuildingNotFound"

    reserved = ApartmentData(
        **{
            **apartment.__dict__,
            "id": str(uuid.uuid4()),
            "apartment_number": "9Z",
            "apartment_status": "RESERVED",
        }
    )
    request = CatalogRequest("create_apartment", apartment=reserved)
    assert await _error_type(client, task_queue, request) == "ValidationError"


async def test_building_for_unknown_owner(client: Client, task_queue: str) -> None:
    building = BuildingData(str(uuid.uuid4()), "ghost", "X", "1 St", "1", "C", "US", 1)
    request = CatalogRequest("create_building", building=building)
    assert await _error_type(client, task_queue, request) == "UserNotFound"
