"""Hardening, round 3: each class an outside round found, tried as a class.

1. a credential is replaced on a live connection (a second ``connection_init``), on every
   WebSocket protocol;
2. an anonymous peer holds a connection slot: a slow body on any path, a WebSocket that never
   says ``connection_init`` on any protocol;
3. a request head of any size is read whole (request line, one header, many headers);
4. a correctly signed token whose claims do not convert (an ``exp`` past the year 9999 or not
   a number, a ``sub`` that is not an id), on every way a credential comes in;
8. a subscription sent over plain HTTP (POST and GET) answers a success shape;
9. an account's owner writes what is not true of it (type, verified, someone else's email),
   or a create repeated with other details answers as if it had been made;
10. persisted queries: junk registered, and one caller evicting another's queries;
11-14. a newcomer's first hour: CORS under ``booking dev``, the favicon, the token hint,
   WebSockets closed with "come back" (1012) when an API process stops.

(5, 6, 7: ids, ``booking doctor`` and payments, are tried in tests/test_contract_ids.py,
tests/test_doctor.py, tests/test_workflow.py and tests/test_workflow_waitlist.py.)
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin, Subprotocol

from api import graphql_view, realtime, ws_support
from api.app import create_app
from api.persisted_queries import APQ_MAX_ENTRIES_PER_CALLER
from booking.tokens import mint_token
from tests.e2e.helpers import (
    API_KEY,
    BOOKING_FIELDS,
    JWT_SECRET,
    RESERVE,
    RSA_KID,
    TRANSPORT_WS,
    Api,
    E2EStack,
    Gql,
    ServedApp,
    create_apartment,
    create_user,
    error_types,
    hs256_over,
    reserve_input,
)

pytestmark = pytest.mark.e2e

LEGACY_WS = Subprotocol("graphql-ws")
SUBSCRIPTION = (
    f"subscription ($id: ID!) {{ onBookingStatusChanged(id: $id) {{ {BOOKING_FIELDS} }} }}"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _claims_json(**raw: str) -> str:
    """Claims as JSON text, each value given as the JSON it is to be (``exp="1e400"``)."""
    values = {
        "sub": '"someone"',
        "cognito:groups": '["Admins"]',
        "exp": str(int(time.time()) + 600),
        **raw,
    }
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in values.items()) + "}"


# Signed with the API's own secret, each with one claim that cannot be used.
UNCONVERTIBLE_CLAIMS = {
    "exp-past-9999": _claims_json(exp="253402300800"),
    "exp-1e20": _claims_json(exp="1e20"),
    "exp-infinite": _claims_json(exp="1e400"),
    "exp-nan": _claims_json(exp="NaN"),
    "exp-negative-huge": _claims_json(exp="-1e300"),
    "exp-string": _claims_json(exp='"tomorrow"'),
    "exp-list": _claims_json(exp="[1]"),
    "iat-infinite": _claims_json(iat="1e400"),
    "nbf-infinite": _claims_json(nbf="1e400"),
    "sub-number": _claims_json(sub="42"),
    "sub-control-character": _claims_json(sub='"a\\u0000b"'),
    "sub-too-long": _claims_json(sub=json.dumps("x" * 500)),
    "groups-string": _claims_json(**{"cognito:groups": '"Admins"'}),
}


# -- 1. a second connection_init -------------------------------------------------------------


async def _next(ws: ClientConnection) -> dict[str, Any]:
    """The next message that is not a keep-alive (``ka``, ``ping``, ``pong``)."""
    while True:
        message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if message["type"] not in ("ka", "ping", "pong"):
            return message


async def _closed_code(ws: ClientConnection, within: float = 10) -> int | None:
    """Read until the server closes; the close code it sent."""
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), within)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_second_connection_init_is_refused_and_the_first_credential_stays(
    stack: E2EStack, admin: Gql, protocol: Subprotocol
) -> None:
    """The round's example: an Admin token valid for 3 s authorizes a subscription to tenant
    A's booking; a second connection_init with tenant X's long token must not keep it alive."""
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    booking = (await admin(RESERVE, reserve_input(apartment, tenant)))["data"]["reserveApartment"]
    short_admin = stack.token("admin-short", ["Admins"], ttl=3)
    other = stack.token("tenant-x", ["Tenants"], ttl=3600)
    started = time.monotonic()
    async with connect(stack.api.ws_url, subprotocols=[protocol]) as ws:
        await ws.send(
            json.dumps({"type": "connection_init", "payload": {"Authorization": short_admin}})
        )
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        kind = "subscribe" if protocol == TRANSPORT_WS else "start"
        payload = {"query": SUBSCRIPTION, "variables": {"id": booking["id"]}}
        await ws.send(json.dumps({"id": "1", "type": kind, "payload": payload}))
        first = await _next(ws)
        assert first["payload"]["data"]["onBookingStatusChanged"]["id"] == booking["id"]
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": other}}))
        code = await _closed_code(ws)
    assert code == 4429
    assert time.monotonic() - started < 10


async def test_a_second_connection_init_on_the_realtime_path_changes_nothing(
    stack: E2EStack,
) -> None:
    """AppSync's protocol takes its credential at the upgrade: a second connection_init is an
    error frame, and the connection still ends when the first credential expires."""
    short = stack.token("admin-short", ["Admins"], ttl=2)
    auth = {"host": stack.api.url.split("://", 1)[1], "Authorization": short}
    header = base64.b64encode(json.dumps(auth).encode()).decode()
    url = f"{stack.api.ws_url}/realtime?header={header}&payload=e30="
    started = time.monotonic()
    async with connect(url, subprotocols=[LEGACY_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "connection_init"}))
        refused = await _next(ws)
        assert refused["type"] == "error", refused
        assert await _closed_code(ws) == 4401
    assert time.monotonic() - started < 10


# -- 2. anonymous peers and connection slots ---------------------------------------------------


async def _raw(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


@pytest.fixture(scope="module")
async def tight_api(stack: E2EStack) -> AsyncIterator[Api]:
    """An API with few connection slots and a short body deadline."""
    api = await stack.extra_api(
        "api-tight", BOOKING_HTTP_MAX_CONNECTIONS="6", BOOKING_HTTP_BODY_TIMEOUT_SECONDS="2"
    )
    try:
        yield api
    finally:
        stack.stop_api("api-tight")


SLOW_BODIES = {
    "webhook": b"POST /webhooks/payments HTTP/1.1\r\nHost: api\r\n"
    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    "graphql-anonymous": b"POST /graphql HTTP/1.1\r\nHost: api\r\n"
    b"Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    "graphql-with-key": b"POST /graphql HTTP/1.1\r\nHost: api\r\nx-api-key: "
    + API_KEY.encode()
    + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{",
    "chunked": b"POST /webhooks/payments HTTP/1.1\r\nHost: api\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
}


async def test_slow_bodies_on_any_path_are_cut_off_and_their_slots_come_back(
    tight_api: Api,
) -> None:
    """Every slot held by a body that never finishes: 503 for everyone, until the body
    deadline frees them all; then requests are served again."""
    held = []
    for start in list(SLOW_BODIES.values()) + [SLOW_BODIES["webhook"]] * 2:
        reader, writer = await _raw(tight_api.url)
        writer.write(start)
        await writer.drain()
        held.append((reader, writer))
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=tight_api.url, timeout=10) as http:
        assert (await http.get("/healthz")).status_code == 503
        # Each slow body's connection is closed by the server (EOF), within the deadline.
        for reader, _ in held:
            await asyncio.wait_for(reader.read(), 10)
        elapsed = time.monotonic() - started
        assert elapsed < 6, elapsed  # BOOKING_HTTP_BODY_TIMEOUT_SECONDS=2
        assert (await http.get("/healthz")).status_code == 200
    for _, writer in held:
        writer.close()


async def test_a_body_that_arrives_in_time_is_served(tight_api: Api) -> None:
    """The deadline is for the whole body, not a cut-off for slow but steady clients."""
    body = json.dumps({"query": "{ __typename }"}).encode()
    reader, writer = await _raw(tight_api.url)
    writer.write(
        b"POST /graphql HTTP/1.1\r\nHost: api\r\nConnection: close\r\nx-api-key: "
        + API_KEY.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
    )
    for i in range(0, len(body), 8):
        writer.write(body[i : i + 8])
        await writer.drain()
        await asyncio.sleep(0.1)
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b'"__typename":"Query"' in answer.replace(b" ", b"")


async def test_no_connection_init_in_time_ends_every_websocket_protocol(
    stack: E2EStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In this process with the 10 s deadline shortened (graphql-transport-ws's is Strawberry's
    own timer, the legacy protocol's ours, AppSync's ours): each closes with 4408."""
    monkeypatch.setattr(graphql_view, "CONNECTION_INIT_TIMEOUT_SECONDS", 0.5)
    monkeypatch.setattr(realtime, "CONNECTION_INIT_TIMEOUT_SECONDS", 0.5)
    app = create_app(stack.settings, pool=stack.pool, client=stack.client)
    async with ServedApp(app) as served:
        base = served.url.replace("http", "ws", 1)
        auth = base64.b64encode(json.dumps({"host": "h", "x-api-key": API_KEY}).encode())
        targets = [
            (f"{base}/graphql", TRANSPORT_WS),
            (f"{base}/graphql", LEGACY_WS),
            (f"{base}/graphql/realtime?header={auth.decode()}&payload=e30=", LEGACY_WS),
        ]

        async def silent(url: str, protocol: Subprotocol) -> int | None:
            async with connect(url, subprotocols=[protocol]) as ws:
                return await _closed_code(ws, within=5)

        codes = await asyncio.gather(*(silent(url, protocol) for url, protocol in targets))
    assert codes == [4408, 4408, 4408]


