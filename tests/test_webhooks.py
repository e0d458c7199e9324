"""POST /webhooks/payments against a real worker, real Postgres and the Temporal test server.

The route is mounted on a bare Starlette app (``api.webhooks.route``) and called over
ASGI; tests/e2e and tests/test_faults*.py call it over real HTTP through the full API.
Every refusal is checked for "nothing changed": no payment row, booking still PENDING, no
``payment_received`` signal in the workflow's history.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from api.webhooks import MAX_BODY_BYTES, PATH, route
from booking.contract import BookingState, workflow_id_for
from booking.settings import Settings
from booking.webhook_signing import (
    SIGNATURE_HEADER,
    SignatureError,
    parse_signature_header,
    verify_signature,
    webhook_signature,
)
from tests.helpers import (
    apartment_row,
    booking_input,
    booking_row,
    eventually,
    make_rental,
    start_and_hold,
)

SECRET = "whsec-test-0123456789abcdef"

Post = Callable[..., Awaitable[httpx.Response]]


def _app(client: Client, secret: str | None = SECRET) -> Starlette:
    settings = Settings(BOOKING_WEBHOOK_SECRET=secret)  # type: ignore[call-arg]
    return Starlette(routes=[route(settings, lambda: client)])


@pytest.fixture
async def http(client: Client) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(client), client=("203.0.113.9", 4000))
    async with httpx.AsyncClient(transport=transport, base_url="http://booking.test") as http:
        yield http


def event_body(state: BookingState, **overrides: object) -> bytes:
    event: dict[str, object] = {
        "id": f"evt-{uuid.uuid4()}",
        "bookingId": state.booking_id,
        "amount": state.amount_due,
        "currency": state.currency,
        "paymentReference": f"pay-{uuid.uuid4()}",
    }
    event.update(overrides)
    return json.dumps(event).encode()


def signed(body: bytes, *, secret: str = SECRET, t: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if t is None else t
    return {
        SIGNATURE_HEADER: webhook_signature(secret, body, stamp),
        "content-type": "application/json",
    }


async def _post(http: httpx.AsyncClient, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await http.post(PATH, content=body, headers=headers)


async def _wait_for(pool: asyncpg.Pool, booking_id: str, status: str) -> asyncpg.Record:
    row = await eventually(
        lambda: booking_row(pool, booking_id),
        lambda row: row is not None and row["booking_status"] == status,
        what=f"booking {booking_id} becoming {status}",
    )
    assert row is not None
    return row


async def _payments(pool: asyncpg.Pool, booking_id: str) -> list[tuple[str, str, str | None]]:
    rows = await pool.fetch(
        """SELECT p.payment_reference, p.outcome, r.reason
             FROM payments p LEFT JOIN refunds r ON r.payment_id = p.id
            WHERE p.booking_id = $1 ORDER BY p.id""",
        booking_id,
    )
    return [(r["payment_reference"], r["outcome"], r["reason"]) for r in rows]


async def _signals(client: Client, booking_id: str) -> int:
    count = 0
    async for event in client.get_workflow_handle(
        workflow_id_for(booking_id)
    ).fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            count += 1
    return count


async def _hold(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> BookingState:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=3600)
    _, state = await start_and_hold(client, data, task_queue)
    return state


async def _assert_untouched(client: Client, pool: asyncpg.Pool, state: BookingState) -> None:
    row = await booking_row(pool, state.booking_id)
    assert row is not None and row["booking_status"] == "PENDING"
    assert await _payments(pool, state.booking_id) == []
    assert await _signals(client, state.booking_id) == 0
    assert (await apartment_row(pool, state.apartment_id))["apartment_status"] == "RESERVED"


def _error_type(response: httpx.Response) -> str:
    errors = response.json()["errors"]
    assert isinstance(errors, list) and errors
    error_type: str = errors[0]["errorType"]
    return error_type


# -- signing helper --------------------------------------------------------------------------


def test_signature_round_trip_and_rotation() -> None:
    body = b'{"id":"evt-1"}'
    header = webhook_signature(SECRET, body, 1_700_000_000)
    t, signatures = parse_signature_header(header)
    assert t == 1_700_000_000 and len(signatures) == 1
    assert verify_signature(SECRET, header, body, now=1_700_000_100) == 1_700_000_000
    # During a secret rotation the provider sends one v1 per secret; either may match.
    old = webhook_signature("old-secret", body, 1_700_000_000).split(",")[1]
    assert verify_signature(SECRET, f"{old},{header}", body, now=1_700_000_000)
    with pytest.raises(SignatureError) as bad:
        verify_signature(SECRET, header, body + b" ", now=1_700_000_000)
    assert bad.value.reason == "bad_signature"
    with pytest.raises(SignatureError) as stale:
        verify_signature(SECRET, header, body, now=1_700_000_301)
    assert stale.value.reason == "stale_signature"
    for malformed in ("", "t=1", "v1=" + "a" * 64, "t=x,v1=" + "a" * 64, "t=1,v1=zz", "garbage"):
        with pytest.raises(SignatureError) as error:
            verify_signature(SECRET, malformed, body, now=1)
        assert error.value.reason in ("missing_signature", "malformed_signature")
    with pytest.raises(ValueError, match="empty"):
        webhook_signature("", body, 1)


# -- accepted events ---------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_valid_event_pays_the_booking_once_however_often_it_arrives(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    http: httpx.AsyncClient,
) -> None:
    state = await _hold(env, client, pool, task_queue)
    body = event_body(state)
    headers = signed(body)
    response = await _post(http, body, headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    row = await _wait_for(pool, state.booking_id, "APPROVED")
    assert row["paid_at"] is not None
    reference = json.loads(body)["paymentReference"]
    assert await _payments(pool, state.booking_id) == [(reference, "APPLIED", None)]
    apartment = await apartment_row(pool, state.apartment_id)
    assert apartment["apartment_status"] == "OCCUPIED"

    # The identical request again (a replay, or a provider retry): refused, nothing changes.
    again = await _post(http, body, headers)
    assert again.status_code == 409 and _error_type(again) == "DuplicateEvent"
    # A fresh signature for the same event id: still the same event.
    resigned = await _post(http, body, signed(body, t=int(time.time()) - 5))
    assert resigned.status_code == 409
    # Another API process (or this one after a restart) has an empty memory: the workflow
    # history it reads still knows the event.
    transport = httpx.ASGITransport(app=_app(client))
    async with httpx.AsyncClient(transport=transport, base_url="http://other.test") as other:
        from_elsewhere = await _post(other, body, signed(body))
    assert from_elsewhere.status_code == 409 and _error_type(from_elsewhere) == "DuplicateEvent"
    assert await _signals(client, state.booking_id) == 1
    assert await _payments(pool, state.booking_id) == [(reference, "APPLIED", None)]


@pytest.mark.usefixtures("worker")
async def test_concurrent_deliveries_of_one_event_signal_once(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    http: httpx.AsyncClient,
) -> None:
    state = await _hold(env, client, pool, task_queue)
    body = event_body(state)
    responses = await asyncio.gather(*(_post(http, body, signed(body)) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [202] + [409] * 7
    await _wait_for(pool, state.booking_id, "APPROVED")
    assert await _signals(client, state.booking_id) == 1
    assert len(await _payments(pool, state.booking_id)) == 1


@pytest.mark.usefixtures("worker")
async def test_new_event_id_with_a_used_reference_pays_nothing_twice(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    http: httpx.AsyncClient,
) -> None:
    state = await _hold(env, client, pool, task_queue)
    first = event_body(state, paymentReference="pay-shared-" + uuid.uuid4().hex)
    reference = json.loads(first)["paymentReference"]
    assert (await _post(http, first, signed(first))).status_code == 202
    await _wait_for(pool, state.booking_id, "APPROVED")
    second = event_body(state, paymentReference=reference)
    assert (await _post(http, second, signed(second))).status_code == 202
    await asyncio.sleep(0.5)
    # The workflow treats a repeated reference as a no-op: one APPLIED row, no refund.
    assert await _payments(pool, state.booking_id) == [(reference, "APPLIED", None)]


@pytest.mark.usefixtures("worker")
async def test_late_payment_goes_to_the_refund_path(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    http: httpx.AsyncClient,
) -> None:
    rental = await make_rental(pool)
    data = await booking_input(env, rental, hold_seconds=60)
    _, state = await start_and_hold(client, data, task_queue)
    await env.sleep(timedelta(seconds=120))
    row = await _wait_for(pool, state.booking_id, "CANCELLED")
    assert row["cancellation_reason"] == "EXPIRED"
    body = event_body(state)
    response = await _post(http, body, signed(body))
    assert response.status_code == 202
    reference = json.loads(body)["paymentReference"]
    payments = await eventually(lambda: _payments(pool, state.booking_id), what="a payment row")
    assert payments == [(reference, "REFUNDED", "HOLD_OVER")]
    assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "VACANT"


@pytest.mark.usefixtures("worker")
async def test_wrong_amount_is_refunded_and_the_hold_stays(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    http: httpx.AsyncClient,
) -> None:
    state = await _hold(env, client, pool, task_queue)
    assert state.amount_due is not None
    body = event_body(state, amount=state.amount_due - 1)
    assert (await _post(http, body, signed(body))).status_code == 202
    reference = json.loads(body)["paymentReference"]
    payments = await eventually(lambda: _payments(pool, state.booking_id), what="a payment row")
    assert payments == [(reference, "REFUNDED", "WRONG_AMOUNT")]
    row = await booking_row(pool, state.booking_id)
    assert row is not None and row["booking_status"] == "PENDING"


# -- refused requests --------------------------------------------------------------------------


@pytest.mark.usefixtures("worker")
async def test_forged_stale_malformed_and_oversized_change_nothing(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = await _hold(env, client, pool, task_queue)
    body = event_body(state)
    now = int(time.time())
    good = signed(body)
    cases: list[tuple[str, bytes, dict[str, str], int, str]] = [
        ("wrong secret", body, signed(body, secret="attacker-secret"), 401, "SignatureInvalid"),
        (
            "body altered",
            body.replace(b'"amount": ', b'"amount": 1'),
            good,
            401,
            "SignatureInvalid",
        ),
        ("stale", body, signed(body, t=now - 301), 401, "SignatureExpired"),
        ("from the future", body, signed(body, t=now + 301), 401, "SignatureExpired"),
        ("no header", body, {"content-type": "application/json"}, 400, "SignatureMissing"),
        ("garbage header", body, {SIGNATURE_HEADER: "sha256=abc"}, 400, "SignatureMalformed"),
        (
            "truncated v1",
            body,
            {SIGNATURE_HEADER: good[SIGNATURE_HEADER][:-2]},
            400,
            "SignatureMalformed",
        ),
        ("huge header", body, {SIGNATURE_HEADER: "t=1," + "x" * 5000}, 400, "SignatureMalformed"),
    ]
    for name, payload, headers, status, error_type in cases:
        response = await _post(http, payload, headers)
        assert (response.status_code, _error_type(response)) == (status, error_type), name

    # Correctly signed but not a valid event: refused after the signature check.
    invalid_events: list[tuple[bytes, int]] = [
        (b"not json", 400),
        (b"[1, 2]", 400),
        (b"\xff\xfe", 400),
        (event_body(state, amount=-5), 422),
        (event_body(state, amount=0), 422),
        (event_body(state, amount=10**15), 422),
        (event_body(state, amount="125000"), 422),
        (event_body(state, amount=True), 422),
        (event_body(state, amount=1.5), 422),
        (event_body(state, currency="eur"), 422),
        (event_body(state, currency="EURO"), 422),
        (event_body(state, id=""), 422),
        (event_body(state, id=None), 422),
        (event_body(state, paymentReference="x" * 201), 422),
        (event_body(state, bookingId=["a"]), 422),
        (event_body(state, bookingId="a\u0000b"), 422),
        (event_body(state, paymentReference="line\nbreak"), 422),
    ]
    for payload, status in invalid_events:
        response = await _post(http, payload, signed(payload))
        assert response.status_code == status, payload
        assert _error_type(response) == "ValidationError"

    # Oversized: by Content-Length, and streamed without one (counted while reading).
    big = event_body(state, padding="x" * MAX_BODY_BYTES)
    response = await _post(http, big, signed(big))
    assert (response.status_code, _error_type(response)) == (413, "PayloadTooLarge")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(80):
            yield b"x" * 1024

    streamed = await http.post(PATH, content=chunks(), headers=good)
    assert streamed.status_code == 413

    await _assert_untouched(client, pool, state)
    # Refusals are logged with their reason, never with the secret or a signature.
    rejected = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert len(rejected) >= len(cases) + len(invalid_events) + 2
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in everything
    assert good[SIGNATURE_HEADER].split("v1=")[1] not in everything
    assert "reason=bad_signature" in everything and "reason=stale_signature" in everything


async def test_unknown_booking_is_404(http: httpx.AsyncClient) -> None:
    body = json.dumps(
        {
            "id": f"evt-{uuid.uuid4()}",
            "bookingId": f"no-such-{uuid.uuid4()}",
            "amount": 100,
            "currency": "EUR",
            "paymentReference": "pay-x",
        }
    ).encode()
    response = await _post(http, body, signed(body))
    assert (response.status_code, _error_type(response)) == (404, "BookingNotFound")


async def test_without_a_secret_the_route_answers_503(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    transport = httpx.ASGITransport(app=_app(client, secret=None))
    async with httpx.AsyncClient(transport=transport, base_url="http://booking.test") as http:
        body = b"{}"
        response = await _post(http, body, signed(body))
    assert response.status_code == 503
    assert _error_type(response) == "WebhookNotConfigured"
    assert any(
        r.levelno == logging.ERROR and "BOOKING_WEBHOOK_SECRET" in r.getMessage()
        for r in caplog.records
    )


async def test_get_is_not_allowed(http: httpx.AsyncClient) -> None:
    assert (await http.get(PATH)).status_code == 405


@pytest.mark.usefixtures("worker")
async def test_closed_booking_is_409_and_nothing_is_recorded(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    task_queue: str,
    http: httpx.AsyncClient,
) -> None:
    state = await _hold(env, client, pool, task_queue)
    await client.get_workflow_handle(workflow_id_for(state.booking_id)).terminate("closed")
    body = event_body(state)
    response = await _post(http, body, signed(body))
    assert (response.status_code, _error_type(response)) == (409, "BookingClosed")
    assert await _payments(pool, state.booking_id) == []
