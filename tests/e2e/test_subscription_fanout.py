"""Many subscribers of one booking share one execution per protocol and caller (api.fanout),
over real WebSockets against a real API process, and each still gets exactly its own answer.

An API process of its own, so that its subscription gauges count this test's subscribers only.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from tests.e2e.helpers import (
    PAY,
    RESERVE,
    SUBSCRIBERS,
    E2EStack,
    Follow,
    Gql,
    Subscriber,
    create_apartment,
    create_user,
    reserve_input,
)
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

PER_PROTOCOL = 8
SUBSCRIPTION = (
    "subscription S($id: ID!) { onBookingStatusChanged(id: $id) "
    "{ id bookingStatus user { id } apartment { apartmentStatus } } }"
)


async def _gauge(http: httpx.AsyncClient, name: str) -> float:
    text = (await http.get("/metrics")).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def _opener(
    subscribe: Subscriber,
) -> Callable[[str, str, str], Awaitable[tuple[ClientConnection, Follow]]]:
    async def open_(url: str, token: str, booking_id: str) -> tuple[ClientConnection, Follow]:
        return await subscribe(url, token, SUBSCRIPTION, {"id": booking_id})

    return open_


PROTOCOLS = {name: _opener(subscribe) for name, subscribe in SUBSCRIBERS.items()}
_transport_ws = PROTOCOLS["graphql-transport-ws"]


async def _pay(admin: Gql, booking: dict[str, Any]) -> None:
    payment = {
        "bookingId": booking["id"],
        "amount": booking["amountDue"],
        "currency": booking["currency"],
        "paymentReference": f"fanout-{uuid.uuid4()}",
    }
    paid = await admin(PAY, {"input": payment})
    assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid


def _status(payload: dict[str, Any]) -> str:
    booking = payload["data"]["onBookingStatusChanged"]
    return f"{booking['bookingStatus']}/{booking['apartment']['apartmentStatus']}"


async def test_one_execution_per_protocol_and_caller_every_subscriber_answered(
    stack: E2EStack, admin: Gql
) -> None:
    api = await stack.extra_api("api-fanout")
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=2_200)
    booking = (await admin(RESERVE, reserve_input(apartment, tenant)))["data"]["reserveApartment"]
    # One credential for all of them: equal callers, so they may share.
    token = stack.token(tenant, ["Tenants"])
    intruder = stack.token("someone-else", ["Tenants"])
    subscribers: list[tuple[ClientConnection, Follow]] = []
    try:
        async with httpx.AsyncClient(base_url=api.url) as http:
            for opener in PROTOCOLS.values():
                for _ in range(PER_PROTOCOL):
                    subscribers.append(await opener(api.ws_url, token, booking["id"]))
            firsts = await asyncio.gather(*(follow(ws) for ws, follow in subscribers))
            assert {_status(p) for p in firsts} == {"PENDING/RESERVED"}
            assert await _gauge(http, "booking_api_active_subscriptions") == 3 * PER_PROTOCOL
            assert await _gauge(http, "booking_api_subscription_streams") == 3

            # Another tenant, asking exactly the same, shares nothing: it is refused, alone.
            for name, opener in PROTOCOLS.items():
                ws, follow = await opener(api.ws_url, intruder, booking["id"])
                async with ws:
                    refused = await follow(ws)
                assert [e["errorType"] for e in refused["errors"]] == ["Unauthorized"], name
                assert refused.get("data") in (None, {"onBookingStatusChanged": None}), name

            await _pay(admin, booking)
            changes = await asyncio.gather(*(follow(ws) for ws, follow in subscribers))
            assert [_status(p) for p in changes] == ["APPROVED/OCCUPIED"] * len(subscribers)
            assert {p["data"]["onBookingStatusChanged"]["user"]["id"] for p in changes} == {tenant}

            # A late joiner of the running stream starts at the booking as it is now.
            late, follow_late = await _transport_ws(api.ws_url, token, booking["id"])
            async with late:
                assert _status(await follow_late(late)) == "APPROVED/OCCUPIED"
            assert await _gauge(http, "booking_api_subscription_streams") == 3

            for ws, _ in subscribers:
                await ws.close()
            subscribers.clear()
            await eventually(
                lambda: _gauge(http, "booking_api_subscription_streams"),
                lambda streams: streams == 0,
                what="every stream stopped once its subscribers left",
            )
            assert await _gauge(http, "booking_api_active_subscriptions") == 0
    finally:
        for ws, _ in subscribers:
            await ws.close()
        stack.stop_api("api-fanout")


async def test_the_same_question_on_two_connections_of_one_protocol_completes_separately(
    stack: E2EStack, admin: Gql
) -> None:
    """A subscriber that completes leaves the others running (and gets its own complete)."""
    tenant = await create_user(admin)
    _, apartment = await create_apartment(admin, rent=2_300)
    booking = (await admin(RESERVE, reserve_input(apartment, tenant)))["data"]["reserveApartment"]
    token = stack.token(tenant, ["Tenants"])
    first, follow_first = await _transport_ws(stack.api.ws_url, token, booking["id"])
    second, follow_second = await _transport_ws(stack.api.ws_url, token, booking["id"])
    async with first, second:
        assert _status(await follow_first(first)) == "PENDING/RESERVED"
        assert _status(await follow_second(second)) == "PENDING/RESERVED"
        await first.send(json.dumps({"id": "op", "type": "complete"}))
        await _pay(admin, booking)
        assert _status(await follow_second(second)) == "APPROVED/OCCUPIED"
        # The one that completed got nothing more.
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first.recv(), 0.5)
