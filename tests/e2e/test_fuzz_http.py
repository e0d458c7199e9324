"""No 5xx, whatever arrives: raw HTTP and WebSocket frames against the real API processes.

Below GraphQL: the bodies, parameters, headers and frames themselves. Each class of defect
found from outside (deep nesting, JSON that is not an object, numbers Python will not
convert, invalid UTF-8, odd content types, signed webhooks with hostile bodies) has its own
explicit test, and hypothesis then tries the whole space: random bytes, random JSON shapes,
deep nesting, huge numbers, random content types, against ``POST`` and ``GET /graphql``,
``POST /webhooks/payments`` (correctly signed, so the body is really read) and the WebSockets
in all three protocols: ``/graphql`` (graphql-transport-ws and the legacy Apollo graphql-ws)
and ``/graphql/realtime`` (AppSync's).

Properties: never a 5xx; every error body AppSync-shaped with an ``errorType`` and no trace
of our internals; the API processes never log an unhandled exception; and the database is
consistent afterwards (``booking doctor`` finds nothing for the rows touched).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from booking.doctor import examine
from booking.webhook_signing import SIGNATURE_HEADER, webhook_signature
from tests.e2e.helpers import API_KEY, JWT_SECRET, WEBHOOK_SECRET, E2EStack, hs256_over

pytestmark = pytest.mark.e2e

INTERNAL_MARKERS = ("Traceback", "asyncpg", 'File "', "temporalio.", "RPCError", "NoneType")
# What an unhandled exception leaves in an API process's log.
UNHANDLED = ("Exception in ASGI application", "Traceback (most recent call last)")
FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
REQUEST_KEYS = st.sampled_from(["query", "variables", "extensions", "operationName"])
SHAPED = st.dictionaries(REQUEST_KEYS, JSON_VALUES, max_size=4)
DEEP = st.integers(min_value=33, max_value=5_000).map(lambda n: "[" * n + "]" * n)
# In a URL: a few thousand characters (longer request lines are the HTTP server's to refuse,
# with a plain 400 before the application sees them: tested once below).
DEEP_IN_URL = st.integers(min_value=33, max_value=1_500).map(lambda n: "[" * n + "]" * n)
HUGE_NUMBER = st.integers(min_value=4_301, max_value=50_000).map(lambda n: "1" * n)
CONTENT_TYPES = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/graphql",
        "",
        "application/json; charset=latin-1",
    ]
)
BODIES = st.one_of(
    st.binary(max_size=300),
    SHAPED.map(lambda v: json.dumps(v).encode()),
    JSON_VALUES.map(lambda v: json.dumps(v).encode()),
    DEEP.map(str.encode),
    DEEP.map(lambda d: f'{{"query": "{{__typename}}", "variables": {{"v": {d}}}}}'.encode()),
    HUGE_NUMBER.map(lambda n: f'{{"query": "{{__typename}}", "variables": {{"n": {n}}}}}'.encode()),
    st.binary(min_size=1, max_size=50).map(lambda b: b'{"query": "' + b + b'"}'),
)


@pytest.fixture
async def http(stack: E2EStack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module", autouse=True)
async def stays_sound(stack: E2EStack) -> AsyncIterator[None]:
    """After every test of this module (whatever ran, in whatever order): no unhandled
    exception in either API process's log, both ready, the database consistent for the
    bookings created meanwhile."""
    offsets = {api.url: len(api.log()) for api in (stack.api, stack.api2)}
    started = datetime.now(UTC)
    yield
    for api in (stack.api, stack.api2):
        tail = api.log()[offsets[api.url] :]
        for marker in UNHANDLED:
            assert marker not in tail, (api.url, tail[tail.find(marker) - 2000 :][:6000])
        async with api.client() as http:
            assert (await http.get("/readyz")).status_code == 200
    touched = {
        r["id"]
        for r in await stack.pool.fetch("SELECT id FROM bookings WHERE created_on >= $1", started)
    }
    findings = await examine(stack.pool, stack.client)
    assert [f for f in findings if f.booking_id in touched] == []


def _assert_refused_cleanly(response: httpx.Response, what: object) -> None:
    assert response.status_code < 500, (what, response.status_code, response.text[:500])
    if response.status_code >= 400 or "errors" in response.text[:20_000]:
        try:
            body: Any = response.json()
        except ValueError:
            raise AssertionError(f"not JSON: {what!r} -> {response.text[:300]}") from None
        errors = body.get("errors") if isinstance(body, dict) else None
        assert errors, (what, body)
        for error in errors:
            assert error.get("errorType"), (what, error)
            assert error["errorType"] != "InternalFailure", (what, error)
            for marker in INTERNAL_MARKERS:
                assert marker not in str(error), (marker, what, error)


def _assert_ws_errors_shaped(raw: str | bytes, what: object) -> None:
    """Every error a WebSocket frame carries, in any protocol, says its errorType."""
    message = json.loads(raw)
    payload = message.get("payload")
    if isinstance(payload, dict):
        errors = payload.get("errors") or (
            [payload] if message.get("type") == "error" and "message" in payload else []
        )
    elif isinstance(payload, list):
        errors = payload
    else:
        errors = []
    for error in errors:
        assert error.get("errorType"), (what, message)
        assert error["errorType"] != "InternalFailure", (what, message)


# -- each class found from outside, explicitly ---------------------------------------------

NOT_OBJECTS = [b"null", b"5", b"true", b'"x"', b"[]", b'[{"query": "{ __typename }"}]']


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 1000 + b"]" * 1000,
        b'{"query": "{ __typename }", "variables": ' + b"[" * 1000 + b"]" * 1000 + b"}",
        *NOT_OBJECTS,
        b'{"query": "{ __typename }", "variables": {"n": ' + b"9" * 5000 + b"}}",
        b'{"query": "\xff\xfe{ __typename }"}',
        b"\xff\x00not json",
    ],
    ids=[
        "deep",
        "deep-variables",
        "null",
        "5",
        "true",
        "str",
        "list",
        "batch",
        "huge-int",
        "not-utf8",
        "garbage",
    ],
)
async def test_malformed_posts_are_4xx_bad_requests(http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post(
        "/graphql", content=body, headers={"content-type": "application/json", "x-api-key": API_KEY}
    )
    assert 400 <= response.status_code < 500, (body[:60], response.text)
    assert response.json()["errors"][0]["errorType"] == "BadRequestException"
    _assert_refused_cleanly(response, body[:60])


@pytest.mark.parametrize(
    "params",
    [
        {"query": "{ __typename }", "variables": "[" * 1000 + "]" * 1000},
        {"query": "{ __typename }", "extensions": "{" + '"a":{' * 1000 + "}" * 1001},
        {"query": "{ __typename }", "variables": '{"n": ' + "9" * 5000 + "}"},
        {"query": "{ __typename }", "variables": "5"},
        {"query": "{ __typename }", "extensions": "not json"},
    ],
    ids=["deep-variables", "deep-extensions", "huge-int", "not-object", "not-json"],
)
async def test_malformed_gets_are_4xx_bad_requests(
    http: httpx.AsyncClient, params: dict[str, str]
) -> None:
    response = await http.get("/graphql", params=params, headers={"x-api-key": API_KEY})
    assert 400 <= response.status_code < 500, (params, response.text)
    assert response.json()["errors"][0]["errorType"] == "BadRequestException"


async def _raw(stack: E2EStack, request: bytes) -> bytes:
    """Send bytes as they are (no client library would send these) and read the answer."""
    host, port = stack.api.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(65_536), 10)
    finally:
        writer.close()


async def test_a_request_line_too_long_for_the_server_is_a_4xx(stack: E2EStack) -> None:
    target = b"/graphql?query=%7B__typename%7D&variables=" + b"%5B" * 40_000
    answer = await _raw(stack, b"GET " + target + b" HTTP/1.1\r\nHost: api\r\n\r\n")
    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]


async def test_anonymous_requests_are_refused_before_their_body_is_read(
    http: httpx.AsyncClient,
) -> None:
    """401, not 400: nothing of an unauthenticated body is parsed."""
    for body in (b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe"):
        response = await http.post(
            "/graphql", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 401
        assert response.json()["errors"][0]["errorType"] == "UnauthorizedException"


def _signed(body: bytes) -> dict[str, str]:
    return {
        SIGNATURE_HEADER: webhook_signature(WEBHOOK_SECRET, body, int(time.time())),
        "content-type": "application/json",
    }


@pytest.mark.parametrize(
    "body",
    [b"[" * 1000 + b"]" * 1000, b'{"id": ' + b"[" * 5000 + b"]" * 5000 + b"}", *NOT_OBJECTS],
)
async def test_signed_webhooks_with_hostile_bodies_are_4xx(
    http: httpx.AsyncClient, body: bytes
) -> None:
    response = await http.post("/webhooks/payments", content=body, headers=_signed(body))
    assert 400 <= response.status_code < 500, (body[:60], response.text)
    _assert_refused_cleanly(response, body[:60])


# -- and then the whole space ----------------------------------------------------------------


@FUZZ
@given(body=BODIES, content_type=CONTENT_TYPES)
async def test_fuzz_post_graphql(http: httpx.AsyncClient, body: bytes, content_type: str) -> None:
    response = await http.post(
        "/graphql", content=body, headers={"content-type": content_type, "x-api-key": API_KEY}
    )
    _assert_refused_cleanly(response, (content_type, body[:80]))


@FUZZ
@given(
    params=st.dictionaries(
        REQUEST_KEYS,
        st.text(max_size=200) | DEEP_IN_URL | HUGE_NUMBER.map(lambda n: n[:6000]),
        max_size=4,
    )
)
async def test_fuzz_get_graphql(http: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await http.get("/graphql", params=params, headers={"x-api-key": API_KEY})
    _assert_refused_cleanly(response, params)


# A claim's value, as the JSON text a token's author chose (what PyJWT would not write, too).
CLAIM_VALUES = st.one_of(
    JSON_VALUES.map(json.dumps),
    st.sampled_from(["1e400", "-1e400", "NaN", "Infinity", "253402300800", "1e20", "-1"]),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
)
CLAIM_NAMES = st.sampled_from(["exp", "iat", "nbf", "sub", "cognito:groups", "email", "iss"])


@FUZZ
@given(claims=st.dictionaries(CLAIM_NAMES, CLAIM_VALUES, min_size=1, max_size=4))
async def test_fuzz_signed_claims(http: httpx.AsyncClient, claims: dict[str, str]) -> None:
    """Correctly signed tokens with claims of any value: a 200 or a 401, never a 5xx."""
    values = {"sub": '"fuzz"', "exp": str(int(time.time()) + 600), **claims}
    payload = "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in values.items()) + "}"
    token = hs256_over(payload, JWT_SECRET)
    response = await http.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"Authorization": token}
    )
    assert response.status_code in (200, 401), (payload, response.status_code, response.text)
    _assert_refused_cleanly(response, payload)


@FUZZ
@given(body=BODIES, signed=st.booleans())
async def test_fuzz_webhook(http: httpx.AsyncClient, body: bytes, signed: bool) -> None:
    headers = _signed(body) if signed else {"content-type": "application/json"}
    response = await http.post("/webhooks/payments", content=body, headers=headers)
    _assert_refused_cleanly(response, body[:80])


# The message types of all three protocols (graphql-transport-ws; Apollo's graphql-ws and
# AppSync's, which share most names), and payloads shaped like each one's.
TRANSPORT_WS_TYPES = ["subscribe", "next", "complete", "ping", "pong", "connection_init", "x"]
APOLLO_AND_APPSYNC_TYPES = ["start", "stop", "data", "ka", "connection_terminate", "error"]
WS_TYPES = st.sampled_from([*TRANSPORT_WS_TYPES, *APOLLO_AND_APPSYNC_TYPES, "start_ack"])
WS_PAYLOADS = st.one_of(
    JSON_VALUES,
    st.builds(lambda data: {"data": data}, st.text(max_size=80) | JSON_VALUES.map(json.dumps)),
    st.builds(
        lambda query, extensions: {
            "data": json.dumps({"query": query}),
            "extensions": extensions,
        },
        st.sampled_from(["subscription { x }", "{ __typename }", "sub {", ""]),
        JSON_VALUES,
    ),
)
WS_FRAMES = st.one_of(
    st.text(max_size=200),
    JSON_VALUES.map(json.dumps),
    st.builds(
        lambda kind, payload, op: json.dumps({"type": kind, "id": op, "payload": payload}),
        WS_TYPES,
        WS_PAYLOADS,
        st.one_of(st.none(), st.text(max_size=5), st.integers()),
    ),
    DEEP,
    HUGE_NUMBER.map(lambda n: '{"type": "subscribe", "id": "1", "payload": {"n": ' + n + "}}"),
    HUGE_NUMBER.map(lambda n: '{"type": "start", "id": "1", "payload": {"data": "' + n + '"}}'),
)


def _ws_open(stack: E2EStack, protocol: str) -> tuple[str, str, dict[str, Any]]:
    """(url, subprotocol, connection_init) for each of the three protocols."""
    if protocol == "appsync":
        header = base64.b64encode(json.dumps({"host": "h", **stack.key}).encode()).decode()
        url = f"{stack.api.ws_url}/realtime?header={header}&payload=e30="
        return url, "graphql-ws", {"type": "connection_init"}
    return stack.api.ws_url, protocol, {"type": "connection_init", "payload": stack.key}


@FUZZ
@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws", "appsync"])
@given(frames=st.lists(WS_FRAMES, min_size=1, max_size=4))
async def test_fuzz_websockets(stack: E2EStack, protocol: str, frames: list[str]) -> None:
    url, subprotocol, init = _ws_open(stack, protocol)
    try:
        async with connect(url, subprotocols=[Subprotocol(subprotocol)]) as ws:
            await ws.send(json.dumps(init))
            while True:
                ack = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if ack["type"] != "ka":
                    break
            assert ack["type"] == "connection_ack", ack
            for frame in frames:
                await ws.send(frame)
            # Whatever the server answers (an error, a close with 44xx), it answers.
            with pytest.raises((TimeoutError, ConnectionClosed)):
                while True:
                    message = await asyncio.wait_for(ws.recv(), 0.3)
                    for marker in INTERNAL_MARKERS:
                        assert marker not in str(message), (marker, frames, message)
                    _assert_ws_errors_shaped(message, frames)
    except ConnectionClosed as closed:
        assert closed.rcvd is None or closed.rcvd.code < 4500 or closed.rcvd.code == 1000
    except InvalidStatus as refused:
        assert refused.response.status_code < 500