def test_every_protocol_waits_ten_seconds_for_connection_init() -> None:
    # One constant for all three (the test above shortens it in this process only).
    assert ws_support.CONNECTION_INIT_TIMEOUT_SECONDS == 10


# -- 3. the size of a request's head -------------------------------------------------------------


HUGE_HEADS = {
    "one-header": b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    "request-line": b"GET /healthz?" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: api\r\n\r\n",
    "many-headers": b"GET /healthz HTTP/1.1\r\nHost: api\r\n"
    + b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100) for i in range(300))
    + b"\r\n",
}


@pytest.mark.parametrize("head", list(HUGE_HEADS.values()), ids=list(HUGE_HEADS))
async def test_a_head_over_the_bound_is_431(stack: E2EStack, head: bytes) -> None:
    reader, writer = await _raw(stack.api.url)
    writer.write(head)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]
    assert b'"errorType"' in answer


async def test_a_64_mib_header_is_refused_long_before_it_is_read(stack: E2EStack) -> None:
    """The server answers once the bound is passed and closes: the rest is never read, so
    the client's writes fail after a few chunks instead of 64 MiB going in."""
    _, writer = await _raw(stack.api.url)
    writer.write(b"GET /graphql HTTP/1.1\r\nHost: api\r\nX-Big: ")
    sent = 0
    with contextlib.suppress(ConnectionError, OSError):
        while sent < 64 * 1024 * 1024:
            writer.write(b"a" * 65_536)
            await writer.drain()
            sent += 65_536
            await asyncio.sleep(0)
    writer.close()
    assert sent < 8 * 1024 * 1024, sent


