"""Unit tests of api.http_cache, api.persisted_queries and api.web around a fake endpoint.

The fake endpoint only echoes what reached it, so these tests pin the HTTP
behaviour (headers, 304s, persisted queries) of the middleware alone; the real
API is exercised in tests/e2e/test_web_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from api import http_cache, persisted_queries, web
from api.graphql_http import RequestRefused, read_request, register_persisted
from booking.settings import DEV_JWT_SECRET, Settings

SECRET = "a-test-secret-of-at-least-32-bytes!"
PUBLIC_QUERY = 'query Apts { getAllApartmentsPerBuilding(buildingId: "b1") { id apartmentStatus } }'


def make_settings(**env: Any) -> Settings:
    base: dict[str, Any] = {
        "BOOKING_CACHE_MAX_AGE": 7,
        "BOOKING_CACHE_STALE_WHILE_REVALIDATE": 11,
    }
    base.update(env)
    return Settings(**base)


class FakeGraphQL:
    """The real view's first steps without GraphQL: 401 without credentials, then the request
    read as the view reads it (``read_request``: checks and persisted queries) and left in the
    scope's state for the middleware; records what it ran, answers an error for queries
    mentioning ``boom``, else echoes the query."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.counter = 0
        self.store = persisted_queries.PersistedQueryStore()

    async def handle(self, request: Request) -> Response:
        if not request.headers.get("authorization") and not request.headers.get("x-api-key"):
            return JSONResponse(
                {"errors": [{"errorType": "UnauthorizedException", "message": "no"}]},
                status_code=401,
            )
        body = await request.body() if request.method == "POST" else b""
        try:
            read = read_request(
                request.method,
                request.query_params,
                request.headers.get("content-type", ""),
                body,
                self.store,
            )
        except RequestRefused as refused:
            return JSONResponse(refused.body, status_code=refused.status)
        request.scope.setdefault("state", {})[http_cache.REQUEST_STATE] = read
        self.seen.append(
            {"query": read.query, "operationName": read.operation_name, "variables": read.variables}
        )
        query = read.query or ""
        if "boom" in query:
            return JSONResponse({"data": None, "errors": [{"message": "boom"}]})
        # As the view does once a query has run (parsed and validated).
        register_persisted(self.store, read, "api-key")
        # The counter changes the body on demand, like a hold changing availability.
        return JSONResponse({"data": {"echo": query, "version": self.counter}})


def make_app(settings: Settings) -> tuple[Starlette, FakeGraphQL]:
    fake = FakeGraphQL()
    app = Starlette(
        routes=[*web.routes(settings), Route("/graphql", fake.handle, methods=["GET", "POST"])]
    )
    app.add_middleware(http_cache.CachingMiddleware, settings=settings)
    return app, fake


@pytest.fixture
def settings() -> Settings:
    return make_settings()


@pytest.fixture
async def client_and_fake(settings: Settings) -> Any:
    app, fake = make_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://test", headers={"x-api-key": "k"}
    ) as client:
        yield client, fake


def sha(query: str) -> str:
    return hashlib.sha256(query.encode()).hexdigest()


def apq(query_hash: str) -> str:
    return json.dumps({"persistedQuery": {"version": 1, "sha256Hash": query_hash}})


# ------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    "query",
    [
        PUBLIC_QUERY,
        '{ getApartment(id: "1") { id apartmentNumber apartmentStatus monthlyRent currency '
        "building { id name address { city country } } } }",
        '{ getAllApartmentsPerBuilding(buildingId: "b") { ...A } } '
        "fragment A on Apartment { id apartmentStatus __typename }",
        '{ getApartment(id: "1") { ... on Apartment { id } ... { kitchen } } }',
        '{ getApartment(id: "1") { building { apartments { id apartmentStatus } } } }',
    ],
)
def test_catalogue_reads_are_public(query: str) -> None:
    assert http_cache.classify(query, None) == "public"


