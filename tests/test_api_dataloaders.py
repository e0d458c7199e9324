"""Nested fields are batched per request: the number of queries does not grow with the rows.

Runs the real schema against the real Postgres (no Temporal: reads only) and
counts database round trips through the request's Reader.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from api.auth import Authenticator, Principal
from api.context import RequestContext
from api.loaders import Loaders, Reader
from api.metrics import ApiMetrics
from api.schema import build_schema
from api.services import Services
from booking.settings import Settings
from tests.helpers import insert_building, insert_user, unique

SCHEMA = build_schema()


async def _building_with(pool: asyncpg.Pool, apartments: int) -> str:
    owner = await insert_user(pool, user_type="ADMIN")
    caretaker = await insert_user(pool, user_type="CARETAKER")
    building_id = await insert_building(pool, owner, apartments)
    for n in range(apartments):
        tenant = await insert_user(pool)
        # By hand: a tenant is set by a booking, never by a catalog write; these apartments
        # need one without the booking.
        await pool.execute(
            """INSERT INTO apartments (id, apartment_number, building_id, tenant_id,
                                       caretaker_id, apartment_type, apartment_status, kitchen,
                                       number_of_rooms, monthly_rent, currency)
               VALUES ($1, $2, $3, $4, $5, 'VILLA', 'OCCUPIED', true, 3, 1000, 'EUR')""",
            unique("apt"),
            str(n),
            building_id,
            tenant,
            caretaker,
        )
    return building_id


API_KEY = Principal(user_id=None, groups=frozenset(), trusted=True)


async def _run(
    pool: asyncpg.Pool, query: str, principal: Principal = API_KEY, **variables: Any
) -> tuple[dict[str, Any], int]:
    reader = Reader(pool, timeout=5)
    settings = Settings()
    context = RequestContext(
        services=Services(
            settings=settings,
            authenticator=Authenticator(settings),
            metrics=ApiMetrics(),
            pool=pool,
        ),
        loaders=Loaders(reader),
        request_id="test",
        principal=principal,
    )
    result = await SCHEMA.execute(query, variable_values=variables, context_value=context)
    assert result.errors is None, result.errors
    assert result.data is not None
    return result.data, reader.queries


NESTED = """
query ($id: ID!) {
  getBuilding(id: $id) {
    name
    apartments {
      apartmentNumber
      building { id name }
      tenant { id email }
      caretaker { id }
    }
  }
}
"""


async def test_nested_building_apartments_users_cost_a_fixed_number_of_queries(
    pool: asyncpg.Pool,
) -> None:
    small = await _building_with(pool, 2)
    large = await _building_with(pool, 8)
    small_data, small_queries = await _run(pool, NESTED, id=small)
    large_data, large_queries = await _run(pool, NESTED, id=large)
    assert len(small_data["getBuilding"]["apartments"]) == 2
    assert len(large_data["getBuilding"]["apartments"]) == 8
    assert all(a["tenant"]["id"] for a in large_data["getBuilding"]["apartments"])
    # building, its apartments, their users (tenants and caretaker in one batch);
    # Apartment.building is the building already loaded.
    assert large_queries == small_queries == 3


async def test_bookings_users_are_batched(pool: asyncpg.Pool) -> None:
    building = await _building_with(pool, 1)
    apartment = await pool.fetchval("SELECT id FROM apartments WHERE building_id = $1", building)
    for n in range(5):
        user = await insert_user(pool)
        await pool.execute(
            """INSERT INTO bookings (id, workflow_id, user_id, apartment_id, start_date, end_date,
                                     booking_status, amount_due, currency, cancellation_reason)
               VALUES ($1, $2, $3, $4, '2030-01-01', '2030-02-01', 'CANCELLED', 1000, 'EUR',
                       'EXPIRED')""",
            f"{apartment}-b{n}",
            f"booking-{apartment}-b{n}",
            user,
            apartment,
        )
    data, queries = await _run(
        pool,
        """query ($a: String!) {
             getAllBookingsPerApartment(apartmentId: $a) { id user { id lastName } }
           }""",
        a=apartment,
    )
    assert len(data["getAllBookingsPerApartment"]) == 5
    assert queries == 2  # the bookings, then every user in one batch


def _signed_in(user_id: str, *groups: str) -> Principal:
    return Principal(user_id=user_id, groups=frozenset(groups), trusted=False)


async def test_nested_accounts_show_only_what_get_user_account_would(pool: asyncpg.Pool) -> None:
    building = await _building_with(pool, 3)
    rows = await pool.fetch(
        "SELECT tenant_id, caretaker_id FROM apartments WHERE building_id = $1 ORDER BY id",
        building,
    )
    tenants = [r["tenant_id"] for r in rows]
    caretaker = rows[0]["caretaker_id"]
    query = """query ($id: String!) {
                 getAllApartmentsPerBuilding(buildingId: $id) {
                   tenant { id email } caretaker { id }
                 }
               }"""

    def seen(data: dict[str, Any], field: str) -> list[str | None]:
        return [a[field] and a[field]["id"] for a in data["getAllApartmentsPerBuilding"]]

    # A tenant sees itself and nobody else, and the hidden accounts cost no query.
    data, queries = await _run(pool, query, _signed_in(tenants[1], "Tenants"), id=building)
    assert sorted(seen(data, "tenant"), key=str) == sorted([None, None, tenants[1]], key=str)
    assert seen(data, "caretaker") == [None, None, None]
    assert queries == 2  # the apartments, then its own account
    # A stranger with no group sees no account at all, with no user query.
    data, queries = await _run(pool, query, _signed_in("stranger"), id=building)
    assert seen(data, "tenant") == seen(data, "caretaker") == [None, None, None]
    assert queries == 1
    # Admins, Caretakers and API keys see everyone, still in one batch.
    for principal in (_signed_in("boss", "Admins"), _signed_in("care", "Caretakers"), API_KEY):
        data, queries = await _run(pool, query, principal, id=building)
        assert sorted(seen(data, "tenant"), key=str) == sorted(tenants)
        assert seen(data, "caretaker") == [caretaker] * 3
        assert queries == 2