async def test_a_real_jwt_fits(stack: E2EStack) -> None:
    """The bound leaves room for what clients send: an 8 KiB token and the usual headers."""
    token = jwt.encode(
        {
            "sub": "big-token",
            "cognito:groups": ["Admins"],
            "exp": int(time.time()) + 600,
            "padding": "p" * 6000,
        },
        JWT_SECRET,
    )
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as http:
        response = await http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Authorization": token}
        )
    assert response.status_code == 200, response.text


# -- 4. signed claims that do not convert -----------------------------------------------------


def _rs256(payload_json: str, stack: E2EStack) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    header = _b64(json.dumps({"alg": "RS256", "typ": "JWT", "kid": RSA_KID}).encode())
    body = _b64(payload_json.encode())
    signature = stack.rsa_private_key.sign(
        f"{header}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{header}.{body}.{_b64(signature)}"


EntryPoint = Callable[[E2EStack, str], Awaitable[None]]


async def _over_http(stack: E2EStack, token: str) -> None:
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as http:
        response = await http.post(
            "/graphql", json={"query": "{ __typename }"}, headers={"Authorization": token}
        )
    assert response.status_code == 401, response.text
    assert response.json()["errors"][0]["errorType"] == "UnauthorizedException"


async def _realtime_upgrade(stack: E2EStack, token: str) -> None:
    auth = {"host": stack.api.url.split("://", 1)[1], "Authorization": token}
    header = base64.b64encode(json.dumps(auth).encode()).decode()
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            f"{stack.api.ws_url}/realtime?header={header}&payload=e30=",
            subprotocols=[LEGACY_WS],
        ):
            pass
    assert refused.value.response.status_code == 401


