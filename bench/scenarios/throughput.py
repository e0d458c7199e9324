"""3. Throughput: complete bookings per second against the engine's floor workflow."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Any

from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from bench import metrics
from bench.floor import FloorInput, FloorWorkflow
from bench.scenarios.harness import (
    LONG_HOLD,
    Bench,
    BenchFailure,
    CpuMeter,
    cpu_ms_per,
    ms,
)
from bench.stats import summarize


@dataclass
class Window:
    """Counts completions that finish inside [start + warmup, start + warmup + seconds]."""

    warmup: float
    seconds: float
    start: float = 0.0
    completed: int = 0
    latencies: list[float] = field(default_factory=list)
    errors: Tally[str] = field(default_factory=Tally)

    def begin(self) -> None:
        self.start = time.perf_counter()

    @property
    def open_until(self) -> float:
        return self.start + self.warmup + self.seconds

    def running(self) -> bool:
        return time.perf_counter() < self.open_until

    def record(self, began: float, finished: float) -> None:
        if self.start + self.warmup <= finished <= self.open_until:
            self.completed += 1
            self.latencies.append(ms(finished - began))

    def result(self, clients: int) -> dict[str, Any]:
        return {
            "clients": clients,
            "seconds": self.seconds,
            "warmup_seconds": self.warmup,
            "completed": self.completed,
            "per_second": round(self.completed / self.seconds, 2),
            "latency_ms": summarize(self.latencies),
            "errors": dict(self.errors),
        }


async def _ticker(b: Bench, label: str, window: Window) -> None:
    counter = b.progress.counter(label + " (s)", int(window.warmup + window.seconds))
    while window.running():
        await asyncio.sleep(0.5)
        counter.set(int(time.perf_counter() - window.start))
    counter.finish()


async def _floor(b: Bench, protocol: str, clients: int) -> dict[str, Any]:
    client = b.stack.temporal
    queue = b.stack.floor_task_queue
    window = Window(b.sizes.throughput_warmup, b.sizes.throughput_seconds)

    async def one_signal() -> None:
        handle = await client.start_workflow(
            FloorWorkflow.run,
            FloorInput(hold_seconds=LONG_HOLD),
            id=f"{b.prefix}floor-{uuid.uuid4().hex}",
            task_queue=queue,
        )
        await handle.signal(FloorWorkflow.pay)
        outcome = await handle.result()
        if outcome != "APPROVED":
            raise BenchFailure(f"floor workflow ended {outcome}")

    async def one_update() -> None:
        operation = WithStartWorkflowOperation(
            FloorWorkflow.run,
            FloorInput(hold_seconds=LONG_HOLD),
            id=f"{b.prefix}floor-{uuid.uuid4().hex}",
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
        await client.execute_update_with_start_workflow(
            FloorWorkflow.wait_for_hold, start_workflow_operation=operation
        )
        handle = await operation.workflow_handle()
        await handle.execute_update(FloorWorkflow.pay_update)

    one = one_signal if protocol == "signal" else one_update

    async def loop() -> None:
        while window.running():
            began = time.perf_counter()
            try:
                await one()
            except Exception as exc:
                window.errors[type(exc).__name__] += 1
                continue
            window.record(began, time.perf_counter())

    cpu = CpuMeter(b.stack.pids)
    window.begin()
    await asyncio.gather(
        _ticker(b, f"floor ({protocol}), {clients} clients", window),
        *(loop() for _ in range(clients)),
    )
    result = window.result(clients)
    usage = cpu.usage()
    result["cpu_cores_used"] = {k: round(v, 2) for k, v in usage.items()}
    result["cpu_ms_per_completed"] = cpu_ms_per(usage, result["per_second"])
    return result


async def _bookings(b: Bench, clients: int) -> dict[str, Any]:
    window = Window(b.sizes.throughput_warmup, b.sizes.throughput_seconds)
    # Generous: more apartments than the system could book in the window.
    budget = int(400 * (window.warmup + window.seconds)) + clients
    apartments = iter(await b.apartments(budget, "tput"))
    reserve_ms: list[float] = []
    pay_ms: list[float] = []

    async def loop() -> None:
        while window.running():
            apartment = next(apartments, None)
            if apartment is None:
                window.errors["ran out of apartments"] += 1
                return
            began = time.perf_counter()
            held = await b.reserve(apartment, LONG_HOLD)
            reserve_ms.append(ms(held.seconds))
            if not held.ok or held.data is None:
                window.errors[f"reserve: {held.error_type}"] += 1
                continue
            paid = await b.api.pay(
                held.data["id"],
                held.data["amountDue"],
                held.data["currency"],
                f"tput-{held.data['id']}",
            )
            pay_ms.append(ms(paid.seconds))
            if not paid.ok or paid.data is None or paid.data.get("bookingStatus") != "APPROVED":
                window.errors[f"pay: {paid.error_type}"] += 1
                continue
            window.record(began, time.perf_counter())

    cpu = CpuMeter(b.stack.pids)
    before = await metrics.scrape(b.stack.worker_metrics_urls)
    window.begin()
    await asyncio.gather(
        _ticker(b, f"bookings via GraphQL, {clients} clients", window),
        *(loop() for _ in range(clients)),
    )
    result = window.result(clients)
    usage = cpu.usage()
    result["cpu_cores_used"] = {k: round(v, 2) for k, v in usage.items()}
    result["cpu_ms_per_completed"] = cpu_ms_per(usage, result["per_second"])
    # Two GraphQL requests per booking (reserve, pay).
    result["api_cpu_ms_per_request"] = round(result["cpu_ms_per_completed"].get("api", 0) / 2, 2)
    result["worker_metrics"] = metrics.summarize(
        before, await metrics.scrape(b.stack.worker_metrics_urls)
    )
    result["reserve_latency_ms"] = summarize(reserve_ms)
    result["pay_latency_ms"] = summarize(pay_ms)
    return result


async def throughput(b: Bench) -> dict[str, Any]:
    clients = b.sizes.throughput_clients
    floor_signal = await _floor(b, "signal", clients)
    floor_update = await _floor(b, "update", clients)
    bookings = await _bookings(b, clients)
    floor_rate = floor_signal["per_second"]
    ours = bookings["cpu_ms_per_completed"]
    floor = floor_signal["cpu_ms_per_completed"]
    # The service: every process but the load generator. The floor's service is the server,
    # its worker and the Temporal client driving it (the floor's stand-in for our API).
    ours_total = round(sum(v for k, v in ours.items() if k != "bench"), 2)
    floor_total = round(
        sum(v for k, v in floor.items() if k in ("temporal", "floor_worker", "bench")), 2
    )
    return {
        "clients": clients,
        "bookings": bookings,
        "floor": floor_signal,
        "floor_update_protocol": floor_update,
        "ratio": round(bookings["per_second"] / floor_rate, 3) if floor_rate else None,
        "cpu_ms_per_booking": {
            "service": ours_total,
            "floor": floor_total,
            "ratio": round(ours_total / floor_total, 2) if floor_total else None,
            "worker": ours.get("worker"),
            "api_per_request": bookings["api_cpu_ms_per_request"],
            "load_generator": ours.get("bench"),
        },
        "ratio_vs_update_protocol": (
            round(bookings["per_second"] / floor_update["per_second"], 3)
            if floor_update["per_second"]
            else None
        ),
    }
