"""Unit tests of the API's small pieces: scalars, page tokens, authentication, error mapping."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta, timezone
from typing import cast

import asyncpg
import jwt
import pytest
from graphql import GraphQLError
from temporalio.client import WorkflowFailureError, WorkflowUpdateFailedError
from temporalio.exceptions import ActivityError, ApplicationError, RetryState

from api.auth import Authenticator, Principal
from api.context import RequestContext
from api.errors import ServiceUnavailable, appsync_error, classify, domain_error_from
from api.loaders import Loaders, Reader
from api.metrics import ApiMetrics
from api.operations import RangeTurns, check_same_booking
from api.pagination import MAX_LIMIT, decode_token, encode_token, page_limit
from api.scalars import (
    parse_aws_date,
    parse_aws_datetime,
    serialize_aws_date,
    serialize_aws_datetime,
)
from api.services import Services
from booking.contract import BookingInput
from booking.errors import (
    ApartmentUnavailable,
    BookingExpired,
    UnauthorizedException,
    ValidationError,
)
from booking.settings import Settings
from booking.tokens import mint_token

SECRET = "unit-test-secret-0123456789abcdef-0123456789"
KEY = "unit-test-api-key"


# -- scalars -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01", date(2026, 3, 1)),
        ("2026-03-01Z", date(2026, 3, 1)),
        ("2026-03-01+05:30", date(2026, 3, 1)),
    ],
)
def test_aws_date_accepts_appsync_forms(text: str, expected: date) -> None:
    assert parse_aws_date(text) == expected


@pytest.mark.parametrize(
    "text", ["2026-3-1", "2026-02-30", "01/03/2026", "", "2026-03-01T00:00Z", 5]
)
def test_aws_date_rejects_anything_else(text: object) -> None:
    with pytest.raises(ValueError, match="AWSDate"):
        parse_aws_date(text)


def test_aws_date_serializes_as_iso() -> None:
    assert serialize_aws_date(date(2026, 1, 2)) == "2026-01-02"
    with pytest.raises(TypeError):
        serialize_aws_date(datetime(2026, 1, 2, tzinfo=UTC))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-03-01T10:00:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T10:00:00.5+02:00", datetime(2026, 3, 1, 8, 0, 0, 500000, tzinfo=UTC)),
        ("2026-03-01T10:00Z", datetime(2026, 3, 1, 10, tzinfo=UTC)),
        ("2026-03-01T10:00:00.123456789-01:00", datetime(2026, 3, 1, 11, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_aws_datetime_needs_and_honours_the_zone(text: str, expected: datetime) -> None:
    assert parse_aws_datetime(text) == expected


@pytest.mark.parametrize(
    "text", ["2026-03-01T10:00:00", "2026-03-01", "2026-03-01 10:00:00Z", "2026-13-01T10:00:00Z"]
)
def test_aws_datetime_without_zone_is_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="AWSDateTime"):
        parse_aws_datetime(text)


def test_aws_datetime_answers_in_utc_with_milliseconds() -> None:
    value = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert serialize_aws_datetime(value) == "2026-03-01T10:00:00.123Z"
    with pytest.raises(TypeError):
        serialize_aws_datetime(datetime(2026, 3, 1))  # naive: a bug upstream, never guessed


# -- page tokens ---------------------------------------------------------------------------


def test_page_token_round_trips_and_is_bound_to_its_list() -> None:
    token = encode_token("users", ["user-42"])
    assert decode_token("users", token) == ["user-42"]
    assert decode_token("users", None) is None
    with pytest.raises(ValidationError):
        decode_token("buildings", token)
    for garbage in ("???", "bm90LWpzb24", token[:-3]):
        with pytest.raises(ValidationError):
            decode_token("users", garbage)


def test_page_limit_bounds() -> None:
    assert page_limit(None) > 0
    assert page_limit(MAX_LIMIT) == MAX_LIMIT
    for bad in (0, -1, MAX_LIMIT + 1):
        with pytest.raises(ValidationError):
            page_limit(bad)


# -- authentication ------------------------------------------------------------------------


def _auth() -> Authenticator:
    return Authenticator(
        Settings.model_validate({"BOOKING_API_KEYS": KEY, "BOOKING_JWT_SECRET": SECRET})
    )


async def test_api_key_is_trusted() -> None:
    principal = await _auth().authenticate({"x-api-key": KEY})
    assert principal.trusted and principal.is_admin


async def test_wrong_api_key_is_refused_even_with_a_valid_jwt() -> None:
    token = mint_token(SECRET, "u1", ["Admins"])
    with pytest.raises(UnauthorizedException):
        await _auth().authenticate({"x-api-key": "nope", "authorization": token})


@pytest.mark.parametrize("prefix", ["", "Bearer ", "bearer "])
async def test_jwt_with_or_without_bearer(prefix: str) -> None:
    token = mint_token(SECRET, "tenant-1", ["Tenants"])
    principal = await _auth().authenticate({"authorization": prefix + token})
    assert principal.user_id == "tenant-1"
    assert principal.groups == frozenset({"Tenants"})
    assert not principal.trusted and not principal.is_admin


def _claims(**overrides: object) -> dict[str, object]:
    claims: dict[str, object] = {
        "sub": "u1",
        "cognito:groups": ["Admins"],
        "exp": int(time.time()) + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(
            jwt.encode(_claims(), "another-secret-0123456789abcdef-0123456789"), id="forged"
        ),
        pytest.param(jwt.encode(_claims(exp=int(time.time()) - 60), SECRET), id="expired"),
        pytest.param(jwt.encode(_claims(exp=None), SECRET), id="no-exp"),
        pytest.param(jwt.encode(_claims(sub=None), SECRET), id="no-sub"),
        pytest.param(jwt.encode(_claims(), "", algorithm="none"), id="alg-none"),
        pytest.param(jwt.encode(_claims(), SECRET * 2, algorithm="HS512"), id="other-alg"),
        pytest.param(jwt.encode(_claims(**{"cognito:groups": "Admins"}), SECRET), id="groups-str"),
        pytest.param("not.a.jwt", id="garbage"),
    ],
)
async def test_bad_tokens_are_refused(token: str) -> None:
    with pytest.raises(UnauthorizedException):
        await _auth().authenticate({"authorization": token})


async def test_no_credentials() -> None:
    with pytest.raises(UnauthorizedException, match="authorization header"):
        await _auth().authenticate({})


async def test_rs256_token_is_refused_without_jwks() -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(_claims(), key, algorithm="RS256")
    with pytest.raises(UnauthorizedException):
        await _auth().authenticate({"authorization": token})


def _auth_checking(**extra: str) -> Authenticator:
    return Authenticator(
        Settings.model_validate({"BOOKING_API_KEYS": KEY, "BOOKING_JWT_SECRET": SECRET, **extra})
    )


async def test_issuer_is_checked_and_required_when_configured() -> None:
    auth = _auth_checking(BOOKING_JWT_ISSUER="https://idp.example/pool")
    good = jwt.encode(_claims(iss="https://idp.example/pool"), SECRET)
    assert (await auth.authenticate({"authorization": good})).user_id == "u1"
    for claims in (_claims(iss="https://evil.example/pool"), _claims()):
        with pytest.raises(UnauthorizedException):
            await auth.authenticate({"authorization": jwt.encode(claims, SECRET)})
    # `booking dev` keeps working when the issuer is its own.
    dev = _auth_checking(BOOKING_JWT_ISSUER="booking-dev")
    principal = await dev.authenticate({"authorization": mint_token(SECRET, "t1", ["Tenants"])})
    assert principal.user_id == "t1"


async def test_audience_is_checked_and_required_when_configured() -> None:
    auth = _auth_checking(BOOKING_JWT_AUDIENCE="booking-api")
    for aud in ("booking-api", ["other-api", "booking-api"]):
        token = jwt.encode(_claims(aud=aud), SECRET)
        assert (await auth.authenticate({"authorization": token})).user_id == "u1"
    for claims in (_claims(aud="other-api"), _claims()):
        with pytest.raises(UnauthorizedException):
            await auth.authenticate({"authorization": jwt.encode(claims, SECRET)})


async def test_unset_issuer_and_audience_are_not_checked() -> None:
    token = jwt.encode(_claims(iss="anyone", aud="anything"), SECRET)
    assert (await _auth().authenticate({"authorization": token})).user_id == "u1"


# -- per-operation context and nested accounts -----------------------------------------------


def test_each_operation_gets_fresh_loaders_and_the_same_caller() -> None:
    settings = Settings()
    reader = Reader(cast("asyncpg.Pool", object()), timeout=5)
    reader.queries = 7
    principal = Principal(user_id="t1", groups=frozenset({"Tenants"}), trusted=False)
    connection = RequestContext(
        services=Services(
            settings=settings, authenticator=Authenticator(settings), metrics=ApiMetrics()
        ),
        loaders=Loaders(reader),
        request_id="ws-1",
        principal=principal,
        connection_params={"x": 1},
    )
    first, second = connection.for_operation(), connection.for_operation()
    assert first.loaders is not second.loaders is not connection.loaders
    assert first.loaders.users is not connection.loaders.users
    assert first.loaders.reader.queries == 0 and connection.loaders.reader.queries == 7
    assert first.principal is principal and first.connection_params == {"x": 1}
    assert first.request_id == "ws-1"


def test_who_may_read_an_account() -> None:
    def principal(user_id: str | None, *groups: str, trusted: bool = False) -> Principal:
        return Principal(user_id=user_id, groups=frozenset(groups), trusted=trusted)

    assert principal("t1", "Tenants").may_read_account("t1")
    assert not principal("t1", "Tenants").may_read_account("t2")
    assert not principal("t1").may_read_account("t2")
    assert principal("a", "Admins").may_read_account("t2")
    assert principal("c", "Caretakers").may_read_account("t2")
    assert principal(None, trusted=True).may_read_account("t2")


# -- idempotency keys -----------------------------------------------------------------------


def test_a_key_reused_for_another_stay_is_refused() -> None:
    request = BookingInput(
        booking_id="b",
        apartment_id="a",
        user_id="u",
        start_date=date(2031, 1, 1),
        end_date=date(2031, 2, 1),
        hold_seconds=60,
        idempotency_key="k",
    )
    check_same_booking(request, "a", date(2031, 1, 1), date(2031, 2, 1))
    for other in (
        ("b", date(2031, 1, 1), date(2031, 2, 1)),
        ("a", date(2031, 1, 2), date(2031, 2, 1)),
        ("a", date(2031, 1, 1), date(2031, 3, 1)),
    ):
        with pytest.raises(ValidationError, match="idempotencyKey already used"):
            check_same_booking(request, *other)


# -- error mapping -------------------------------------------------------------------------


def test_domain_error_is_found_inside_temporal_wrappers() -> None:
    app_error = ApplicationError("apartment is RESERVED", type="ApartmentUnavailable")
    update_failed = WorkflowUpdateFailedError(app_error)
    found = domain_error_from(update_failed)
    assert isinstance(found, ApartmentUnavailable)
    assert found.message == "apartment is RESERVED"

    activity_error = ActivityError(
        "activity failed",
        scheduled_event_id=1,
        started_event_id=2,
        identity="w",
        activity_type="pay",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    activity_error.__cause__ = ApplicationError("the hold is over", type="BookingExpired")
    found = domain_error_from(WorkflowFailureError(cause=activity_error))
    assert isinstance(found, BookingExpired)


def test_unknown_application_error_is_not_a_domain_error() -> None:
    assert domain_error_from(ApplicationError("boom", type="KeyError")) is None
    assert domain_error_from(RuntimeError("boom")) is None


def test_classification() -> None:
    assert classify(GraphQLError("Cannot query field 'x'"))[0] == "ValidationError"
    resolver_bug = GraphQLError("boom", path=["getBooking"], original_error=KeyError("sql"))
    error_type, message, _, unexpected = classify(resolver_bug)
    assert (error_type, unexpected) == ("InternalFailure", True)
    assert "sql" not in message
    domain = GraphQLError("x", path=["payBooking"], original_error=BookingExpired("late"))
    assert classify(domain)[:2] == ("BookingExpired", "late")
    busy = GraphQLError("x", path=["payBooking"], original_error=ServiceUnavailable("busy"))
    assert classify(busy) == ("ServiceUnavailable", "busy", None, False)


def test_appsync_error_has_every_key() -> None:
    shaped = appsync_error(
        {
            "message": "m",
            "path": ["a"],
            "locations": [{"line": 1, "column": 2}],
            "extensions": {"errorType": "BookingNotFound", "errorInfo": None, "data": None},
        }
    )
    assert set(shaped) == {"message", "errorType", "errorInfo", "path", "locations", "data"}
    assert shaped["errorType"] == "BookingNotFound"


def test_the_api_never_imports_activities() -> None:
    """The API reads the database and talks to Temporal; it never runs activity code."""
    import subprocess
    import sys

    probe = (
        "import sys, api.app, api.schema\n"
        "from booking.settings import Settings\n"
        "api.app.create_app(Settings.model_validate({'BOOKING_API_KEYS': 'k' * 16}))\n"
        "bad = sorted(m for m in sys.modules if m == 'activities' or m.startswith('activities.'))\n"
        "print(bad)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


async def test_overlapping_reserves_take_turns_and_disjoint_ones_do_not() -> None:
    """Reserves of one apartment whose ranges share a night go one at a time, and a hold
    placed by one is seen by those that waited for it; a disjoint range does not wait; the
    claims are forgotten once nobody holds one (no per-apartment state is kept)."""
    turns = RangeTurns()
    order: list[str] = []
    seen: list[tuple[str, str | None]] = []
    jan, feb, mar, apr = (date(2031, m, 1) for m in (1, 2, 3, 4))

    async def reserve(name: str, start: date, end: date, *, places: bool = True) -> None:
        async with turns.hold("apt-1", start, end) as turn:
            seen.append((name, turn.taken_by))
            order.append(f"{name} in")
            await asyncio.sleep(0.01)
            order.append(f"{name} out")
            if places:
                turn.placed_by = name

    await asyncio.gather(
        reserve("first", jan, mar),
        reserve("second", feb, apr),  # shares February with the first
        reserve("third", mar, apr, places=False),  # touches the first: no shared night
        reserve("fourth", feb, mar),
    )
    # The third went in at once, beside the first; the second and fourth waited for it.
    assert order[:2] == ["first in", "third in"]
    assert order.index("second in") > order.index("first out")
    assert order.index("fourth in") > order.index("first out")
    assert dict(seen) == {"first": None, "third": None, "second": "first", "fourth": "first"}
    # The second and fourth share February: they did not run side by side either.
    second, fourth = order.index("second in"), order.index("fourth in")
    assert order[min(second, fourth) + 1].endswith("out")
    assert len(turns) == 0
    # A later request starts afresh: nothing placed is remembered.
    async with turns.hold("apt-1", jan, apr) as turn:
        assert turn.taken_by is None
    assert len(turns) == 0
