"""Helpers any test may reuse: fixture rows, a client with the production converter, bookings.

Fixture rows are inserted with SQL directly (tests own their data; the catalog workflow has its
own tests) and every id is unique, so tests never see each other's rows.

History recording: with ``BOOKING_RECORD_HISTORIES=1`` in the environment, tests that call
:func:`record_history` write the finished execution's history to ``tests/histories/<name>.json``
for ``tests/test_replay.py``. Record only NEW histories (select the test with ``-k``, after
giving its ``record_history`` call a new name): an existing one proves that executions of older
workflow code still replay, and :func:`record_history` refuses to overwrite it::

    BOOKING_RECORD_HISTORIES=1 .venv/bin/pytest tests/test_workflow_sweep.py -k <test>

Reading a history: :func:`activity_steps` lists the activities an execution ran, ordinary ones
(``ActivityTask*`` events) and local ones (``core_local_activity`` markers) alike, so that a
test asserts what ran whichever way the workflow ran it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

import asyncpg
import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent, MarkerRecordedEventAttributes
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from booking import catalog
from booking.contract import (
    BookingInput,
    BookingState,
    PaymentInput,
    WaitlistJoin,
    WaitlistState,
    offer_booking_id_for,
    start_search_attributes,
    waitlist_workflow_id_for,
    workflow_id_for,
)
from booking.converter import DATA_CONVERTER
from booking.store.catalog import ApartmentData, BuildingData, UserData
from workflows.booking import ApartmentBookingWorkflow
from workflows.waitlist import WaitlistEntryWorkflow

T = TypeVar("T")

HISTORIES = Path(__file__).parent / "histories"
# The marker sdk-core records for a local activity's result (there are no ActivityTask* events).
LOCAL_ACTIVITY_MARKER = "core_local_activity"


async def eventually(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool] = bool,
    *,
    within: float = 10.0,
    interval: float = 0.05,
    what: str = "the condition",
) -> T:
    """Call ``probe`` until ``done`` holds for its answer; return that answer.

    Raises AssertionError naming ``what`` and the last answer once ``within`` seconds passed.
    """
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within:.0f} s (last: {value!r})")
        await asyncio.sleep(interval)


def eventually_sync(
    probe: Callable[[], T],
    done: Callable[[T], bool] = bool,
    *,
    within: float = 10.0,
    interval: float = 0.1,
    what: str = "the condition",
) -> T:
    """:func:`eventually` for tests that run no event loop (subprocess tests)."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within:.0f} s (last: {value!r})")
        time.sleep(interval)


@dataclass(frozen=True)
class Rental:
    """A tenant and a VACANT apartment of their own, ready to book."""

    user_id: str
    building_id: str
    apartment_id: str
    monthly_rent: int
    currency: str


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


async def _write(pool: asyncpg.Pool, write: Any, record: Any) -> None:
    """A catalog row written as the API writes it (``booking.catalog``): checked, audited."""
    async with pool.acquire() as conn:
        await write(conn, record, actor="test")


async def insert_user(pool: asyncpg.Pool, *, user_type: str = "TENANT") -> str:
    user_id = unique("user")
    record = UserData(user_id, "Test", "User", f"{user_id}@example.com", True, user_type)
    await _write(pool, catalog.create_user, record)
    return user_id


async def insert_building(pool: asyncpg.Pool, owner: str, apartments: int = 1) -> str:
    building_id = unique("bld")
    record = BuildingData(
        building_id, owner, "Test House", "1 Test Street", "12345", "Testville", "DE", apartments
    )
    await _write(pool, catalog.create_building, record)
    return building_id


async def insert_apartment(
    pool: asyncpg.Pool,
    building_id: str,
    *,
    monthly_rent: int = 125_000,
    currency: str = "EUR",
    status: str = "VACANT",
) -> str:
    apartment_id = unique("apt")
    record = ApartmentData(
        id=apartment_id,
        apartment_number=apartment_id,
        building_id=building_id,
        number_of_rooms=2,
        kitchen=True,
        apartment_type="SINGLE_ROOM",
        apartment_status=status,
        monthly_rent=monthly_rent,
        currency=currency,
    )
    await _write(pool, catalog.create_apartment, record)
    return apartment_id


async def make_rental(
    pool: asyncpg.Pool, *, monthly_rent: int = 125_000, currency: str = "EUR"
) -> Rental:
    owner = await insert_user(pool, user_type="ADMIN")
    tenant = await insert_user(pool)
    building_id = await insert_building(pool, owner)
    apartment_id = await insert_apartment(
        pool, building_id, monthly_rent=monthly_rent, currency=currency
    )
    return Rental(tenant, building_id, apartment_id, monthly_rent, currency)


def booking_client(env: WorkflowEnvironment) -> Client:
    """The environment's client with the production data converter."""
    config = env.client.config()
    config["data_converter"] = DATA_CONVERTER
    return Client(**config)