@pytest.mark.parametrize(
    "query",
    [
        '{ getBooking(id: "1") { id } }',
        '{ getUserAccount(id: "1") { email } }',
        "{ getStepFunctions { id arn } }",
        '{ getApartment(id: "1") { tenant { email } } }',
        '{ getApartment(id: "1") { caretaker { id } } }',
        '{ getApartment(id: "1") { building { userId } } }',
        '{ getApartment(id: "1") { id } getBooking(id: "2") { id } }',
        '{ getApartment(id: "1") { ...T } } fragment T on Apartment { tenant { id } }',
        '{ getApartment(id: "1") { ...T } } fragment T on Apartment { ...T }',
        '{ getApartment(id: "1") { ... on Booking { userId } } }',
        '{ getApartment(id: "1") { building } }',
        '{ getApartment(id: "1") { id { x } } }',
        "{ __schema { types { name } } }",
        '{ getAllBookingsPerApartment(apartmentId: "1") { id } }',
        "{ not valid",
        "",
    ],
)
def test_everything_else_is_private(query: str) -> None:
    assert http_cache.classify(query, None) == "private"


def test_operation_name_picks_the_operation() -> None:
    document = (
        'query Pub { getApartment(id: "1") { id } } '
        'query Priv { getBooking(id: "1") { id } } '
        'mutation M { cancelBooking(id: "1") { id } }'
    )
    assert http_cache.classify(document, "Pub") == "public"
    assert http_cache.classify(document, "Priv") == "private"
    assert http_cache.classify(document, "M") == "mutation"
    assert http_cache.classify(document, None) == "private"  # ambiguous without a name
    assert http_cache.classify(document, "Missing") == "private"


# ------------------------------------------------------------------ headers and 304


async def test_public_get_is_cacheable_with_vary_and_etag(client_and_fake: Any) -> None:
    client, _ = client_and_fake
    response = await client.get("/graphql", params={"query": PUBLIC_QUERY})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=7, stale-while-revalidate=11"
    vary = {v.strip().lower() for v in response.headers["vary"].split(",")}
    assert {"x-api-key", "authorization"} <= vary
    assert re.fullmatch(r'"[0-9a-f]{40}"', response.headers["etag"])
    assert response.headers["content-length"] == str(len(response.content))


async def test_if_none_match_gives_304_until_the_data_changes(client_and_fake: Any) -> None:
    client, fake = client_and_fake
    first = await client.get("/graphql", params={"query": PUBLIC_QUERY})
    etag = first.headers["etag"]
    again = await client.get(
        "/graphql", params={"query": PUBLIC_QUERY}, headers={"If-None-Match": etag}
    )
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["cache-control"].startswith("public, max-age=7")
    weak = await client.get(
        "/graphql", params={"query": PUBLIC_QUERY}, headers={"If-None-Match": f'"x", W/{etag}'}
    )
    assert weak.status_code == 304
    fake.counter += 1  # the data changed (say, a hold was placed)
    changed = await client.get(
        "/graphql", params={"query": PUBLIC_QUERY}, headers={"If-None-Match": etag}
    )
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["data"]["version"] == 1


@pytest.mark.parametrize(
    "query",
    ['{ getBooking(id: "1") { id } }', '{ getApartment(id: "1") { tenant { email } } }'],
)
async def test_private_get_is_no_store(client_and_fake: Any, query: str) -> None:
    client, _ = client_and_fake
    response = await client.get("/graphql", params={"query": query})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-store"
    assert "etag" in response.headers
    assert "x-api-key" in response.headers["vary"]


async def test_errors_and_401_are_never_public(client_and_fake: Any) -> None:
    client, _ = client_and_fake
    failing = '{ getApartment(id: "boom") { id } }'
    response = await client.get("/graphql", params={"query": failing})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "private, no-store"
    unauthenticated = await client.get(
        "/graphql", params={"query": PUBLIC_QUERY}, headers={"x-api-key": ""}
    )
    assert unauthenticated.status_code == 401
    assert unauthenticated.headers["cache-control"] == "private, no-store"


async def test_mutations_and_posts_are_never_cached(client_and_fake: Any) -> None:
    client, _ = client_and_fake
    mutation = 'mutation { cancelBooking(id: "1") { id } }'
    over_get = await client.get("/graphql", params={"query": mutation})
    assert over_get.headers["cache-control"] == "private, no-store"
    for query in (mutation, PUBLIC_QUERY):
        posted = await client.post("/graphql", json={"query": query})
        assert posted.status_code == 200
        assert posted.headers["cache-control"] == "private, no-store"
        assert "etag" not in posted.headers
        assert posted.json()["data"]["echo"] == query


async def test_other_paths_pass_through(client_and_fake: Any) -> None:
    client, _ = client_and_fake
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert "etag" not in response.headers


# ------------------------------------------------------------------ persisted queries


