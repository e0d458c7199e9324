"""Hostile input over real HTTP: every case of the issue's list, each a clear error and no change.

Cases already proven in depth elsewhere (the full JWT matrix in test_api_auth.py, the depth
limit in test_api_operations.py) are repeated here in short so that this file reads as the
complete list; each case also asserts that nothing changed: no hold placed, no payment
recorded, the apartment still as it was.
"""

from __future__ import annotations

import time
import uuid
from datetime import date, timedelta
from typing import Any

import jwt
import pytest

from tests.e2e.helpers import (
    APARTMENT_STATUS,
    CANCEL,
    JWT_SECRET,
    PAY,
    RESERVE,
    E2EStack,
    Gql,
    create_apartment,
    create_user,
    error_types,
    reserve_input,
)

pytestmark = pytest.mark.e2e

INTERNAL_MARKERS = ("Traceback", "asyncpg", 'File "', "psycopg", "temporalio.", "RPCError")


def _clean(body: dict[str, Any]) -> None:
    """Errors are AppSync-shaped, typed, and say nothing about our internals."""
    for error in body.get("errors", []):
        assert error.get("errorType"), error
        assert error["errorType"] != "InternalFailure", error
        text = str(error)
        for marker in INTERNAL_MARKERS:
            assert marker not in text, (marker, error)


async def _state(stack: E2EStack, apartment_id: str) -> tuple[str, int, int]:
    """(apartment status today, bookings on it, payments on them)."""
    status = await stack.pool.fetchval(
        "SELECT apartment_status FROM apartments_on((now() AT TIME ZONE 'UTC')::date) "
        "WHERE id = $1",
        apartment_id,
    )
    bookings = await stack.pool.fetchval(
        "SELECT count(*) FROM bookings WHERE apartment_id = $1", apartment_id
    )
    payments = await stack.pool.fetchval(
        "SELECT count(*) FROM payments p JOIN bookings b ON b.id = p.booking_id "
        "WHERE b.apartment_id = $1",
        apartment_id,
    )
    return status, bookings, payments


async def test_reservation_input_is_refused_and_nothing_is_held(
    stack: E2EStack, admin: Gql
) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    today = date.today()
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "endDate = startDate",
            {"startDate": "2031-01-01", "endDate": "2031-01-01"},
            "ValidationError",
        ),
        (
            "endDate < startDate",
            {"startDate": "2031-01-02", "endDate": "2031-01-01"},
            "ValidationError",
        ),
        (
            "dates in the past",
            {
                "startDate": (today - timedelta(days=30)).isoformat(),
                "endDate": (today - timedelta(days=1)).isoformat(),
            },
            "ValidationError",
        ),
        ("not a date", {"startDate": "2031-02-30"}, "ValidationError"),
        ("date with time", {"startDate": "2031-01-01T00:00:00Z"}, "ValidationError"),
        ("hold 0 s", {"holdSeconds": 0}, "ValidationError"),
        ("hold > 24 h", {"holdSeconds": 86_401}, "ValidationError"),
        ("negative hold", {"holdSeconds": -5}, "ValidationError"),
        ("hold beyond Int", {"holdSeconds": 2**31}, "ValidationError"),
        ("oversized idempotency key", {"idempotencyKey": "k" * 100_000}, "ValidationError"),
    ]
    for name, extra, expected in cases:
        body = await admin(RESERVE, reserve_input(apartment, tenant, **extra))
        assert admin.last.status_code != 500, name
        assert error_types(body) == [expected], (name, body)
        _clean(body)
    for name, apartment_id, user_id, expected in [
        ("unknown apartment", f"no-such-{uuid.uuid4().hex}", tenant, "ApartmentNotFound"),
        ("unknown user", apartment, f"no-such-{uuid.uuid4().hex}", "UserNotFound"),
        ("oversized apartment id", "a" * 100_000, tenant, "ValidationError"),
        ("empty apartment id", "", tenant, "ValidationError"),
    ]:
        body = await admin(RESERVE, reserve_input(apartment_id, user_id))
        assert admin.last.status_code != 500, name
        assert error_types(body) == [expected], (name, body)
        _clean(body)
    assert await _state(stack, apartment) == ("VACANT", 0, 0)


async def test_payment_input_is_refused_and_nothing_is_paid(stack: E2EStack, admin: Gql) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=125_000, currency="EUR")
    held = await admin(RESERVE, reserve_input(apartment, tenant))
    assert "errors" not in held, held
    booking = held["data"]["reserveApartment"]

    def pay(**overrides: Any) -> dict[str, Any]:
        fields = {
            "bookingId": booking["id"],
            "amount": 125_000,
            "currency": "EUR",
            "paymentReference": f"pay-{uuid.uuid4().hex}",
        }
        fields.update(overrides)
        return {"input": fields}

    cases: list[tuple[str, dict[str, Any], set[str]]] = [
        ("negative amount", pay(amount=-125_000), {"PaymentRejected", "ValidationError"}),
        ("zero amount", pay(amount=0), {"PaymentRejected", "ValidationError"}),
        ("amount too small", pay(amount=124_999), {"PaymentRejected"}),
        ("amount too large", pay(amount=125_001), {"PaymentRejected"}),
        ("amount beyond Int", pay(amount=2**31), {"ValidationError"}),
        ("amount beyond 2^53", pay(amount=2**60), {"ValidationError"}),
        ("fractional amount", pay(amount=1250.5), {"ValidationError"}),
        ("wrong currency", pay(currency="USD"), {"PaymentRejected"}),
        ("lower-case currency", pay(currency="eur"), {"PaymentRejected", "ValidationError"}),
        ("not a currency", pay(currency="EURO" * 1000), {"PaymentRejected", "ValidationError"}),
        ("empty reference", pay(paymentReference=""), {"ValidationError"}),
        ("oversized reference", pay(paymentReference="r" * 100_000), {"ValidationError"}),
        ("unknown booking", pay(bookingId=f"no-such-{uuid.uuid4().hex}"), {"BookingNotFound"}),
        (
            "oversized booking id",
            pay(bookingId="b" * 100_000),
            {"ValidationError", "BookingNotFound"},
        ),
    ]
    for name, variables, expected in cases:
        body = await admin(PAY, variables)
        assert admin.last.status_code != 500, name
        assert len(error_types(body)) == 1 and error_types(body)[0] in expected, (name, body)
        _clean(body)
    body = await admin(CANCEL, {"id": f"no-such-{uuid.uuid4().hex}"})
    assert error_types(body) == ["BookingNotFound"]
    # Nothing was paid, the hold is intact, and it still takes the right payment.
    assert await _state(stack, apartment) == ("RESERVED", 1, 0)
    body = await admin(PAY, pay())
    assert body["data"]["payBooking"]["bookingStatus"] == "APPROVED", body
    assert await _state(stack, apartment) == ("OCCUPIED", 1, 1)