async def server_today(env: WorkflowEnvironment) -> date:
    """Today by the Temporal server's clock (a time-skipping server runs ahead of ours)."""
    now: datetime = await env.get_current_time()
    return now.date()


async def booking_input(
    env: WorkflowEnvironment,
    rental: Rental,
    *,
    hold_seconds: int = 900,
    lease_days: int = 365,
    **overrides: object,
) -> BookingInput:
    start = await server_today(env) + timedelta(days=1)
    fields: dict[str, object] = {
        "booking_id": str(uuid.uuid4()),
        "apartment_id": rental.apartment_id,
        "user_id": rental.user_id,
        "start_date": start,
        "end_date": start + timedelta(days=lease_days),
        "hold_seconds": hold_seconds,
    }
    fields.update(overrides)
    return BookingInput(**fields)  # type: ignore[arg-type]


async def start_booking(
    client: Client, input: BookingInput, task_queue: str
) -> WorkflowHandle[ApartmentBookingWorkflow, BookingState]:
    """A plain start (time skipping works for its result), without waiting for the hold."""
    return await client.start_workflow(
        ApartmentBookingWorkflow.run,
        input,
        id=workflow_id_for(input.booking_id),
        task_queue=task_queue,
        search_attributes=start_search_attributes(input, None),
    )


