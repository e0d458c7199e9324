"""Error shapes, production guards, catalog operations and the operations endpoints, over HTTP."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from temporalio.client import Client

from api.app import create_app
from booking.converter import DATA_CONVERTER
from booking.devstack.net import free_port
from tests.e2e.helpers import (
    API_KEY,
    APPSYNC_ERROR_KEYS,
    RESERVE,
    USER_FIELDS,
    E2EStack,
    Gql,
    ServedApp,
    create_apartment,
    create_user,
    error_types,
    paid_lease,
    reserve_input,
)

pytestmark = pytest.mark.e2e


def _assert_appsync_errors(body: dict[str, Any]) -> None:
    assert body["errors"], body
    for error in body["errors"]:
        assert set(error) == APPSYNC_ERROR_KEYS, error
        assert error["message"]


async def test_health_readiness_and_metrics(stack: E2EStack, admin: Gql) -> None:
    async with stack.api.client() as http:  # no credentials needed
        health = await http.get("/healthz")
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": "ok", "temporal": "ok", "listener": "ok"}
        assert health.headers["x-request-id"]
    await admin("{ nope }")  # one ValidationError
    await admin('{ getApartment(id: "1234567") { id } }')
    async with stack.api.client() as http:
        metrics = (await http.get("/metrics")).text
    assert 'booking_api_requests_total{method="POST",route="/graphql",status="200"}' in metrics
    assert 'booking_api_graphql_errors_total{error_type="ValidationError"}' in metrics
    assert "booking_api_request_seconds_bucket" in metrics
    assert (
        'booking_api_graphql_operations_total{field="getApartment",operation_type="query"}'
        in metrics
        or 'booking_api_graphql_operations_total{operation_type="query",field="getApartment"}'
        in metrics
    )
    assert "booking_api_db_queries_per_request_count" in metrics


def _metric(text: str, name: str, labels: str) -> float:
    """One sample of the exposition ``text`` (0 when absent)."""
    match = re.search(rf"^{name}\{{{re.escape(labels)}\}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_metrics_tell_the_temporal_calls_from_the_apis_own_time(
    stack: E2EStack, admin: Gql
) -> None:
    """Each Temporal call is timed by the update it ran; a booking's reserve and payment are
    one call each, and the time in them is part of the requests' time, never more."""
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    async with stack.api.client() as http:
        before = (await http.get("/metrics")).text
    await paid_lease(admin, tenant, apartment, nights=3)
    async with stack.api.client() as http:
        after = (await http.get("/metrics")).text

    def delta(name: str, labels: str) -> float:
        return _metric(after, name, labels) - _metric(before, name, labels)

    calls = "booking_api_temporal_call_seconds"
    assert delta(f"{calls}_count", 'update="wait_for_hold"') == 1
    assert delta(f"{calls}_count", 'update="pay"') == 1
    in_temporal = delta(f"{calls}_sum", 'update="wait_for_hold"') + delta(
        f"{calls}_sum", 'update="pay"'
    )
    requests = "booking_api_request_seconds"
    graphql = 'method="POST",route="/graphql"'
    assert delta(f"{requests}_count", graphql) == 2
    assert 0 < in_temporal < delta(f"{requests}_sum", graphql)


