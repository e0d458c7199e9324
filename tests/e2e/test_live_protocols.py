"""The bench's live subscribers (``bench.subscribers``) against the real API, on each of the
three WebSocket protocols, offering permessage-deflate as browsers do: every one subscribed and
got the change, and the API declined compression for every connection (a compression context
per connection doubled the API's memory per subscriber: BENCHMARKS.md, "Live updates")."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from typing import Any

import pytest

from tests.e2e.helpers import (
    PAY,
    RESERVE,
    E2EStack,
    Gql,
    create_apartment,
    create_user,
    reserve_input,
)

pytestmark = pytest.mark.e2e


async def _line(process: asyncio.subprocess.Process) -> dict[str, Any]:
    assert process.stdout is not None
    raw = await asyncio.wait_for(process.stdout.readline(), 60)
    assert raw, f"the subscribers exited ({await process.wait()})"
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws", "appsync"])
async def test_browser_like_subscribers_get_the_change_uncompressed(
    stack: E2EStack, admin: Gql, protocol: str
) -> None:
    _, apartment = await create_apartment(admin)
    tenant = await create_user(admin)
    booking = (await admin(RESERVE, reserve_input(apartment, tenant)))["data"]["reserveApartment"]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.subscribers",
        "--url",
        stack.api.ws_url,
        "--api-key",
        stack.key["x-api-key"],
        "--booking-id",
        booking["id"],
        "--count",
        "5",
        "--protocol",
        protocol,
        "--deflate",
        "--wait",
        "30",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        subscribed = await _line(process)
        assert (subscribed["subscribed"], subscribed["failed"]) == (5, {}), subscribed
        assert subscribed["deflate"] == 0  # offered by every connection, declined by the API
        payment = {
            "bookingId": booking["id"],
            "amount": booking["amountDue"],
            "currency": booking["currency"],
            "paymentReference": f"live-{uuid.uuid4().hex[:8]}",
        }
        paid = await admin(PAY, {"input": payment})
        assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid
        assert process.stdin is not None
        process.stdin.write(b"paid\n")
        await process.stdin.drain()
        delivered = await _line(process)
        assert (len(delivered["received"]), delivered["failed"]) == (5, {}), delivered
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
