"""No secret or token reaches the logs, and cross-origin callers get nothing.

A second API instance is served (uvicorn, real HTTP) with a webhook secret, every log record
of the process is captured at DEBUG while it meets failed logins and forged webhooks, and
the captured text is searched for every secret and token involved.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import jwt
import pytest

from booking.webhook_signing import SIGNATURE_HEADER, webhook_signature
from tests.e2e.helpers import API_KEY, JWT_SECRET, E2EStack, ServedApp

pytestmark = pytest.mark.e2e

WEBHOOK_SECRET = "e2e-webhook-secret-0123456789abcdef"


@pytest.fixture
async def api_with_webhook(stack: E2EStack) -> AsyncIterator[str]:
    from api.app import create_app

    settings = stack.settings.model_copy(update={"webhook_secret": WEBHOOK_SECRET})
    async with ServedApp(create_app(settings)) as served:
        yield f"http://127.0.0.1:{served.port}"


async def test_failed_auth_and_webhooks_leave_no_secret_in_the_logs(
    stack: E2EStack, api_with_webhook: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    now = int(time.time())
    forged = jwt.encode(
        {"sub": "mallory", "cognito:groups": ["Admins"], "exp": now + 600},
        "forger-secret-0123456789abcdef-0123456789",
    )
    expired = jwt.encode(
        {"sub": "alice", "cognito:groups": ["Tenants"], "exp": now - 60}, JWT_SECRET
    )
    valid = stack.token("alice", ["Tenants"])
    wrong_key = f"wrong-key-{uuid.uuid4().hex}"
    query = {"query": 'query { getApartment(id: "1234567") { id } }'}
    body = json.dumps(
        {
            "id": f"evt-{uuid.uuid4()}",
            "bookingId": f"no-such-{uuid.uuid4()}",
            "amount": 100,
            "currency": "EUR",
            "paymentReference": "pay-log-check",
        }
    ).encode()
    good_signature = webhook_signature(WEBHOOK_SECRET, body, now)
    forged_signature = webhook_signature("attacker-secret", body, now)

    async with httpx.AsyncClient(base_url=api_with_webhook, timeout=30) as http:
        for headers in (
            {"Authorization": forged},
            {"Authorization": f"Bearer {expired}"},
            {"x-api-key": wrong_key},
        ):
            assert (await http.post("/graphql", json=query, headers=headers)).status_code == 401
        # A valid token and key on a request that fails for another reason.
        response = await http.post(
            "/graphql",
            json={"query": 'mutation { cancelBooking(id: "no-such") { id } }'},
            headers={"Authorization": valid},
        )
        assert response.json()["errors"]
        response = await http.post(
            "/graphql",
            json={"query": "query { getBooking(id: 1 }"},
            headers={"x-api-key": API_KEY},
        )
        assert response.json()["errors"]
        for signature, expected in (
            (forged_signature, 401),
            (webhook_signature(WEBHOOK_SECRET, body, now - 3600), 401),
            (good_signature.replace("t=", "t=1"), 401),
            (good_signature, 404),  # signed correctly, for a booking that does not exist
        ):
            response = await http.post(
                "/webhooks/payments", content=body, headers={SIGNATURE_HEADER: signature}
            )
            assert response.status_code == expected, response.text

    logged = "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert "webhook rejected" in logged  # the failures were logged ...
    for secret in (
        JWT_SECRET,
        API_KEY,
        WEBHOOK_SECRET,
        forged,
        expired,
        valid,
        wrong_key,
        good_signature.split("v1=")[1],
        forged_signature.split("v1=")[1],
    ):
        assert secret not in logged  # ... and nothing secret with them


async def test_cross_origin_callers_get_no_cors_grant(stack: E2EStack) -> None:
    origin = "https://evil.example"
    async with stack.api.client() as http:
        preflight = await http.options(
            "/graphql",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x-api-key, content-type",
            },
        )
        assert preflight.status_code != 500
        assert "access-control-allow-origin" not in preflight.headers
        response = await http.post(
            "/graphql",
            json={"query": 'query { getApartment(id: "1234567") { id } }'},
            headers={"Origin": origin, **stack.key},
        )
        assert response.headers.get("access-control-allow-origin") not in (origin, "*")
        assert "access-control-allow-credentials" not in response.headers