async def test_apq_get_miss_register_then_hit(client_and_fake: Any) -> None:
    client, fake = client_and_fake
    query_hash = sha(PUBLIC_QUERY)
    params = {"operationName": "Apts", "variables": "{}", "extensions": apq(query_hash)}
    miss = await client.get("/graphql", params=params)
    assert miss.status_code == 200
    error = miss.json()["errors"][0]
    assert error["message"] == "PersistedQueryNotFound"
    assert error["errorType"] == "PersistedQueryNotFound"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    assert set(error) >= {"message", "errorType", "errorInfo", "path", "locations", "data"}
    assert miss.headers["cache-control"] == "private, no-store"
    assert fake.seen == []  # the GraphQL view never saw it

    register = await client.get("/graphql", params={**params, "query": PUBLIC_QUERY})
    assert register.status_code == 200
    assert register.headers["cache-control"].startswith("public")

    hit = await client.get("/graphql", params=params)
    assert hit.status_code == 200
    assert hit.json()["data"]["echo"] == PUBLIC_QUERY
    assert hit.headers["cache-control"].startswith("public, max-age=7")
    assert fake.seen[-1]["query"] == PUBLIC_QUERY
    assert fake.seen[-1]["operationName"] == "Apts"
    # Same bytes, same ETag, whichever way the query travelled.
    assert hit.headers["etag"] == register.headers["etag"]


async def test_apq_post_register_and_hit(client_and_fake: Any) -> None:
    client, fake = client_and_fake
    mutation = 'mutation M { cancelBooking(id: "1") { id } }'
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": sha(mutation)}}
    miss = await client.post("/graphql", json={"extensions": extensions})
    assert miss.json()["errors"][0]["errorType"] == "PersistedQueryNotFound"
    await client.post("/graphql", json={"query": mutation, "extensions": extensions})
    hit = await client.post("/graphql", json={"extensions": extensions, "variables": {"a": 1}})
    assert hit.status_code == 200
    assert hit.json()["data"]["echo"] == mutation
    assert fake.seen[-1]["variables"] == {"a": 1}
    assert hit.headers["cache-control"] == "private, no-store"


