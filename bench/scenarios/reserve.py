"""1. Reserve latency: ``reserveApartment`` -> PENDING with one client, beside the engine floor."""

from __future__ import annotations

import time
import uuid
from typing import Any

from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from bench.floor import FloorInput, FloorWorkflow
from bench.graphql import Reply
from bench.scenarios.harness import (
    LONG_HOLD,
    Bench,
    CpuMeter,
    error_counts,
    ms,
)
from bench.stats import summarize


async def reserve_latency(b: Bench) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The result, and the holds placed (left open for the payment scenario)."""
    n, warmup = b.sizes.reserve_count, b.sizes.warmup
    apartments = await b.apartments(n + warmup, "reserve")
    cpu = CpuMeter(b.stack.pids)
    counter = b.progress.counter("reserveApartment -> PENDING, one client", n + warmup)
    latencies: list[float] = []
    replies: list[Reply] = []
    holds: list[dict[str, Any]] = []
    for i, apartment in enumerate(apartments):
        reply = await b.reserve(apartment, LONG_HOLD)
        counter.advance()
        if reply.ok and reply.data is not None:
            holds.append(reply.data)
        if i < warmup:
            continue
        replies.append(reply)
        if reply.ok and reply.data and reply.data.get("bookingStatus") == "PENDING":
            latencies.append(ms(reply.seconds))
    counter.finish()
    floor_hold, floor_pay = await _floor_one_client(b, n + warmup, warmup)
    result = {
        "count": n,
        "warmup": warmup,
        "clients": 1,
        "hold_seconds": LONG_HOLD,
        "floor_hold_latency_ms": floor_hold,
        "floor_pay_latency_ms": floor_pay,
        "latency_ms": summarize(latencies),
        "errors": error_counts(replies),
        "cpu_cores_used": cpu.cores_used(),
    }
    return result, holds


async def _floor_one_client(b: Bench, count: int, warmup: int) -> tuple[dict[str, Any], ...]:
    """The engine's own latency for the same two steps, one client: update-with-start that
    answers once a no-op activity ran, then an update that answers after another one."""
    client = b.stack.temporal
    hold_ms: list[float] = []
    pay_ms: list[float] = []
    counter = b.progress.counter("engine floor, one client", count)
    for i in range(count):
        operation = WithStartWorkflowOperation(
            FloorWorkflow.run,
            FloorInput(hold_seconds=LONG_HOLD),
            id=f"{b.prefix}floor1-{uuid.uuid4().hex}",
            task_queue=b.stack.floor_task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
        started = time.perf_counter()
        await client.execute_update_with_start_workflow(
            FloorWorkflow.wait_for_hold, start_workflow_operation=operation
        )
        held = time.perf_counter()
        handle = await operation.workflow_handle()
        paid_started = time.perf_counter()
        await handle.execute_update(FloorWorkflow.pay_update)
        paid = time.perf_counter()
        counter.advance()
        if i >= warmup:
            hold_ms.append(ms(held - started))
            pay_ms.append(ms(paid - paid_started))
    counter.finish()
    return summarize(hold_ms), summarize(pay_ms)
