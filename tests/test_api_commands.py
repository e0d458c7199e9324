"""BookingCommands against a Temporal client that answers NOT_FOUND: what each command says.

A waiting-list offer's row is PENDING before its execution exists (the release commits the
row, its next step starts the execution): pay, extend and cancel wait for the execution
instead of calling a PENDING booking "not PENDING". A booking whose execution has closed is
answered at once with the domain error. (The Temporal client is faked: this is a unit test of
the command layer; the e2e tests drive the same paths against a real server.)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime
from typing import Any, cast

import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ServiceUnavailable
from api.operations import BookingCommands
from booking.contract import APPROVED, CANCELLED, EXPIRED, PENDING, BookingState, PaymentInput
from booking.errors import (
    BookingExpired,
    BookingNotCancellable,
    HoldNotExtendable,
    PaymentRejected,
)
from booking.settings import Settings
from booking.store.bookings import BookingRow
from workflows.booking import ApartmentBookingWorkflow

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)
ROW = BookingRow(
    id="b-1",
    workflow_id="booking-b-1",
    user_id="u-1",
    apartment_id="a-1",
    start_date=date(2027, 1, 1),
    end_date=date(2027, 2, 1),
    booking_status=PENDING,
    amount_due=100_000,
    currency="EUR",
    hold_expires_at=NOW,
    paid_at=None,
    cancellation_reason=None,
    lease_ended_at=None,
    idempotency_key=None,
    created_on=NOW,
    update_on=NOW,
)
STATE = BookingState(
    booking_id="b-1",
    workflow_id="booking-b-1",
    apartment_id="a-1",
    user_id="u-1",
    status=APPROVED,
    amount_due=100_000,
    currency="EUR",
    hold_expires_at=NOW,
    paid_at=NOW,
    cancellation_reason=None,
    lease_ended_at=None,
    start_date=date(2027, 1, 1),
    end_date=date(2027, 2, 1),
)


class _Handle:
    def __init__(self, client: _Client) -> None:
        self._client = client

    async def execute_update(self, update: object, *_args: object) -> BookingState:
        client = self._client
        if update is ApartmentBookingWorkflow.wait_for_hold:
            client.waited_for_hold += 1
            client.reserving = False
            return STATE
        client.calls += 1
        if client.missing_for is None or client.calls <= client.missing_for:
            raise RPCError("workflow not found", RPCStatusCode.NOT_FOUND, b"")
        if client.reserving or client.always_refuse:
            # What the execution's validators answer before (or without) a hold.
            raise REFUSAL[cast(str, getattr(update, "__name__", ""))]("it is RESERVING")
        return STATE


@dataclasses.dataclass
class _Client:
    # NOT_FOUND for this many calls, then an answer; None: NOT_FOUND for ever.
    missing_for: int | None
    # The execution is still taking its hold: it refuses until wait_for_hold returns.
    reserving: bool = False
    always_refuse: bool = False
    calls: int = 0
    waited_for_hold: int = 0

    def get_workflow_handle(self, workflow_id: str) -> _Handle:
        assert workflow_id == ROW.workflow_id
        return _Handle(self)


def _commands(client: _Client, deadline: float = 5.0) -> BookingCommands:
    settings = Settings.model_validate({"BOOKING_TEMPORAL_CALL_TIMEOUT_SECONDS": deadline})
    return BookingCommands(cast(Client, client), settings)


REFUSAL: dict[str, type[Exception]] = {
    "pay": PaymentRejected,
    "extend_hold": HoldNotExtendable,
    "cancel": BookingNotCancellable,
}
Command = Callable[[BookingCommands, BookingRow], Awaitable[Any]]
PAYMENT = PaymentInput(amount=100_000, currency="EUR", payment_reference="ref-1")
COMMANDS: dict[str, Command] = {
    "pay": lambda c, row: c.pay(row, PAYMENT),
    "extend_hold": lambda c, row: c.extend_hold(row, 600),
    "cancel": lambda c, row: c.cancel(row),
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
async def test_a_pending_booking_waits_for_its_execution_to_start(name: str) -> None:
    client = _Client(missing_for=3)
    answer = await COMMANDS[name](_commands(client), ROW)
    assert answer == STATE
    assert client.calls == 4


@pytest.mark.parametrize("name", sorted(COMMANDS))
async def test_an_execution_that_never_starts_is_unavailable_not_a_domain_error(
    name: str,
) -> None:
    client = _Client(missing_for=None)
    with pytest.raises(ServiceUnavailable, match="still being placed"):
        await COMMANDS[name](_commands(client, deadline=0.3), ROW)
    assert client.calls >= 2


@pytest.mark.parametrize(
    ("name", "row", "error"),
    [
        ("pay", dataclasses.replace(ROW, booking_status=APPROVED), PaymentRejected),
        (
            "pay",
            dataclasses.replace(ROW, booking_status=CANCELLED, cancellation_reason=EXPIRED),
            BookingExpired,
        ),
        ("extend_hold", dataclasses.replace(ROW, booking_status=CANCELLED), HoldNotExtendable),
        ("cancel", dataclasses.replace(ROW, booking_status=APPROVED), BookingNotCancellable),
    ],
)
async def test_a_settled_booking_is_answered_at_once(
    name: str, row: BookingRow, error: type[Exception]
) -> None:
    client = _Client(missing_for=None)
    with pytest.raises(error):
        await COMMANDS[name](_commands(client), row)
    assert client.calls == 1


@pytest.mark.parametrize("name", sorted(COMMANDS))
async def test_a_refusal_before_the_hold_step_is_asked_again_once_it_is_done(name: str) -> None:
    client = _Client(missing_for=1, reserving=True)
    assert await COMMANDS[name](_commands(client), ROW) == STATE
    assert (client.calls, client.waited_for_hold) == (3, 1)


@pytest.mark.parametrize("name", sorted(COMMANDS))
async def test_a_refusal_after_the_hold_step_stands(name: str) -> None:
    client = _Client(missing_for=0, always_refuse=True)
    with pytest.raises(REFUSAL[name]):
        await COMMANDS[name](_commands(client), ROW)
    assert (client.calls, client.waited_for_hold) == (2, 1)
