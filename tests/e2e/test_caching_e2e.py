"""HTTP caching of reads against the real API (real HTTP, worker, Temporal, Postgres).

Pins what a CDN in front relies on: the headers per operation, 304s, persisted
queries, that a hold or a payment shows up in a public read within max-age, and
that no private answer is ever marked public.
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.helpers import E2EStack
from tests.helpers import Rental, make_rental

pytestmark = pytest.mark.e2e

AVAILABILITY = """query Availability($buildingId: String!) {
  getAllApartmentsPerBuilding(buildingId: $buildingId) {
    id apartmentStatus monthlyRent currency
  }
}"""
RESERVE = """mutation R($input: ReserveApartmentInput!) {
  reserveApartment(input: $input) { id bookingStatus amountDue currency }
}"""
PAY = """mutation P($input: PayBookingInput!) { payBooking(input: $input) { id bookingStatus } }"""


def apq_params(query: str, variables: dict[str, Any], *, with_query: bool) -> dict[str, str]:
    sha = hashlib.sha256(query.encode()).hexdigest()
    params = {
        "operationName": query.split()[1].split("(")[0],
        "variables": json.dumps(variables, separators=(",", ":")),
        "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha}}),
    }
    if with_query:
        params["query"] = query
    return params


async def read_availability(
    http: httpx.AsyncClient, rental: Rental, etag: str | None = None
) -> httpx.Response:
    headers = {"If-None-Match": etag} if etag else {}
    return await http.get(
        "/graphql",
        params={"query": AVAILABILITY, "variables": json.dumps({"buildingId": rental.building_id})},
        headers=headers,
    )


def status_of(response: httpx.Response, apartment_id: str) -> str:
    apartments = response.json()["data"]["getAllApartmentsPerBuilding"]
    found: str = next(a["apartmentStatus"] for a in apartments if a["id"] == apartment_id)
    return found


def max_age(response: httpx.Response) -> int:
    for part in response.headers["cache-control"].split(","):
        name, _, value = part.strip().partition("=")
        if name == "max-age":
            return int(value)
    raise AssertionError(f"no max-age in {response.headers['cache-control']}")


async def reserve(http: httpx.AsyncClient, rental: Rental) -> dict[str, Any]:
    start = date.today()  # from tonight: today's status shows it
    response = await http.post(
        "/graphql",
        json={
            "query": RESERVE,
            "variables": {
                "input": {
                    "apartmentId": rental.apartment_id,
                    "userId": rental.user_id,
                    "startDate": start.isoformat(),
                    "endDate": (start + timedelta(days=30)).isoformat(),
                }
            },
        },
    )
    assert response.headers["cache-control"] == "private, no-store"
    booking: dict[str, Any] = response.json()["data"]["reserveApartment"]
    return booking


async def test_public_read_headers_and_304(stack: E2EStack) -> None:
    rental = await make_rental(stack.pool)
    async with stack.api.client(stack.bearer(rental.user_id, "Tenants")) as http:
        first = await read_availability(http, rental)
        assert first.status_code == 200
        settings = stack.settings
        assert first.headers["cache-control"] == (
            f"public, max-age={settings.cache_max_age}, "
            f"stale-while-revalidate={settings.cache_stale_while_revalidate}"
        )
        vary = {v.strip().lower() for v in first.headers["vary"].split(",")}
        assert {"authorization", "x-api-key"} <= vary
        etag = first.headers["etag"]
        again = await read_availability(http, rental, etag)
        assert again.status_code == 304
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"].startswith("public")


async def test_a_hold_and_a_payment_show_in_public_reads_within_max_age(stack: E2EStack) -> None:
    rental = await make_rental(stack.pool)
    async with stack.api.client(stack.bearer(rental.user_id, "Tenants")) as http:
        before = await read_availability(http, rental)
        assert status_of(before, rental.apartment_id) == "VACANT"
        window = max_age(before)

        booking = await reserve(http, rental)
        held_at = time.monotonic()
        # A cache revalidating its entry (If-None-Match) once max-age is up must get
        # the new state, not a 304; the origin itself never serves stale data.
        after_hold = await read_availability(http, rental, before.headers["etag"])
        assert after_hold.status_code == 200
        assert status_of(after_hold, rental.apartment_id) == "RESERVED"
        assert time.monotonic() - held_at < window

        payment = await http.post(
            "/graphql",
            json={
                "query": PAY,
                "variables": {
                    "input": {
                        "bookingId": booking["id"],
                        "amount": booking["amountDue"],
                        "currency": booking["currency"],
                        "paymentReference": f"cache-{booking['id']}",
                    }
                },
            },
        )
        assert payment.json()["data"]["payBooking"]["bookingStatus"] == "APPROVED"
        assert payment.headers["cache-control"] == "private, no-store"
        paid_at = time.monotonic()
        after_payment = await read_availability(http, rental, after_hold.headers["etag"])
        assert after_payment.status_code == 200
        assert status_of(after_payment, rental.apartment_id) == "OCCUPIED"
        assert time.monotonic() - paid_at < window


async def test_persisted_queries_against_the_real_api(stack: E2EStack) -> None:
    rental = await make_rental(stack.pool)
    variables = {"buildingId": rental.building_id}
    async with stack.api.client(stack.key) as http:
        miss = await http.get(
            "/graphql", params=apq_params(AVAILABILITY, variables, with_query=False)
        )
        error = miss.json()["errors"][0]
        assert error["errorType"] == "PersistedQueryNotFound"
        assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
        assert miss.headers["cache-control"] == "private, no-store"

        registered = await http.get(
            "/graphql", params=apq_params(AVAILABILITY, variables, with_query=True)
        )
        assert status_of(registered, rental.apartment_id) == "VACANT"

        hit = await http.get(
            "/graphql", params=apq_params(AVAILABILITY, variables, with_query=False)
        )
        assert hit.status_code == 200
        assert status_of(hit, rental.apartment_id) == "VACANT"
        assert hit.headers["cache-control"].startswith("public, max-age=")
        assert hit.headers["etag"] == registered.headers["etag"]
        assert len(str(hit.request.url)) < len(str(registered.request.url)) - 50

        mismatch = await http.get(
            "/graphql",
            params={
                **apq_params(AVAILABILITY, variables, with_query=False),
                "query": AVAILABILITY + " ",
            },
        )
        assert mismatch.status_code == 400
        assert mismatch.json()["errors"][0]["errorType"] == "ValidationError"


async def test_no_private_answer_is_ever_public(stack: E2EStack) -> None:
    """Every Query field of the served schema, asked over GET by each kind of
    caller: only the catalogue allowlist may come back public, and never with errors."""
    rental = await make_rental(stack.pool)
    booking_id = None
    async with stack.api.client(stack.key) as admin_http:
        booking_id = (await reserve(admin_http, rental))["id"]
        introspection = await admin_http.post(
            "/graphql",
            json={
                "query": "{ __schema { queryType { fields { name args { name type { kind } } "
                "type { kind name ofType { kind name ofType { kind name ofType { name } } } } "
                "} } } }"
            },
        )
    fields = introspection.json()["data"]["__schema"]["queryType"]["fields"]
    argument_values = {
        "id": booking_id,
        "apartmentId": rental.apartment_id,
        "buildingId": rental.building_id,
    }
    selections = {
        "Apartment": "id apartmentStatus tenant { id email }",
        "Booking": "id userId bookingStatus",
        "User": "id email",
        "Building": "id name userId",
        "UsersResult": "items { id email }",
        "BuildingsResult": "items { id name }",
        "BookingsResult": "items { id userId }",
        "stepfunctions": "id arn",
    }
    queries: list[str] = []
    for field in fields:
        args = ", ".join(
            f'{a["name"]}: "{argument_values.get(a["name"], rental.user_id)}"'
            for a in field["args"]
            if a["type"]["kind"] == "NON_NULL"
        )
        named = field["type"]
        while named.get("ofType"):
            named = named["ofType"]
        selection = selections.get(named["name"], "__typename")
        queries.append(f"{{ {field['name']}{f'({args})' if args else ''} {{ {selection} }} }}")
    queries.append("{ __schema { types { name } } }")
    queries.append(
        f'{{ getApartment(id: "{rental.apartment_id}") {{ id building {{ userId }} }} }}'
    )

    callers = {
        "api-key": stack.key,
        "tenant": stack.bearer(rental.user_id, "Tenants"),
        "other-tenant": stack.bearer("someone-else", "Tenants"),
        "admin": stack.bearer("admin-user", "Admins"),
        "nobody": {},
        "forged": {"Authorization": "Bearer not.a.jwt"},
    }
    public_seen = 0
    for caller, headers in callers.items():
        async with stack.api.client(headers) as http:
            for query in queries:
                response = await http.get("/graphql", params={"query": query})
                cache_control = response.headers.get("cache-control", "")
                body = response.json()
                if "public" in cache_control:
                    public_seen += 1
                    assert response.status_code == 200, (caller, query)
                    assert not body.get("errors"), (caller, query, body)
                    assert "tenant" not in query and "email" not in query, (caller, query)
                    assert "userId" not in query, (caller, query)
                else:
                    assert cache_control == "private, no-store", (caller, query, cache_control)
    # The check is not vacuous: the public catalogue reads exist and were seen.
    assert public_seen > 0
    # Public catalogue reads with a private field picked up are private.
    async with stack.api.client(stack.key) as http:
        leaky = await http.get(
            "/graphql",
            params={
                "query": f'{{ getApartment(id: "{rental.apartment_id}") {{ id tenant {{ id }} }} }}'
            },
        )
        assert leaky.headers["cache-control"] == "private, no-store"
        clean = await http.get(
            "/graphql",
            params={
                "query": f'{{ getApartment(id: "{rental.apartment_id}") {{ id apartmentStatus }} }}'
            },
        )
        assert clean.headers["cache-control"].startswith("public")


async def test_mutations_are_never_cached(stack: E2EStack) -> None:
    rental = await make_rental(stack.pool)
    async with stack.api.client(stack.key) as http:
        over_get = await http.get(
            "/graphql", params={"query": 'mutation { cancelBooking(id: "nope") { id } }'}
        )
        assert over_get.status_code >= 400 or over_get.json().get("errors")
        assert over_get.headers["cache-control"] == "private, no-store"
        booking = await reserve(http, rental)
        cancelled = await http.post(
            "/graphql",
            json={
                "query": f'mutation {{ cancelBooking(id: "{booking["id"]}") {{ bookingStatus }} }}'
            },
        )
        assert cancelled.json()["data"]["cancelBooking"]["bookingStatus"] == "CANCELLED"
        assert cancelled.headers["cache-control"] == "private, no-store"
        assert "etag" not in cancelled.headers


async def test_page_and_assets_from_the_real_api(stack: E2EStack) -> None:
    async with stack.api.client() as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-cache"
        script = page.text.split('<script type="module" src="')[1].split('"')[0]
        asset = await http.get(script)
        assert asset.status_code == 200
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["content-type"].startswith("text/javascript")
        # The e2e stack is not in dev mode: no token minting endpoint.
        assert (await http.post("/dev/token")).status_code in (404, 405)
