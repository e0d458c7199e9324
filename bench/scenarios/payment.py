"""2. Payment to confirmation: ``payBooking``, the webhook and a signal -> APPROVED."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter as Tally
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from bench.graphql import Reply
from bench.scenarios.harness import (
    LONG_HOLD,
    Bench,
    CpuMeter,
    error_counts,
    ms,
)
from bench.stats import summarize


class StatusListener:
    """LISTEN booking_status: when each booking's APPROVED row became visible."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.Future[float]] = {}
        self._conn: asyncpg.Connection | None = None

    async def start(self, dsn: str) -> None:
        self._conn = await asyncpg.connect(dsn)
        await self._conn.add_listener("booking_status", self._on_notify)

    def _on_notify(
        self,
        conn: asyncpg.Connection[Any] | PoolConnectionProxy[Any],
        pid: int,
        channel: str,
        payload: object,
    ) -> None:
        received = time.perf_counter()
        with contextlib.suppress(ValueError, KeyError, TypeError):
            event = json.loads(str(payload))
            future = self._waiting.get(event["id"])
            if future is not None and not future.done() and event["status"] == "APPROVED":
                future.set_result(received)

    def expect(self, booking_id: str) -> asyncio.Future[float]:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._waiting[booking_id] = future
        return future

    async def close(self) -> None:
        if self._conn is not None:
            await self._conn.close()


async def payment(b: Bench, held: list[dict[str, Any]] | None) -> dict[str, Any]:
    n, warmup = b.sizes.payment_count, b.sizes.warmup
    result: dict[str, Any] = {"count": n, "warmup": warmup, "clients": 1}
    # Holds to pay: the ones the reserve scenario left open, topped up as needed.
    need = 3 * (n + warmup)
    holds = list(held or [])[:need]
    missing = need - len(holds)
    if missing > 0:
        counter = b.progress.counter("placing holds to pay", missing)
        for apartment in await b.apartments(missing, "pay"):
            holds.append(await b.reserve_ok(apartment, LONG_HOLD))
            counter.advance()
        counter.finish()
    sync_holds = holds[: n + warmup]
    webhook_holds = holds[n + warmup : 2 * (n + warmup)]
    signal_holds = holds[2 * (n + warmup) :]

    cpu = CpuMeter(b.stack.pids)
    counter = b.progress.counter("payBooking -> APPROVED, one client", len(sync_holds))
    latencies: list[float] = []
    replies: list[Reply] = []
    for i, hold in enumerate(sync_holds):
        reply = await b.api.pay(
            hold["id"], hold["amountDue"], hold["currency"], f"sync-{hold['id']}"
        )
        counter.advance()
        if i < warmup:
            continue
        replies.append(reply)
        if reply.ok and reply.data and reply.data.get("bookingStatus") == "APPROVED":
            latencies.append(ms(reply.seconds))
    counter.finish()
    result["sync"] = {
        "path": "payBooking mutation (workflow update), response says APPROVED",
        "latency_ms": summarize(latencies),
        "errors": error_counts(replies),
        "cpu_cores_used": cpu.cores_used(),
    }

    listener = StatusListener()
    await listener.start(b.stack.database_url)
    try:
        if b.stack.webhook_secret:
            result["webhook"] = await _async_payments(b, listener, webhook_holds, warmup, "webhook")
        result["signal"] = await _async_payments(b, listener, signal_holds, warmup, "signal")
    finally:
        await listener.close()
    return result


async def _async_payments(
    b: Bench, listener: StatusListener, holds: list[dict[str, Any]], warmup: int, how: str
) -> dict[str, Any]:
    counter = b.progress.counter(f"payment via {how} -> APPROVED in the database", len(holds))
    to_db: list[float] = []
    accepted: list[float] = []
    failures: Tally[str] = Tally()
    cpu = CpuMeter(b.stack.pids)
    for i, hold in enumerate(holds):
        booking_id = hold["id"]
        seen = listener.expect(booking_id)
        reference = f"{how}-{booking_id}"
        started = time.perf_counter()
        if how == "webhook":
            assert b.stack.webhook_secret is not None
            reply = await b.api.webhook_payment(
                b.stack.webhook_secret,
                f"evt-{booking_id}",
                booking_id,
                hold["amountDue"],
                hold["currency"],
                reference,
            )
            if not reply.ok:
                failures[reply.error_type or "?"] += 1
                seen.cancel()
                counter.advance()
                continue
        else:
            from booking.contract import PaymentInput, workflow_id_for

            handle = b.stack.temporal.get_workflow_handle(workflow_id_for(booking_id))
            await handle.signal(
                "payment_received", PaymentInput(hold["amountDue"], hold["currency"], reference)
            )
        answered = time.perf_counter()
        try:
            visible = await asyncio.wait_for(seen, timeout=30)
        except TimeoutError:
            failures["not APPROVED within 30 s"] += 1
            counter.advance()
            continue
        counter.advance()
        if i < warmup:
            continue
        to_db.append(ms(visible - started))
        accepted.append(ms(answered - started))
    counter.finish()
    return {
        "path": (
            "POST /webhooks/payments (signed) -> payment_received signal"
            if how == "webhook"
            else "payment_received signal from a Temporal client"
        ),
        "latency_to_db_ms": summarize(to_db),
        "accepted_ms": summarize(accepted),
        "errors": dict(failures),
        "cpu_cores_used": cpu.cores_used(),
    }