async def test_apq_rejects_a_wrong_hash_and_does_not_register_it(client_and_fake: Any) -> None:
    client, _ = client_and_fake
    wrong = "0" * 64
    response = await client.get(
        "/graphql", params={"query": PUBLIC_QUERY, "extensions": apq(wrong)}
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["message"] == "provided sha does not match query"
    miss = await client.get("/graphql", params={"extensions": apq(wrong)})
    assert miss.json()["errors"][0]["errorType"] == "PersistedQueryNotFound"


@pytest.mark.parametrize(
    "extensions",
    [
        {"persistedQuery": {"version": 2, "sha256Hash": "a" * 64}},
        {"persistedQuery": {"version": 1, "sha256Hash": "not-hex"}},
        {"persistedQuery": "yes"},
    ],
)
async def test_apq_rejects_malformed_extensions(
    client_and_fake: Any, extensions: dict[str, Any]
) -> None:
    client, _ = client_and_fake
    response = await client.get("/graphql", params={"extensions": json.dumps(extensions)})
    assert response.status_code == 400
    assert response.json()["errors"][0]["errorType"] == "ValidationError"


def test_apq_store_keeps_each_caller_to_its_quota_and_never_evicts_another() -> None:
    store = persisted_queries.PersistedQueryStore(max_entries=10, max_per_caller=3)
    store.put("b1", "qb1", "tenant-b")
    for i in range(50):
        store.put(f"a{i}", f"qa{i}", "tenant-a")
    assert store.get("b1") == "qb1"
    assert store.owned_by("tenant-a") == 3
    assert [store.get(f"a{i}") for i in (46, 47, 48, 49)] == [None, "qa47", "qa48", "qa49"]
    # A hash another caller sends again stays its first owner's.
    assert not store.put("b1", "qb1", "tenant-a")
    assert store.owned_by("tenant-b") == 1 and store.owned_by("tenant-a") == 3


def test_apq_registers_only_after_the_query_ran() -> None:
    """read_request resolves a new query but stores nothing: junk that never parses is never
    kept; register_persisted keeps it once the view has run it."""
    store = persisted_queries.PersistedQueryStore()
    query = "{ __typename }"
    digest = hashlib.sha256(query.encode()).hexdigest()
    extensions = {"persistedQuery": {"version": 1, "sha256Hash": digest}}
    body = json.dumps({"query": query, "extensions": extensions}).encode()
    read = read_request("POST", {}, "application/json", body, store)
    assert read.register == digest and len(store) == 0
    register_persisted(store, read, "api-key")
    assert store.get(digest) == query
    again = read_request("POST", {}, "application/json", body, store)
    assert again.register is None  # known already


def test_apq_store_is_bounded_lru() -> None:
    store = persisted_queries.PersistedQueryStore(max_entries=2)
    store.put("a", "qa", "one")
    store.put("b", "qb", "two")
    assert store.get("a") == "qa"  # a is now the most recent
    store.put("c", "qc", "three")
    assert store.get("b") is None
    assert store.get("a") == "qa"
    assert len(store) == 2


# ------------------------------------------------------------------ page and assets


async def test_page_links_hashed_immutable_assets(client_and_fake: Any) -> None:
    client, _ = client_and_fake
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert "{{" not in page.text
    names = re.findall(r"/static/(app\.[0-9a-f]{12}\.(?:js|css))", page.text)
    assert sorted(n.rsplit(".", 1)[1] for n in names) == ["css", "js"]
    for name in names:
        asset = await client.get(f"/static/{name}")
        assert asset.status_code == 200
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        digest = name.split(".")[1]
        assert hashlib.sha256(asset.content).hexdigest()[:12] == digest
        revalidated = await client.get(
            f"/static/{name}", headers={"If-None-Match": asset.headers["etag"]}
        )
        assert revalidated.status_code == 304
    page_again = await client.get("/", headers={"If-None-Match": page.headers["etag"]})
    assert page_again.status_code == 304
    stale_name = await client.get("/static/app.000000000000.js")
    assert stale_name.status_code == 404
    assert stale_name.headers["cache-control"] == "no-store"
    unhashed = await client.get("/static/app.js")
    assert unhashed.status_code == 404


def test_asset_names_follow_content(tmp_path: Any) -> None:
    for name in web.ASSET_SOURCES:
        (tmp_path / name).write_text("one")
    before = web.build_assets(tmp_path)
    (tmp_path / "app.js").write_text("two")
    after = web.build_assets(tmp_path)
    assert before["app.js"].url_name != after["app.js"].url_name
    assert before["app.css"].url_name == after["app.css"].url_name


async def test_dev_token_endpoint_only_in_dev_mode_with_the_dev_secret() -> None:
    production, _ = make_app(make_settings(BOOKING_JWT_SECRET=SECRET))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=production), base_url="http://test"
    ) as client:
        assert (await client.post("/dev/token")).status_code in (404, 405)
        page = await client.get("/")
        assert 'data-dev-mode="false"' in page.text

    # `booking dev` with an operator's own secret: no route mints tokens signed with it.
    own_secret, _ = make_app(make_settings(BOOKING_JWT_SECRET=SECRET, BOOKING_DEV_MODE=True))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=own_secret), base_url="http://test"
    ) as client:
        assert (await client.post("/dev/token", params={"userId": "x"})).status_code in (404, 405)

    dev, _ = make_app(make_settings(BOOKING_JWT_SECRET=DEV_JWT_SECRET, BOOKING_DEV_MODE=True))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dev), base_url="http://test"
    ) as client:
        response = await client.post("/dev/token", params={"userId": "tenant-9"})
        assert response.status_code == 200
        assert response.headers["cache-control"] == "private, no-store"
        claims = jwt.decode(response.json()["token"], DEV_JWT_SECRET, algorithms=["HS256"])
        assert claims["sub"] == "tenant-9"
        assert claims["cognito:groups"] == ["Tenants"]
        page = await client.get("/")
        assert 'data-dev-mode="true"' in page.text


async def test_dev_token_defaults_to_the_seeded_demo_tenant() -> None:
    dev, _ = make_app(make_settings(BOOKING_JWT_SECRET=DEV_JWT_SECRET, BOOKING_DEV_MODE=True))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=dev), base_url="http://test"
    ) as client:
        body = (await client.post("/dev/token")).json()
    assert body["userId"] == "demo-tenant"
    assert body["buildingId"] == "demo-building"
    assert jwt.decode(body["token"], DEV_JWT_SECRET, algorithms=["HS256"])["sub"] == "demo-tenant"
