"""Issue 14 over real HTTP and WebSockets: "taken" from a read, extendHold, the hold limit and
the waiting list, through the real worker, Temporal dev server and Postgres."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.helpers import (
    APARTMENT_STATUS,
    BOOKING_FIELDS,
    CANCEL,
    PAY,
    RESERVE,
    E2EStack,
    Gql,
    create_apartment,
    create_user,
    days_ahead,
    error_types,
    next_message,
    open_transport_ws,
    reserve_input,
)
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

EXTEND = f"""
mutation ($input: ExtendHoldInput!) {{
  extendHold(input: $input) {{ {BOOKING_FIELDS} holdExtensions }}
}}
"""
ENTRY_FIELDS = (
    "id apartmentId userId startDate endDate status position offeredBookingId createdOn "
    "offeredBooking { id bookingStatus amountDue currency holdExpiresAt userId }"
)
JOIN = f"""
mutation ($input: JoinWaitlistInput!) {{ joinWaitlist(input: $input) {{ {ENTRY_FIELDS} }} }}
"""
LEAVE = f"""mutation ($id: ID!) {{ leaveWaitlist(id: $id) {{ {ENTRY_FIELDS} }} }}"""
GET_ENTRY = f"""query ($id: ID!) {{ getWaitlistEntry(id: $id) {{ {ENTRY_FIELDS} }} }}"""
GET_LIST = f"""query ($a: String!) {{ getWaitlist(apartmentId: $a) {{ {ENTRY_FIELDS} }} }}"""
ON_ENTRY = f"""subscription ($id: ID!) {{ onWaitlistEntryChanged(id: $id) {{ {ENTRY_FIELDS} }} }}"""


def _join_input(apartment: str, user: str) -> dict[str, Any]:
    return {
        "input": {
            "apartmentId": apartment,
            "userId": user,
            # The nights of reserve_input's stay: taken while it is held.
            "startDate": days_ahead(0),
            "endDate": days_ahead(181),
        }
    }


def _pay_input(booking: dict[str, Any]) -> dict[str, Any]:
    return {
        "input": {
            "bookingId": booking["id"],
            "amount": booking["amountDue"],
            "currency": booking["currency"],
            "paymentReference": f"ref-{uuid.uuid4()}",
        }
    }


async def _tenant(stack: E2EStack, admin: Gql) -> tuple[str, Gql]:
    tenant = await create_user(admin)
    return tenant, Gql(stack.api.client(stack.bearer(tenant, "Tenants")))


async def _executions(stack: E2EStack, apartment: str) -> int:
    count = 0
    async for _ in stack.client.list_workflows(f'ApartmentId = "{apartment}"'):
        count += 1
    return count


# -- 1. "taken" without a workflow -------------------------------------------------------------


async def test_a_rush_has_one_winner_and_the_losers_start_no_workflow(
    stack: E2EStack, admin: Gql
) -> None:
    _, apartment = await create_apartment(admin)
    tenants = [await _tenant(stack, admin) for _ in range(32)]
    try:
        # Half through each API process: the database still decides between the two.
        apis = [stack.api, stack.api2]
        clients = [
            Gql(apis[i % 2].client(stack.bearer(tenant, "Tenants")))
            for i, (tenant, _) in enumerate(tenants)
        ]
        bodies = await asyncio.gather(
            *(
                gql(RESERVE, reserve_input(apartment, tenant))
                for gql, (tenant, _) in zip(clients, tenants, strict=True)
            )
        )
        winners = [b for b in bodies if "errors" not in b]
        assert len(winners) == 1, bodies
        for body in bodies:
            if "errors" in body:
                assert error_types(body) == ["ApartmentUnavailable"], body
                assert body["data"] is None
        # Each process starts at most one execution that loses (and usually none).
        executions = await eventually(
            lambda: _executions(stack, apartment), lambda n: n >= 1, what="the visibility"
        )
        assert executions <= 4, executions
        # Taken answers from a read from now on: no execution for a late comer at all.
        late, late_gql = tenants[0]
        again = await late_gql(RESERVE, reserve_input(apartment, late))
        assert error_types(again) == ["ApartmentUnavailable"]
        await asyncio.sleep(1)
        assert await _executions(stack, apartment) == executions
        rows = await stack.pool.fetchval(
            "SELECT count(*) FROM bookings WHERE apartment_id = $1", apartment
        )
        assert rows == 1
        for gql in clients:
            await gql.http.aclose()
    finally:
        for _, gql in tenants:
            await gql.http.aclose()


# -- 2. extendHold ----------------------------------------------------------------------------


async def test_extend_hold_moves_the_deadline_once(stack: E2EStack, admin: Gql) -> None:
    tenant, gql = await _tenant(stack, admin)
    _, other = await _tenant(stack, admin)
    _, apartment = await create_apartment(admin)
    async with gql.http, other.http:
        held = (await gql(RESERVE, reserve_input(apartment, tenant)))["data"]["reserveApartment"]
        before = datetime.fromisoformat(held["holdExpiresAt"])

        for seconds in (0, 86_401):
            wrong = await gql(EXTEND, {"input": {"bookingId": held["id"], "seconds": seconds}})
            assert error_types(wrong) == ["ValidationError"], wrong
        foreign = await other(EXTEND, {"input": {"bookingId": held["id"], "seconds": 60}})
        assert error_types(foreign) == ["Unauthorized"]

        ws = await _subscription(
            stack,
            tenant,
            "subscription ($id: ID!) { onBookingStatusChanged(id: $id) { holdExpiresAt } }",
            {"id": held["id"]},
        )
        async with ws:
            first = await _frame(ws, "onBookingStatusChanged")
            assert first["holdExpiresAt"] == held["holdExpiresAt"]
            body = await gql(EXTEND, {"input": {"bookingId": held["id"], "seconds": 300}})
            assert "errors" not in body, body
            extended = body["data"]["extendHold"]
            # Subscribers hear of the new deadline.
            pushed = await _frame(ws, "onBookingStatusChanged")
            assert pushed["holdExpiresAt"] == extended["holdExpiresAt"]
        after = datetime.fromisoformat(extended["holdExpiresAt"])
        assert after - before == timedelta(seconds=300)  # later than it was, not from now
        assert extended["holdExtensions"] == 1 and extended["bookingStatus"] == "PENDING"

        # BOOKING_MAX_HOLD_EXTENSIONS is 1 by default.
        twice = await gql(EXTEND, {"input": {"bookingId": held["id"], "seconds": 300}})
        assert error_types(twice) == ["HoldNotExtendable"]
        assert "BOOKING_MAX_HOLD_EXTENSIONS" in twice["errors"][0]["message"]
        # An Admin may not go past the limit either.
        by_admin = await admin(EXTEND, {"input": {"bookingId": held["id"], "seconds": 60}})
        assert error_types(by_admin) == ["HoldNotExtendable"]

        events = await stack.pool.fetch(
            "SELECT reason FROM booking_events WHERE booking_id = $1 ORDER BY id", held["id"]
        )
        assert [e["reason"] for e in events] == ["RESERVED", "HOLD_EXTENDED"]
        cancelled = await gql(CANCEL, {"id": held["id"]})
        assert "errors" not in cancelled, cancelled
        gone = await gql(EXTEND, {"input": {"bookingId": held["id"], "seconds": 60}})
        assert error_types(gone) == ["HoldNotExtendable"]
        missing = await gql(EXTEND, {"input": {"bookingId": str(uuid.uuid4()), "seconds": 60}})
        assert error_types(missing) == ["BookingNotFound"]


# -- 3. the hold limit -------------------------------------------------------------------------


async def test_the_fourth_hold_is_refused_also_in_an_admins_hands(
    stack: E2EStack, admin: Gql
) -> None:
    tenant, gql = await _tenant(stack, admin)
    apartments = [(await create_apartment(admin))[1] for _ in range(5)]
    async with gql.http:
        bodies = await asyncio.gather(
            *(gql(RESERVE, reserve_input(a, tenant)) for a in apartments[:4])
        )
        held = [b["data"]["reserveApartment"] for b in bodies if "errors" not in b]
        refused = [b for b in bodies if "errors" in b]
        assert len(held) == 3, bodies
        assert [error_types(b) for b in refused] == [["HoldLimitReached"]]
        # The refused apartment is free for others: nothing was held for the refusal.
        (free,) = [a for a in apartments[:4] if a not in {h["apartmentId"] for h in held}]
        status = (await gql(APARTMENT_STATUS, {"id": free}))["data"]["getApartment"]
        assert status["apartmentStatus"] == "VACANT"

        in_the_name = await admin(RESERVE, reserve_input(apartments[4], tenant))
        assert error_types(in_the_name) == ["HoldLimitReached"]

        # Paying one frees a slot.
        paid = await gql(PAY, _pay_input(held[0]))
        assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid
        now = await admin(RESERVE, reserve_input(apartments[4], tenant))
        assert "errors" not in now, now
        for booking in [*held[1:], now["data"]["reserveApartment"]]:
            await gql(CANCEL, {"id": booking["id"]})


# -- 4. the waiting list ------------------------------------------------------------------------


async def test_a_waiting_list_offers_the_released_apartment_in_order(
    stack: E2EStack, admin: Gql
) -> None:
    holder, holder_gql = await _tenant(stack, admin)
    first, first_gql = await _tenant(stack, admin)
    second, second_gql = await _tenant(stack, admin)
    _, apartment = await create_apartment(admin, rent=80_000)
    async with holder_gql.http, first_gql.http, second_gql.http:
        vacant = await first_gql(JOIN, _join_input(apartment, first))
        assert error_types(vacant) == ["ValidationError"]
        assert "reserve it instead" in vacant["errors"][0]["message"]

        held = await holder_gql(RESERVE, reserve_input(apartment, holder))
        booking = held["data"]["reserveApartment"]
        joined = await first_gql(JOIN, _join_input(apartment, first))
        assert "errors" not in joined, joined
        entry = joined["data"]["joinWaitlist"]
        assert (entry["status"], entry["position"], entry["offeredBooking"]) == (
            "WAITING",
            1,
            None,
        )
        again = await first_gql(JOIN, _join_input(apartment, first))
        assert again["data"]["joinWaitlist"]["id"] == entry["id"]
        in_their_name = await first_gql(JOIN, _join_input(apartment, second))
        assert error_types(in_their_name) == ["Unauthorized"]
        later = (await second_gql(JOIN, _join_input(apartment, second)))["data"]["joinWaitlist"]
        assert later["position"] == 2

        # A tenant sees its own entries; an Admin the whole list.
        own = (await first_gql(GET_LIST, {"a": apartment}))["data"]["getWaitlist"]
        assert [e["id"] for e in own] == [entry["id"]]
        everyone = (await admin(GET_LIST, {"a": apartment}))["data"]["getWaitlist"]
        assert [e["id"] for e in everyone] == [entry["id"], later["id"]]
        peek = await first_gql(GET_ENTRY, {"id": later["id"]})
        assert error_types(peek) == ["Unauthorized"]

        # The first in line watches the entry live (AppSync-style subscription on api2).
        ws = await _subscription(stack, first, ON_ENTRY, {"id": entry["id"]})
        async with ws:
            now = await _frame(ws, "onWaitlistEntryChanged")
            assert now["status"] == "WAITING"

            # The holder cancels: the apartment passes straight to the first in line.
            cancelled = await holder_gql(CANCEL, {"id": booking["id"]})
            assert "errors" not in cancelled, cancelled
            offered = await _frame(ws, "onWaitlistEntryChanged")
            while offered["status"] == "WAITING":
                offered = await _frame(ws, "onWaitlistEntryChanged")
        assert offered["status"] == "OFFERED" and offered["position"] is None
        offer = offered["offeredBooking"]
        assert offer is not None and offer["userId"] == first
        assert (offer["bookingStatus"], offer["amountDue"]) == (
            "PENDING",
            80_000,
        )  # the first month, as any reserve
        status = (await admin(APARTMENT_STATUS, {"id": apartment}))["data"]["getApartment"]
        assert status["apartmentStatus"] == "RESERVED"
        # The second moved up.
        moved = (await second_gql(GET_ENTRY, {"id": later["id"]}))["data"]["getWaitlistEntry"]
        assert moved["position"] == 1

        # The offer is paid like any booking; the entry is BOOKED.
        paid = await first_gql(PAY, _pay_input(offer))
        assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid
        booked = await eventually(
            lambda: first_gql(GET_ENTRY, {"id": entry["id"]}),
            lambda b: b["data"]["getWaitlistEntry"]["status"] == "BOOKED",
            what="the entry booked",
        )
        assert booked["data"]["getWaitlistEntry"]["offeredBookingId"] == offer["id"]
        status = (await admin(APARTMENT_STATUS, {"id": apartment}))["data"]["getApartment"]
        assert status == {"apartmentStatus": "OCCUPIED", "tenant": {"id": first}}

        # The second leaves; leaving again answers the same; a stranger cannot leave for them.
        left = await second_gql(LEAVE, {"id": later["id"]})
        assert left["data"]["leaveWaitlist"]["status"] == "LEFT", left
        assert (await second_gql(LEAVE, {"id": later["id"]}))["data"]["leaveWaitlist"][
            "status"
        ] == "LEFT"
        not_yours = await first_gql(LEAVE, {"id": later["id"]})
        assert error_types(not_yours) == ["Unauthorized"]
        reasons = await stack.pool.fetch(
            "SELECT reason FROM booking_events WHERE waitlist_entry_id = $1 ORDER BY id",
            entry["id"],
        )
        assert [r["reason"] for r in reasons] == ["JOINED", "OFFERED", "PAID"]


async def test_leaving_an_offer_passes_it_on_and_the_last_frees_the_apartment(
    stack: E2EStack, admin: Gql
) -> None:
    holder, holder_gql = await _tenant(stack, admin)
    first, first_gql = await _tenant(stack, admin)
    second, second_gql = await _tenant(stack, admin)
    _, apartment = await create_apartment(admin)
    async with holder_gql.http, first_gql.http, second_gql.http:
        booking = (await holder_gql(RESERVE, reserve_input(apartment, holder)))["data"][
            "reserveApartment"
        ]
        entry = (await first_gql(JOIN, _join_input(apartment, first)))["data"]["joinWaitlist"]
        later = (await second_gql(JOIN, _join_input(apartment, second)))["data"]["joinWaitlist"]
        await holder_gql(CANCEL, {"id": booking["id"]})
        offered = await eventually(
            lambda: first_gql(GET_ENTRY, {"id": entry["id"]}),
            lambda b: b["data"]["getWaitlistEntry"]["status"] == "OFFERED",
            what="the first offer",
        )
        offer_id = offered["data"]["getWaitlistEntry"]["offeredBookingId"]

        # Declining the offer by leaving: its hold is cancelled and passes to the second.
        left = await first_gql(LEAVE, {"id": entry["id"]})
        assert left["data"]["leaveWaitlist"]["status"] == "LEFT", left
        row = await stack.pool.fetchrow(
            "SELECT booking_status, cancellation_reason FROM bookings WHERE id = $1", offer_id
        )
        assert row is not None
        assert (row["booking_status"], row["cancellation_reason"]) == (
            "CANCELLED",
            "TENANT_CANCELLED",
        )
        passed = await eventually(
            lambda: second_gql(GET_ENTRY, {"id": later["id"]}),
            lambda b: b["data"]["getWaitlistEntry"]["status"] == "OFFERED",
            what="the offer passed on",
        )
        second_offer = passed["data"]["getWaitlistEntry"]["offeredBooking"]
        assert second_offer is not None, passed
        assert second_offer["userId"] == second
        # An Admin declines for the second: nobody waits, the apartment is VACANT.
        declined = await admin(LEAVE, {"id": later["id"]})
        assert declined["data"]["leaveWaitlist"]["status"] == "LEFT", declined
        status = (await admin(APARTMENT_STATUS, {"id": apartment}))["data"]["getApartment"]
        assert status == {"apartmentStatus": "VACANT", "tenant": None}


async def _subscription(
    stack: E2EStack, tenant: str, query: str, variables: dict[str, Any]
) -> ClientConnection:
    """A graphql-transport-ws subscription on the second API process, signed in as
    ``tenant``: changes made through the first reach it only through Postgres."""
    token = stack.token(tenant, ["Tenants"])
    ws = await open_transport_ws(stack.api2.ws_url, {"Authorization": token})
    payload = {"query": query, "variables": variables}
    await ws.send(json.dumps({"id": "s", "type": "subscribe", "payload": payload}))
    return ws


async def _frame(ws: ClientConnection, field: str) -> dict[str, Any]:
    message = await next_message(ws, within=15)
    assert message["type"] == "next", message
    value: dict[str, Any] = message["payload"]["data"][field]
    return value