async def test_deep_and_huge_queries_are_refused(admin: Gql) -> None:
    deep = 'query { getApartment(id: "1234567") { ' + "building { apartments { " * 20
    deep += "id" + " } }" * 20 + " } }"
    body = await admin(deep)
    assert admin.last.status_code != 500
    # Too deep and far too costly: refused for both, before anything ran.
    assert error_types(body) == ["ValidationError", "ValidationError"]
    assert body["data"] is None
    _clean(body)
    # A fragment cycle is refused by validation, not followed.
    cyclic = (
        'query { getApartment(id: "1") { ...A } } '
        "fragment A on Apartment { building { apartments { ...A } } }"
    )
    body = await admin(cyclic)
    assert admin.last.status_code != 500
    assert error_types(body) and set(error_types(body)) <= {"ValidationError"}
    _clean(body)
    # Many aliases of an expensive field in one request.
    wide = "query { " + " ".join(f"a{i}: getAllBuildings {{ items {{ id }} }}" for i in range(2000))
    body = await admin(wide + " }")
    assert admin.last.status_code != 500
    assert error_types(body) and error_types(body)[0] == "ValidationError"
    # Not GraphQL at all, and a body that is not JSON.
    body = await admin("{{{{{{")
    assert error_types(body) == ["ValidationError"] or admin.last.status_code == 400
    response = await admin.http.post(
        "/graphql", content=b"\xff\x00not json", headers={"content-type": "application/json"}
    )
    assert response.status_code in (400, 415, 422), response.text


@pytest.mark.parametrize(
    "case",
    ["bad-signature", "expired", "alg-none", "no-sub", "garbage"],
)
async def test_bad_tokens_are_401_and_change_nothing(
    stack: E2EStack, admin: Gql, case: str
) -> None:
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin)
    now = int(time.time())
    claims = {"sub": tenant, "cognito:groups": ["Tenants"], "exp": now + 600}
    token = {
        "bad-signature": jwt.encode(claims, "forged-secret-0123456789-abcdef-0123456789"),
        "expired": jwt.encode({**claims, "exp": now - 60}, JWT_SECRET),
        "alg-none": jwt.encode(claims, "", algorithm="none"),
        "no-sub": jwt.encode({"cognito:groups": ["Tenants"], "exp": now + 600}, JWT_SECRET),
        "garbage": "Bearer not.a.jwt",
    }[case]
    async with stack.api.client({"Authorization": token}) as http:
        response = await http.post(
            "/graphql", json={"query": RESERVE, "variables": reserve_input(apartment, tenant)}
        )
    assert response.status_code == 401, response.text
    body = response.json()
    assert error_types(body) == ["UnauthorizedException"]
    assert token not in response.text
    assert await _state(stack, apartment) == ("VACANT", 0, 0)


async def test_a_tenant_cannot_act_for_another(stack: E2EStack, admin: Gql) -> None:
    alice = await create_user(admin)
    mallory = await create_user(admin)
    _, apartment = await create_apartment(admin)
    _, other_apartment = await create_apartment(admin)
    held = await admin(RESERVE, reserve_input(apartment, alice))
    booking = held["data"]["reserveApartment"]
    async with stack.api.client(stack.bearer(mallory, "Tenants")) as http:
        gql = Gql(http)
        # In another user's name.
        body = await gql(RESERVE, reserve_input(other_apartment, alice))
        assert error_types(body) == ["Unauthorized"], body
        # On another tenant's booking: read, pay, cancel.
        body = await gql("query ($id: ID!) { getBooking(id: $id) { id } }", {"id": booking["id"]})
        assert error_types(body) == ["Unauthorized"] or body["data"]["getBooking"] is None, body
        body = await gql(
            PAY,
            {
                "input": {
                    "bookingId": booking["id"],
                    "amount": booking["amountDue"],
                    "currency": booking["currency"],
                    "paymentReference": f"pay-{uuid.uuid4().hex}",
                }
            },
        )
        assert error_types(body) == ["Unauthorized"], body
        body = await gql(CANCEL, {"id": booking["id"]})
        assert error_types(body) == ["Unauthorized"], body
        _clean(body)
    assert await _state(stack, apartment) == ("RESERVED", 1, 0)
    assert await _state(stack, other_apartment) == ("VACANT", 0, 0)
    status = await admin(APARTMENT_STATUS, {"id": apartment})
    assert status["data"]["getApartment"]["apartmentStatus"] == "RESERVED"