async def test_readiness_reports_an_unreachable_temporal(stack: E2EStack) -> None:
    dead = await Client.connect(
        f"127.0.0.1:{free_port()}", lazy=True, data_converter=DATA_CONVERTER
    )
    app = create_app(stack.settings, client=dead)
    async with ServedApp(app) as served, stack.api.client() as http:
        response = await http.get(f"http://127.0.0.1:{served.port}/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["temporal"] == "unavailable"
    assert response.json()["checks"]["database"] == "ok"


async def test_unexpected_errors_are_masked_and_logged_with_the_request_id(
    stack: E2EStack, admin: Gql, caplog: pytest.LogCaptureFixture
) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    dead = await Client.connect(
        f"127.0.0.1:{free_port()}", lazy=True, data_converter=DATA_CONVERTER
    )
    caplog.set_level(logging.ERROR, logger="api.errors")
    app = create_app(stack.settings, client=dead)
    async with ServedApp(app) as served, stack.api.client(stack.key) as http:
        response = await http.post(
            f"http://127.0.0.1:{served.port}/graphql",
            json={"query": RESERVE, "variables": reserve_input(apartment, tenant)},
        )
    body = response.json()
    assert response.status_code == 200
    _assert_appsync_errors(body)
    error = body["errors"][0]
    request_id = response.headers["x-request-id"]
    assert error["errorType"] == "InternalFailure"
    assert error["errorInfo"] == {"requestId": request_id}
    assert request_id in error["message"]
    for leak in ("Traceback", "127.0.0.1", "RPCError", "Connection", "SELECT"):
        assert leak not in error["message"]
    assert any(request_id in r.getMessage() for r in caplog.records)


async def test_validation_errors_have_appsync_shape(admin: Gql) -> None:
    cases = [
        ("{ nope }", None),
        ("query { getApartment(id: ) { id } }", None),  # syntax error
        (RESERVE, reserve_input("a", "u", startDate="2031-13-01")),  # not an AWSDate
        (RESERVE, {"input": {"apartmentId": "a"}}),  # missing fields
        ('query { getBooking(id: "x") { holdExpiresAt(x: 1) } }', None),
    ]
    for query, variables in cases:
        body = await admin(query, variables)
        _assert_appsync_errors(body)
        assert error_types(body) == ["ValidationError"] * len(body["errors"]), body
        assert body["data"] is None
    body = await admin(RESERVE, reserve_input("a", "u", startDate="2031-13-01"))
    assert "AWSDate" in body["errors"][0]["message"]
    body = await admin("{ nope }")
    assert body["errors"][0]["locations"] == [{"line": 1, "column": 3, "sourceName": None}]


async def test_aws_datetime_output_is_utc_with_z(admin: Gql) -> None:
    body = await admin('query { getApartment(id: "1234567") { createdOn } }')
    created = body["data"]["getApartment"]["createdOn"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z", created), created


async def test_query_depth_and_size_limits(admin: Gql) -> None:
    deep = 'query { getApartment(id: "1234567") { ' + "building { apartments { " * 6
    deep += "id" + " } }" * 6 + " } }"
    body = await admin(deep)
    # Too deep, and (six nested lists) far too costly: both refusals, nothing ran.
    assert error_types(body) == ["ValidationError", "ValidationError"]
    assert "depth" in body["errors"][0]["message"]
    assert "BOOKING_GRAPHQL_MAX_COST" in body["errors"][1]["message"]
    assert body["data"] is None
    huge = "query { " + " ".join(f'a{i}: getApartment(id: "x") {{ id }}' for i in range(400))
    huge += " }"
    body = await admin(huge)
    assert error_types(body)[0] == "ValidationError"


async def test_get_queries_and_refused_get_mutations(stack: E2EStack) -> None:
    async with stack.api.client(stack.key) as http:
        response = await http.get(
            "/graphql", params={"query": 'query { getApartment(id: "1234567") { id } }'}
        )
        assert response.status_code == 200
        assert response.json() == {"data": {"getApartment": {"id": "1234567"}}}
        response = await http.get(
            "/graphql", params={"query": 'mutation { deleteUserAccount(id: "x") }'}
        )
        assert 400 <= response.status_code < 500
        _assert_appsync_errors(response.json())
        response = await http.post(
            "/graphql", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert response.status_code == 400
        _assert_appsync_errors(response.json())


async def test_introspection_can_be_switched_off(stack: E2EStack) -> None:
    query = {"query": "{ __schema { queryType { name } } }"}
    async with stack.api.client(stack.key) as http:
        assert (await http.post("/graphql", json=query)).json()["data"] == {
            "__schema": {"queryType": {"name": "Query"}}
        }
    closed = stack.settings.model_copy(update={"introspection": False})
    async with ServedApp(create_app(closed)) as served, stack.api.client(stack.key) as http:
        body = (await http.post(f"http://127.0.0.1:{served.port}/graphql", json=query)).json()
    assert error_types(body) and set(error_types(body)) == {"ValidationError"}
    assert "introspection" in body["errors"][0]["message"].lower()
    assert body["data"] is None


def test_dev_secrets_are_refused_outside_dev(stack: E2EStack) -> None:
    from booking.errors import ConfigurationError

    for update in (
        {"api_keys": ("dev-api-key",)},
        {"jwt_secret": "dev-jwt-secret"},
        {"jwt_secret": "short"},
    ):
        with pytest.raises(ConfigurationError):
            create_app(stack.settings.model_copy(update=update))
    create_app(stack.settings.model_copy(update={"api_keys": ("dev-api-key",), "dev_mode": True}))


# -- catalog operations ------------------------------------------------------------------


async def test_user_account_lifecycle(admin: Gql) -> None:
    user_id = await create_user(admin, "CARETAKER")
    read = f"query ($id: ID!) {{ getUserAccount(id: $id) {{ {USER_FIELDS} }} }}"
    user = (await admin(read, {"id": user_id}))["data"]["getUserAccount"]
    assert user["userType"] == "CARETAKER" and user["updatedOn"] is None
    assert user["createdOn"].endswith("Z")

    body = await admin(
        f"""mutation ($input: UpdateUserInput!) {{
              updateUserAccount(input: $input) {{ {USER_FIELDS} }} }}""",
        {
            "input": {
                "id": user_id,
                "firstName": "New",
                "lastName": "Name",
                "verified": True,
                "userType": "ADMIN",
            }
        },
    )
    updated = body["data"]["updateUserAccount"]
    assert (updated["firstName"], updated["userType"]) == ("New", "ADMIN")
    assert updated["updatedOn"] is not None and updated["email"] == user["email"]

    duplicate = await admin(
        """mutation ($input: UserInput!) { createUserAccount(input: $input) { id } }""",
        {
            "input": {
                "firstName": "D",
                "lastName": "D",
                "email": user["email"],
                "verified": True,
                "userType": "TENANT",
            }
        },
    )
    assert error_types(duplicate) == ["ValidationError"]

    deleted = await admin("mutation ($id: ID!) { deleteUserAccount(id: $id) }", {"id": user_id})
    assert deleted == {"data": {"deleteUserAccount": True}}
    gone = await admin(read, {"id": user_id})
    assert error_types(gone) == ["UserNotFound"]
    assert gone["data"] is None  # User! is non-null: the error nulls the parent


async def test_get_all_user_accounts_pages_with_an_opaque_token(admin: Gql) -> None:
    made = {await create_user(admin) for _ in range(3)}
    seen: list[str] = []
    token = None
    query = """query ($p: Pagination) {
                 getAllUserAccounts(pagination: $p) { items { id } nextToken } }"""
    for _ in range(1000):
        body = await admin(query, {"p": {"limit": 7, "nextToken": token}})
        page = body["data"]["getAllUserAccounts"]
        assert len(page["items"]) <= 7
        seen += [u["id"] for u in page["items"]]
        token = page["nextToken"]
        if token is None:
            break
    assert made <= set(seen)
    assert len(seen) == len(set(seen))  # no user twice across pages
    body = await admin(query, {"p": {"nextToken": "garbage"}})
    assert error_types(body) == ["ValidationError"]
    body = await admin(query, {"p": {"limit": 0}})
    assert error_types(body) == ["ValidationError"]


async def test_buildings_and_apartments(admin: Gql) -> None:
    building, apartment = await create_apartment(admin, rent=123_456, currency="CHF")
    body = await admin(
        """query ($b: String!, $id: ID!) {
             getAllApartmentsPerBuilding(buildingId: $b) {
               id apartmentNumber apartmentType apartmentStatus kitchen numberOfRooms
               monthlyRent currency createdOn tenant { id } caretaker { id }
               building { id name numberOfApartments address { city country } updateOn }
             }
             getBuilding(id: $id) { id apartments { id } }
           }""",
        {"b": building, "id": building},
    )
    assert "errors" not in body, body
    [listed] = body["data"]["getAllApartmentsPerBuilding"]
    assert listed["id"] == apartment
    assert (listed["monthlyRent"], listed["currency"]) == (123_456, "CHF")
    assert listed["apartmentStatus"] == "VACANT"
    assert listed["tenant"] is None and listed["caretaker"] is None
    assert listed["building"]["address"] == {"city": "Berlin", "country": "DE"}
    assert body["data"]["getBuilding"] == {"id": building, "apartments": [{"id": apartment}]}
    missing = await admin('query { getApartment(id: "nope") { id } getBooking(id: "nope") { id } }')
    assert missing == {"data": {"getApartment": None, "getBooking": None}}

    reserved = await admin(
        """mutation ($input: ApartmentInput) { createApartment(input: $input) { id } }""",
        {
            "input": {
                "apartmentNumber": "9",
                "buildingId": building,
                "numberOfRooms": 1,
                "kitchen": False,
                "apartmentType": "VILLA",
                "apartmentStatus": "RESERVED",
            }
        },
    )
    assert error_types(reserved) == ["ValidationError"]
    no_input = await admin("mutation { createApartment { id } }")
    assert error_types(no_input) == ["ValidationError"]
    unknown_building = await admin(
        """mutation ($input: ApartmentInput) { createApartment(input: $input) { id } }""",
        {
            "input": {
                "apartmentNumber": "9",
                "buildingId": f"nope-{uuid.uuid4()}",
                "numberOfRooms": 1,
                "kitchen": False,
                "apartmentType": "VILLA",
                "apartmentStatus": "VACANT",
            }
        },
    )
    assert error_types(unknown_building) == ["BuildingNotFound"]


async def test_buildings_list_and_booking_pages(admin: Gql) -> None:
    tenant = await create_user(admin)
    building, apartment = await create_apartment(admin)
    seen: list[str] = []
    token = None
    for _ in range(1000):
        body = await admin(
            """query ($p: Pagination) { getAllBuildings(pagination: $p) {
                 items { id } nextToken } }""",
            {"p": {"limit": 50, "nextToken": token}},
        )
        page = body["data"]["getAllBuildings"]
        seen += [b["id"] for b in page["items"]]
        token = page["nextToken"]
        if token is None:
            break
    assert building in seen

    ids = []
    for _ in range(3):
        body = await admin(RESERVE, reserve_input(apartment, tenant))
        booking_id = body["data"]["reserveApartment"]["id"]
        ids.append(booking_id)
        await admin("mutation ($id: ID!) { cancelBooking(id: $id) { id } }", {"id": booking_id})
    pages = []
    token = None
    while True:
        body = await admin(
            """query ($a: String!, $p: Pagination) { listBookingsPerApartment(
                 apartmentId: $a, pagination: $p) { items { id } nextToken } }""",
            {"a": apartment, "p": {"limit": 2, "nextToken": token}},
        )
        page = body["data"]["listBookingsPerApartment"]
        pages.append([b["id"] for b in page["items"]])
        token = page["nextToken"]
        if token is None:
            break
    assert pages == [ids[:2], ids[2:]]


async def test_api_key_header_is_required_exactly(stack: E2EStack) -> None:
    for near_miss in (API_KEY + "x", API_KEY[:-1], API_KEY.upper()):
        async with stack.api.client({"x-api-key": near_miss}) as http:
            response = await http.post("/graphql", json={"query": "{ __typename }"})
            assert response.status_code == 401


async def test_oversized_bodies_are_refused(stack: E2EStack) -> None:
    big = b'{"query": "{ __typename }", "variables": {"x": "' + b"a" * (2 * 1024 * 1024) + b'"}}'
    async with stack.api.client(stack.key) as http:
        declared = await http.post(
            "/graphql", content=big, headers={"content-type": "application/json"}
        )
        assert declared.status_code == 413
        _assert_appsync_errors(declared.json())

        async def chunks() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 64 * 1024):
                yield big[start : start + 64 * 1024]

        streamed = await http.post(
            "/graphql", content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413