async def reserve_with_start(
    client: Client, input: BookingInput, task_queue: str
) -> tuple[WorkflowHandle[ApartmentBookingWorkflow, BookingState], BookingState]:
    """Start and ask for the hold in one call, as the API does.

    Use it where the workflow may end in its first task (a rejected booking): a separate
    update sent after a plain start can find the execution already closed.
    """
    start = WithStartWorkflowOperation(
        ApartmentBookingWorkflow.run,
        input,
        id=workflow_id_for(input.booking_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        search_attributes=start_search_attributes(input, None),
    )
    state = await client.execute_update_with_start_workflow(
        ApartmentBookingWorkflow.wait_for_hold, start_workflow_operation=start
    )
    return await start.workflow_handle(), state


async def start_and_hold(
    client: Client, input: BookingInput, task_queue: str
) -> tuple[WorkflowHandle[ApartmentBookingWorkflow, BookingState], BookingState]:
    """Start and wait until the hold is in place (raises the rejection otherwise)."""
    handle = await start_booking(client, input, task_queue)
    state = await handle.execute_update(ApartmentBookingWorkflow.wait_for_hold)
    return handle, state


def payment_for(state: BookingState, **overrides: object) -> PaymentInput:
    """A payment of exactly what the held booking owes, under a fresh reference."""
    if "amount" not in overrides and "currency" not in overrides:
        assert state.amount_due is not None and state.currency is not None, state
    fields: dict[str, object] = {
        "amount": state.amount_due,
        "currency": state.currency,
        "payment_reference": f"pay-{uuid.uuid4()}",
    }
    fields.update(overrides)
    return PaymentInput(**fields)  # type: ignore[arg-type]


async def update_refusal(call: Awaitable[object]) -> ApplicationError:
    """The domain error a workflow update was refused with."""
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await call
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def record_history(handle: WorkflowHandle[Any, Any], name: str) -> None:
    """Save the (finished) execution's history for the replay test when asked to.

    Refuses to overwrite: a committed history proves that executions of the code that recorded
    it still replay. A changed path is recorded under a new name.
    """
    if os.environ.get("BOOKING_RECORD_HISTORIES") != "1":
        return
    path = HISTORIES / f"{name}.json"
    if path.exists():
        raise FileExistsError(
            f"{path} exists: never re-record a history; record the new path under a new name"
        )
    history = await handle.fetch_history()
    HISTORIES.mkdir(exist_ok=True)
    path.write_text(history.to_json())


async def booking_row(pool: asyncpg.Pool, booking_id: str) -> asyncpg.Record | None:
    return await pool.fetchrow("SELECT * FROM bookings WHERE id = $1", booking_id)


async def apartment_row(
    pool: asyncpg.Pool, apartment_id: str, on: date | None = None
) -> asyncpg.Record:
    """The apartment's status and tenant as the API reads them for the day ``on``; by default
    the first night of its latest booking (the stay a test is about: its hold makes it
    RESERVED, its payment OCCUPIED, its end VACANT again)."""
    if on is None:
        latest: date | None = await pool.fetchval(
            "SELECT start_date FROM bookings WHERE apartment_id = $1 "
            "ORDER BY created_on DESC, id DESC LIMIT 1",
            apartment_id,
        )
        on = latest or date.today()
    row = await pool.fetchrow(
        "SELECT apartment_status, tenant_id FROM apartments_on($2) WHERE id = $1",
        apartment_id,
        on,
    )
    assert row is not None
    return row


def stay_start_events(paid_at: datetime | None, start_date: date) -> list[tuple[str, str, str]]:
    """What a paid stay records at its first night: STAY_STARTED when it was paid before that
    night (booked ahead), nothing when paid on or after it (the time-skipping server's clock may
    stand at any hour when a test pays)."""
    first_night = datetime.combine(start_date, datetime.min.time(), tzinfo=UTC)
    if paid_at is not None and paid_at < first_night:
        return [("APPROVED", "APPROVED", "STAY_STARTED")]
    return []


async def events(pool: asyncpg.Pool, booking_id: str) -> list[tuple[str | None, str, str]]:
    rows = await pool.fetch(
        "SELECT from_status, to_status, reason FROM booking_events WHERE booking_id = $1 "
        "ORDER BY id",
        booking_id,
    )
    return [(r["from_status"], r["to_status"], r["reason"]) for r in rows]


StepOutcome = Literal["pending", "completed", "failed", "timed_out", "cancelled", "retrying"]


@dataclass(frozen=True)
class Step:
    """One activity an execution ran, as its history tells it.

    ``event_id`` is the ActivityTaskScheduled event (ordinary) or the marker (local): steps
    sort in the order the workflow asked for ordinary activities and got local ones' results.
    ``attempt`` is the last attempt that started (None while none has). ``retrying`` is a
    local activity's failed attempt followed by a backoff timer (a later marker goes on).
    """

    event_id: int
    name: str
    attempt: int | None
    outcome: StepOutcome
    local: bool


def _ended(event: HistoryEvent) -> tuple[int, StepOutcome] | None:
    """(scheduled event id, outcome) when the event ends an ordinary activity."""
    kind = event.event_type
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
        return event.activity_task_completed_event_attributes.scheduled_event_id, "completed"
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED:
        return event.activity_task_failed_event_attributes.scheduled_event_id, "failed"
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_TIMED_OUT:
        return event.activity_task_timed_out_event_attributes.scheduled_event_id, "timed_out"
    if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCELED:
        return event.activity_task_canceled_event_attributes.scheduled_event_id, "cancelled"
    return None


def _local_step(event_id: int, marker: MarkerRecordedEventAttributes) -> Step:
    (payload,) = marker.details["data"].payloads
    assert payload.metadata["encoding"] == b"json/plain", payload.metadata
    data: dict[str, Any] = json.loads(payload.data)
    outcome: StepOutcome = "completed"
    if marker.HasField("failure"):
        if data.get("backoff") is not None:
            outcome = "retrying"
        elif marker.failure.HasField("timeout_failure_info"):
            outcome = "timed_out"
        elif marker.failure.HasField("canceled_failure_info"):
            outcome = "cancelled"
        else:
            outcome = "failed"
    return Step(event_id, str(data["activity_type"]), int(data["attempt"]), outcome, local=True)


def activity_steps(history: WorkflowHistory) -> list[Step]:
    """The activities of a (fetched or loaded) history, ordinary and local, in event order."""
    steps: dict[int, Step] = {}
    for event in history.events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            steps[event.event_id] = Step(event.event_id, name, None, "pending", local=False)
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started = event.activity_task_started_event_attributes
            step = steps[started.scheduled_event_id]
            steps[step.event_id] = replace(step, attempt=started.attempt)
        elif (
            kind == EventType.EVENT_TYPE_MARKER_RECORDED
            and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
        ):
            steps[event.event_id] = _local_step(
                event.event_id, event.marker_recorded_event_attributes
            )
        elif (ended := _ended(event)) is not None:
            step = steps[ended[0]]
            steps[step.event_id] = replace(step, outcome=ended[1])
    return list(steps.values())


# -- the waiting list --------------------------------------------------------------------------

Handle = WorkflowHandle[ApartmentBookingWorkflow, BookingState]
EntryHandle = WorkflowHandle[WaitlistEntryWorkflow, WaitlistState]


async def join_waitlist(
    client: Client, env: WorkflowEnvironment, rental: Rental, user: str, task_queue: str
) -> tuple[EntryHandle, WaitlistState]:
    """Join as the API does: the entry's workflow started and asked in one call."""
    start = await server_today(env) + timedelta(days=1)
    join = WaitlistJoin(
        str(uuid.uuid4()), rental.apartment_id, user, start, start + timedelta(days=30)
    )
    operation = WithStartWorkflowOperation(
        WaitlistEntryWorkflow.run,
        join,
        id=waitlist_workflow_id_for(join.entry_id),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    state = await client.execute_update_with_start_workflow(
        WaitlistEntryWorkflow.joined, start_workflow_operation=operation
    )
    return await operation.workflow_handle(), state


async def _entry_status(pool: asyncpg.Pool, entry_id: str) -> str | None:
    status: str | None = await pool.fetchval(
        "SELECT status FROM waitlist_entries WHERE id = $1", entry_id
    )
    return status


def offer_handle(client: Client, entry_id: str) -> Handle:
    return client.get_workflow_handle_for(
        ApartmentBookingWorkflow.run, workflow_id_for(offer_booking_id_for(entry_id))
    )


async def offered_booking(client: Client, pool: asyncpg.Pool, entry_id: str) -> BookingState:
    """The offer's booking workflow, once it holds the apartment."""
    await eventually(
        lambda: _entry_status(pool, entry_id), lambda status: status == "OFFERED", what="the offer"
    )

    async def state() -> BookingState | None:
        try:
            return await offer_handle(client, entry_id).query(ApartmentBookingWorkflow.state)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return None  # the release that made the offer is still starting its workflow

    offered = await eventually(
        state,
        lambda s: s is not None and s.status == "PENDING",
        what="the offer's workflow holding the apartment",
    )
    assert offered is not None
    return offered


# -- a test's own nginx ------------------------------------------------------------------------


def nginx_config(root: Path, http_block: str) -> str:
    """An ``nginx.conf`` for a test's own nginx, everything of it under ``root`` (pid, logs,
    temporary files), in the foreground, with ``http_block`` inside ``http { }``."""
    (root / "nginx-temp").mkdir(exist_ok=True)
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""worker_processes 1;
daemon off;
{user}
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  client_body_temp_path {root}/nginx-temp/body;
  proxy_temp_path {root}/nginx-temp/proxy;
  fastcgi_temp_path {root}/nginx-temp/fastcgi;
  uwsgi_temp_path {root}/nginx-temp/uwsgi;
  scgi_temp_path {root}/nginx-temp/scgi;
{http_block}
}}
"""


# -- a booking made through a running API ------------------------------------------------------


async def graphql(http: httpx.AsyncClient, query: str, variables: dict[str, Any]) -> Any:
    """The data of a GraphQL request that must succeed."""
    response = await http.post("/graphql", json={"query": query, "variables": variables})
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]


async def reserve_through_api(http: httpx.AsyncClient, prefix: str) -> dict[str, Any]:
    """A tenant, a building and an apartment made through the API (``http`` carries an API
    key), and a hold on it: the booking's ``id``, ``amountDue``, ``currency``, ``workflowId``."""
    tenant = f"{prefix}-{uuid.uuid4().hex[:6]}"
    await graphql(
        http,
        "mutation ($i: UserInput!) { createUserAccount(input: $i) { id } }",
        {
            "i": {
                "id": tenant,
                "firstName": "T",
                "lastName": "A",
                "email": f"{tenant}@example.com",
                "verified": True,
                "userType": "TENANT",
            }
        },
    )
    address = {"streetAddress": "1 Road", "postalCode": "1", "city": "C", "country": "DE"}
    building = await graphql(
        http,
        "mutation ($i: BuildingInput!) { createBuilding(input: $i) { id } }",
        {
            "i": {
                "name": f"{prefix} House",
                "userId": tenant,
                "numberOfApartments": 1,
                "address": address,
            }
        },
    )
    apartment = await graphql(
        http,
        "mutation ($i: ApartmentInput) { createApartment(input: $i) { id } }",
        {
            "i": {
                "apartmentNumber": "1",
                "buildingId": building["createBuilding"]["id"],
                "numberOfRooms": 1,
                "kitchen": True,
                "apartmentType": "SINGLE_ROOM",
                "apartmentStatus": "VACANT",
                "monthlyRent": 100_000,
                "currency": "EUR",
            }
        },
    )
    start = date.today() + timedelta(days=7)
    held = await graphql(
        http,
        "mutation ($i: ReserveApartmentInput!) { reserveApartment(input: $i) "
        "{ id bookingStatus amountDue currency workflowId } }",
        {
            "i": {
                "apartmentId": apartment["createApartment"]["id"],
                "userId": tenant,
                "startDate": start.isoformat(),
                "endDate": (start + timedelta(days=60)).isoformat(),
                "idempotencyKey": f"{prefix}-{tenant}",
            }
        },
    )
    booking: dict[str, Any] = held["reserveApartment"]
    assert booking["bookingStatus"] == "PENDING"
    return booking


async def pay_through_api(http: httpx.AsyncClient, booking: dict[str, Any]) -> str:
    """Pay the booking in full; its status after."""
    paid = await graphql(
        http,
        "mutation ($i: PayBookingInput!) { payBooking(input: $i) { bookingStatus } }",
        {
            "i": {
                "bookingId": booking["id"],
                "amount": booking["amountDue"],
                "currency": booking["currency"],
                "paymentReference": f"pay-{booking['id']}",
            }
        },
    )
    status: str = paid["payBooking"]["bookingStatus"]
    return status
