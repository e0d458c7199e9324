"""6. Live updates at scale: N subscribers on one booking, then it is paid.

The subscribers speak ``Sizes.live_protocol`` (graphql-transport-ws, graphql-ws or AppSync's
real-time protocol) and, as every browser does, offer ``permessage-deflate``
(``Sizes.live_deflate``; ``--live-no-deflate`` for the lean client that offers nothing).

Every subscriber watches the same booking on the one API process (the worst case for a
fan-out: one change, N messages). Measured: the API's memory per subscriber (its RSS once all
are subscribed, less its RSS before), how long subscribing took, and each subscriber's delay
from the change (the APPROVED row's notice reaching a LISTEN connection of the bench) to its
``next`` with ``bookingStatus: APPROVED`` (both stamped with CLOCK_MONOTONIC, one clock for
all processes on Linux). The subscribers run in their own process
(``bench.subscribers``), which raises its open-file limit as it needs; the API does the
same at start (``booking api``), as a deployment's ``ulimit -n`` / ``LimitNOFILE`` would.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from bench.procs import cpu_seconds, rss_bytes
from bench.scenarios.harness import LONG_HOLD, Bench, BenchFailure, ms
from bench.scenarios.payment import StatusListener
from bench.stats import summarize


async def _line(process: asyncio.subprocess.Process, within: float) -> dict[str, Any]:
    assert process.stdout is not None
    raw = await asyncio.wait_for(process.stdout.readline(), within)
    if not raw:
        raise BenchFailure(f"the subscribers' process exited ({await process.wait()})")
    parsed: dict[str, Any] = json.loads(raw)
    return parsed


async def _settled_rss(pid: int) -> int:
    """The API's RSS once it stops moving (the last subscribers' first messages are out)."""
    last = rss_bytes(pid) or 0
    for _ in range(20):
        await asyncio.sleep(0.5)
        now = rss_bytes(pid) or 0
        if abs(now - last) < 256 * 1024:
            return now
        last = now
    return last


async def _subscribers(
    ws_url: str, api_key: str, booking_id: str, count: int, protocol: str, deflate: bool
) -> asyncio.subprocess.Process:
    """The load generator, in a process of its own (it must not eat the API's cores)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.subscribers",
        "--url",
        ws_url,
        "--api-key",
        api_key,
        "--booking-id",
        booking_id,
        "--count",
        str(count),
        "--protocol",
        protocol,
        *(["--deflate"] if deflate else []),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        # The delivery line lists one timestamp per subscriber: ~200 KB for 10,000.
        limit=32 * 2**20,
    )


async def live_updates(b: Bench) -> dict[str, Any]:
    count = b.sizes.live_subscribers
    api_pid = b.stack.pids.get("api")
    (apartment,) = await b.apartments(1, "live")
    hold = await b.reserve_ok(apartment, LONG_HOLD)
    booking_id = hold["id"]
    ws_url = b.stack.graphql_url.replace("http://", "ws://", 1)
    rss_before = await _settled_rss(api_pid) if api_pid else None

    protocol, deflate = b.sizes.live_protocol, b.sizes.live_deflate
    b.progress.say(
        f"  {count} {protocol} subscribers connecting"
        + (", offering permessage-deflate" if deflate else "")
    )
    process = await _subscribers(ws_url, b.stack.api_key, booking_id, count, protocol, deflate)
    listener = StatusListener()
    try:
        subscribed = await _line(process, 330)
        rss_after = await _settled_rss(api_pid) if api_pid else None
        b.progress.say(
            f"  {subscribed['subscribed']} subscribed in {subscribed['seconds']} s"
            + (f"; failures {subscribed['failed']}" if subscribed["failed"] else "")
        )
        await listener.start(b.stack.database_url)
        approved = listener.expect(booking_id)
        api_cpu_before = cpu_seconds(api_pid) if api_pid else None
        reply = await b.api.pay(
            booking_id, hold["amountDue"], hold["currency"], f"live-{booking_id}"
        )
        if not reply.ok:
            raise BenchFailure(f"payBooking failed: {reply.error_type}: {reply.message}")
        changed_at = await asyncio.wait_for(approved, 30)
        assert process.stdin is not None
        process.stdin.write(b"paid\n")
        await process.stdin.drain()
        delivered = await _line(process, 120)
        api_cpu_after = cpu_seconds(api_pid) if api_pid else None
    finally:
        await listener.close()
        if process.returncode is None:
            process.kill()
        await process.wait()

    return _live_result(
        count,
        (protocol, deflate),
        subscribed,
        delivered,
        changed_at,
        rss=(rss_before, rss_after),
        api_cpu=(api_cpu_before, api_cpu_after),
    )


def _live_result(
    count: int,
    client: tuple[str, bool],
    subscribed: dict[str, Any],
    delivered: dict[str, Any],
    changed_at: float,
    *,
    rss: tuple[int | None, int | None],
    api_cpu: tuple[float | None, float | None],
) -> dict[str, Any]:
    delays = sorted(ms(t - changed_at) for t in delivered["received"])
    result: dict[str, Any] = {
        "subscribers": count,
        "protocol": client[0],
        "deflate_offered": client[1],
        # Connections whose messages the API compressed (it accepted the offer).
        "deflate_accepted": subscribed.get("deflate", 0),
        "subscribed": subscribed["subscribed"],
        "subscribe_seconds": subscribed["seconds"],
        "subscribe_failures": subscribed["failed"],
        "delivered": len(delays),
        "delivery_failures": delivered["failed"],
        "delivery_ms": summarize(delays),
        "delivery_span_ms": round(delays[-1] - delays[0], 1) if delays else None,
    }
    cpu_before, cpu_after = api_cpu
    if cpu_before is not None and cpu_after is not None:
        result["api_cpu_ms_pay_to_delivered"] = round((cpu_after - cpu_before) * 1000, 1)
    rss_before, rss_after = rss
    if rss_before is not None and rss_after is not None and subscribed["subscribed"]:
        result["api_rss_mb_before"] = round(rss_before / 2**20, 1)
        result["api_rss_mb_subscribed"] = round(rss_after / 2**20, 1)
        result["api_kb_per_subscriber"] = round(
            (rss_after - rss_before) / 1024 / subscribed["subscribed"], 1
        )
    return result