async def _transport_ws(stack: E2EStack, token: str) -> None:
    async with connect(stack.api.ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": token}}))
        assert await _closed_code(ws) == 4403  # graphql-transport-ws' Forbidden


async def _legacy_ws(stack: E2EStack, token: str) -> None:
    async with connect(stack.api.ws_url, subprotocols=[LEGACY_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": token}}))
        refused = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert refused["type"] == "connection_error", refused
        await _closed_code(ws)


ENTRY_POINTS: dict[str, EntryPoint] = {
    "http": _over_http,
    "realtime-upgrade": _realtime_upgrade,
    "graphql-transport-ws": _transport_ws,
    "graphql-ws": _legacy_ws,
}


@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
async def test_signed_claims_that_do_not_convert_are_401_everywhere(
    stack: E2EStack, entry: str
) -> None:
    check = ENTRY_POINTS[entry]
    for name, payload in UNCONVERTIBLE_CLAIMS.items():
        for token in (hs256_over(payload), _rs256(payload, stack)):
            try:
                await check(stack, token)
            except AssertionError as failed:
                raise AssertionError(f"{name} over {entry}: {failed}") from None
    # ... and every API process is still well.
    assert "Traceback" not in stack.api.log()


# -- 8. subscriptions over plain HTTP ----------------------------------------------------------


async def test_a_subscription_over_plain_http_is_refused_not_answered_null(admin: Gql) -> None:
    http = admin.http
    variables = {"id": "any"}
    # A subscription and a query in one document: which runs is the operationName's choice.
    both = SUBSCRIPTION.replace("subscription ", "subscription Watch ")
    both += " query Other { __typename }"
    for response in (
        await http.post("/graphql", json={"query": SUBSCRIPTION, "variables": variables}),
        await http.get(
            "/graphql", params={"query": SUBSCRIPTION, "variables": json.dumps(variables)}
        ),
        await http.post(
            "/graphql", json={"query": both, "operationName": "Watch", "variables": variables}
        ),
    ):
        assert response.status_code == 400, response.text
        assert error_types(response.json()) == ["UnsupportedOperation"]
    # The same document naming its query runs the query.
    query = await http.post(
        "/graphql", json={"query": both, "operationName": "Other", "variables": variables}
    )
    assert query.status_code == 200 and query.json()["data"] == {"__typename": "Query"}


# -- 9. accounts ------------------------------------------------------------------------------

CREATE_ACCOUNT = "mutation ($input: UserInput!) { createUserAccount(input: $input) { id } }"
UPDATE_ACCOUNT = (
    "mutation ($input: UpdateUserInput!) { updateUserAccount(input: $input) { id userType } }"
)


def _account(me: str, **changes: Any) -> dict[str, Any]:
    return {
        "firstName": "Sam",
        "lastName": "Self",
        "email": f"{me}@example.com",
        "verified": False,
        "userType": "TENANT",
        **changes,
    }


async def _as_user(stack: E2EStack, me: str, *, email: str | None, groups: str = "Tenants") -> Gql:
    token = mint_token(JWT_SECRET, me, [groups], email=email)
    return Gql(stack.api.client({"Authorization": token}))


async def test_an_account_owner_cannot_write_what_is_not_true_of_it(
    stack: E2EStack, admin: Gql
) -> None:
    me = f"self-{uuid.uuid4().hex[:8]}"
    taken = await create_user(admin)
    taken_email = (
        await admin("query ($id: ID!) { getUserAccount(id: $id) { email } }", {"id": taken})
    )["data"]["getUserAccount"]["email"]
    gql = await _as_user(stack, me, email=f"{me}@example.com")
    async with gql.http:
        for lie in (
            {"userType": "ADMIN"},
            {"userType": "CARETAKER"},
            {"verified": True},
            {"email": taken_email},  # someone else's: the answer must not tell whether it is
            {"email": f"other-{me}@example.com"},
        ):
            body = await gql(CREATE_ACCOUNT, {"input": _account(me, **lie)})
            assert error_types(body) == ["Unauthorized"], (lie, body)
        created = await gql(CREATE_ACCOUNT, {"input": _account(me)})
        assert created["data"] == {"createUserAccount": {"id": me}}
        # The same create again is the same answer; with other details it is an error.
        assert (await gql(CREATE_ACCOUNT, {"input": _account(me)}))["data"] == created["data"]
        renamed = await gql(CREATE_ACCOUNT, {"input": _account(me, firstName="Other")})
        assert error_types(renamed) == ["ValidationError"]
        for lie in ({"userType": "ADMIN"}, {"verified": True}):
            update = {"firstName": "Sam", "lastName": "Self", "verified": False}
            update["userType"] = "TENANT"
            update.update(lie)
            assert error_types(await gql(UPDATE_ACCOUNT, {"input": update})) == ["Unauthorized"]
    # Without an email claim (an access token), the owner cannot create it; an Admin can.
    anonymous_mail = await _as_user(stack, f"{me}-2", email=None)
    async with anonymous_mail.http:
        body = await anonymous_mail(CREATE_ACCOUNT, {"input": _account(f"{me}-2")})
        assert error_types(body) == ["Unauthorized"]
    by_admin = await admin(CREATE_ACCOUNT, {"input": {**_account(f"{me}-3"), "id": f"{me}-3"}})
    assert by_admin["data"] == {"createUserAccount": {"id": f"{me}-3"}}
    # An Admin still learns that an email is taken: it is an Admin's job to know.
    duplicate = await admin(CREATE_ACCOUNT, {"input": _account(f"{me}-4", email=taken_email)})
    assert error_types(duplicate) == ["ValidationError"]


# -- 10. persisted queries ----------------------------------------------------------------------


def _apq(query: str) -> dict[str, Any]:
    digest = hashlib.sha256(query.encode()).hexdigest()
    return {"persistedQuery": {"version": 1, "sha256Hash": digest}}


async def test_one_callers_registrations_never_evict_anothers(stack: E2EStack) -> None:
    """Tenant B registers a query; tenant A registers junk and more valid queries than its
    quota: B's hash still answers, junk is never stored, A keeps only its newest."""
    api = await stack.extra_api("api-apq")
    b_query = "query BQuery { __typename }"
    try:
        async with (
            api.client(stack.bearer("tenant-b", "Tenants")) as b,
            api.client(stack.bearer("tenant-a", "Tenants")) as a,
        ):
            registered = await b.post(
                "/graphql", json={"query": b_query, "extensions": _apq(b_query)}
            )
            assert registered.json()["data"] == {"__typename": "Query"}
            for i in range(APQ_MAX_ENTRIES_PER_CALLER + 40):
                junk = f"{{ junk{i} {{"
                await a.post("/graphql", json={"query": junk, "extensions": _apq(junk)})
                valid = f"query A{i} {{ __typename }}"
                await a.post("/graphql", json={"query": valid, "extensions": _apq(valid)})
            # Junk: not stored (the hash alone is unknown).
            junk = "{ junk0 {"
            missing = await a.post("/graphql", json={"extensions": _apq(junk)})
            assert error_types(missing.json()) == ["PersistedQueryNotFound"]
            # A's oldest valid one made room for its newer ones; its newest is there.
            oldest = "query A0 { __typename }"
            newest = f"query A{APQ_MAX_ENTRIES_PER_CALLER + 39} {{ __typename }}"
            assert error_types(
                (await a.post("/graphql", json={"extensions": _apq(oldest)})).json()
            ) == ["PersistedQueryNotFound"]
            kept = await a.post("/graphql", json={"extensions": _apq(newest)})
            assert kept.json()["data"] == {"__typename": "Query"}
            # B's is untouched, by hash alone.
            again = await b.post("/graphql", json={"extensions": _apq(b_query)})
            assert again.json()["data"] == {"__typename": "Query"}
    finally:
        stack.stop_api("api-apq")


# -- 11-14. a newcomer's first hour --------------------------------------------------------------


async def test_dev_mode_allows_loopback_origins_and_logs_refused_preflights(
    stack: E2EStack,
) -> None:
    api = await stack.extra_api("api-dev-cors", BOOKING_DEV_MODE="1")
    preflight = {"Access-Control-Request-Method": "POST"}
    try:
        async with api.client() as http:
            for origin in ("http://localhost:5173", "http://127.0.0.1:3000", "http://[::1]:8080"):
                allowed = await http.options("/graphql", headers={**preflight, "Origin": origin})
                assert allowed.status_code == 200, (origin, allowed.text)
                assert allowed.headers["access-control-allow-origin"] == origin
            refused = await http.options(
                "/graphql", headers={**preflight, "Origin": "https://app.example.com"}
            )
            assert "access-control-allow-origin" not in refused.headers
        # The browser developer's log line says what to set.
        assert "https://app.example.com" in api.log() and "BOOKING_CORS_ORIGINS" in api.log()
        # WebSockets follow the same rule.
        async with connect(
            api.ws_url, subprotocols=[TRANSPORT_WS], origin=Origin("http://localhost:5173")
        ) as ws:
            await ws.send(
                json.dumps({"type": "connection_init", "payload": {"x-api-key": API_KEY}})
            )
            assert json.loads(await ws.recv())["type"] == "connection_ack"
        with pytest.raises(InvalidStatus):
            async with connect(
                api.ws_url, subprotocols=[TRANSPORT_WS], origin=Origin("https://app.example.com")
            ):
                pass
    finally:
        stack.stop_api("api-dev-cors")
    # Outside dev mode, a loopback origin is just another origin.
    async with stack.api.client() as http:
        outside = await http.options(
            "/graphql", headers={**preflight, "Origin": "http://localhost:5173"}
        )
    assert "access-control-allow-origin" not in outside.headers
    assert "BOOKING_CORS_ORIGINS" in stack.api.log()


async def test_the_favicon_is_served(stack: E2EStack) -> None:
    async with stack.api.client() as http:
        icon = await http.get("/favicon.ico")
    assert icon.status_code == 200
    assert icon.headers["content-type"] == "image/x-icon"
    assert icon.content[:4] == b"\x00\x00\x01\x00"  # an ICO file's magic


async def test_a_stopping_api_closes_websockets_with_come_back(stack: E2EStack) -> None:
    """SIGTERM: every protocol's connections get 1012 (Service Restart), a code that tells a
    client to reconnect, not an abnormal drop."""
    api = await stack.extra_api("api-restart")
    auth = base64.b64encode(
        json.dumps({"host": api.url.split("://", 1)[1], "x-api-key": API_KEY}).encode()
    ).decode()
    connections = []
    for url, protocol in (
        (api.ws_url, TRANSPORT_WS),
        (api.ws_url, LEGACY_WS),
        (f"{api.ws_url}/realtime?header={auth}&payload=e30=", LEGACY_WS),
    ):
        ws = await connect(url, subprotocols=[protocol])
        payload = {"x-api-key": API_KEY} if "realtime" not in url else None
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        connections.append(ws)
    await asyncio.to_thread(stack.stop_api, "api-restart")
    codes = [await _closed_code(ws) for ws in connections]
    assert codes == [1012, 1012, 1012]
