"""The six measurements of issue 5, each returning a JSON-ready dict.

Every scenario books its own freshly seeded apartments (ids carry the run id),
so scenarios never interfere through data and can be selected one by one.
Latencies are wall-clock times seen by the client, in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
import uuid
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio.client import Client, WithStartWorkflowOperation, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy

from bench import metrics, store
from bench.floor import FloorInput, FloorWorkflow
from bench.graphql import ApiClient, Reply
from bench.procs import RssSampler, cpu_seconds, peak_rss_bytes
from bench.progress import Progress
from bench.stack import Stack
from bench.stats import summarize
from workflows.booking import (
    ApartmentBookingWorkflow,
    BookingInput,
    BookingState,
    start_search_attributes,
    workflow_id_for,
)

RENT = 100_000
CURRENCY = "EUR"
UNAVAILABLE = "ApartmentUnavailable"
# The scale scenario starts its holds at this share of the placing rate it calibrated.
SCALE_START_SHARE = 0.55
# Holds that must outlive their scenario; they are never paid or cancelled.
LONG_HOLD = 3600
CONTENTION_HOLD = 300


@dataclass(frozen=True)
class Sizes:
    """How much each scenario does; ``QUICK`` is the CI smoke size."""

    reserve_count: int = 200
    payment_count: int = 100
    throughput_clients: int = 32
    throughput_seconds: float = 20.0
    throughput_warmup: float = 2.0
    contention_clients: int = 64
    contention_rounds: int = 50
    scale_holds: int = 10_000
    scale_hold_seconds: int = 60
    scale_clients: int = 64
    scale_calibration: int = 256
    scale_grace: float = 120.0
    # Seconds of slack on top of the calibrated time it takes to place every hold.
    scale_margin: int = 10
    warmup: int = 10

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


QUICK = Sizes(
    reserve_count=5,
    payment_count=3,
    throughput_clients=4,
    throughput_seconds=1.0,
    throughput_warmup=0.2,
    contention_clients=4,
    contention_rounds=2,
    scale_holds=12,
    scale_hold_seconds=2,
    scale_clients=8,
    scale_calibration=8,
    scale_grace=30.0,
    scale_margin=2,
    warmup=1,
)


def ms(seconds: float) -> float:
    return seconds * 1000.0


@dataclass
class Bench:
    """What every scenario needs: the stack, clients, and a source of fresh apartments."""

    stack: Stack
    api: ApiClient
    pool: asyncpg.Pool
    progress: Progress
    sizes: Sizes
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    users: list[str] = field(default_factory=list)
    _seq: Iterator[int] = field(default_factory=itertools.count)

    @property
    def prefix(self) -> str:
        return f"bench-{self.run_id}-"

    @property
    def building_id(self) -> str:
        return f"{self.prefix}building"

    # Far enough ahead that no lease timer of a paid booking fires during the run.
    start_date: str = field(default_factory=lambda: (date.today() + timedelta(days=30)).isoformat())
    end_date: str = field(default_factory=lambda: (date.today() + timedelta(days=60)).isoformat())

    async def setup(self, user_count: int) -> None:
        self.users = [f"{self.prefix}user-{i}" for i in range(user_count)]
        async with self.pool.acquire() as conn, conn.transaction():
            await store.insert_users(conn, self.users)
            await store.insert_building(conn, self.building_id, self.users[0], 0)

    async def apartments(self, count: int, tag: str) -> list[str]:
        ids = [f"{self.prefix}{tag}-{next(self._seq)}" for _ in range(count)]
        async with self.pool.acquire() as conn, conn.transaction():
            await store.insert_apartments(conn, self.building_id, ids, RENT, CURRENCY)
        return ids

    async def reserve(self, apartment_id: str, hold_seconds: int, user: int = 0) -> Reply:
        return await self.api.reserve(
            apartment_id, self.users[user], self.start_date, self.end_date, hold_seconds
        )

    async def reserve_ok(self, apartment_id: str, hold_seconds: int) -> dict[str, Any]:
        reply = await self.reserve(apartment_id, hold_seconds)
        if not reply.ok or reply.data is None or reply.data.get("bookingStatus") != "PENDING":
            raise BenchFailure(f"reserveApartment failed: {reply.error_type}: {reply.message}")
        return reply.data


class BenchFailure(Exception):
    """The system under test did something a scenario cannot measure around."""


class CpuMeter:
    """CPU time each process of the stack (and this one) used over a scenario."""

    def __init__(self, pids: dict[str, int]) -> None:
        self._pids = {**pids, "bench": os.getpid()}
        self._start = time.monotonic()
        self._cpu = self._read()

    def _read(self) -> dict[str, float]:
        found = {}
        for name, pid in self._pids.items():
            value = cpu_seconds(pid, tree=name in ("postgres", "api"))
            if value is not None:
                found[name] = value
        return found

    def cores_used(self) -> dict[str, float]:
        wall = time.monotonic() - self._start
        now = self._read()
        return {
            name: round((now[name] - self._cpu[name]) / wall, 2)
            for name in now
            if name in self._cpu and wall > 0
        }


async def run_concurrently(count: int, clients: int, job: Callable[[int], Awaitable[None]]) -> None:
    """Run ``job(i)`` for i in 0..count-1 with at most ``clients`` in flight."""
    indexes = iter(range(count))

    async def client() -> None:
        for i in indexes:
            await job(i)

    await asyncio.gather(*(client() for _ in range(min(clients, count))))


def _errors(replies: list[Reply]) -> dict[str, int]:
    return dict(Tally(r.error_type for r in replies if r.error_type is not None))


# -- 1. reserve latency ------------------------------------------------------------------


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
        "errors": _errors(replies),
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


# -- 2. payment to confirmation ------------------------------------------------------------


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
        "errors": _errors(replies),
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
            from workflows.booking import PaymentInput, workflow_id_for

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


# -- 3. throughput against the floor ---------------------------------------------------------


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
    result["cpu_cores_used"] = cpu.cores_used()
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
    before = await metrics.scrape(b.stack.worker_metrics_url)
    window.begin()
    await asyncio.gather(
        _ticker(b, f"bookings via GraphQL, {clients} clients", window),
        *(loop() for _ in range(clients)),
    )
    result = window.result(clients)
    result["cpu_cores_used"] = cpu.cores_used()
    result["worker_metrics"] = metrics.summarize(
        before, await metrics.scrape(b.stack.worker_metrics_url)
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
    return {
        "clients": clients,
        "bookings": bookings,
        "floor": floor_signal,
        "floor_update_protocol": floor_update,
        "ratio": round(bookings["per_second"] / floor_rate, 3) if floor_rate else None,
        "ratio_vs_update_protocol": (
            round(bookings["per_second"] / floor_update["per_second"], 3)
            if floor_update["per_second"]
            else None
        ),
    }


# -- 4. contention ---------------------------------------------------------------------------


async def contention(b: Bench) -> dict[str, Any]:
    rounds, clients = b.sizes.contention_rounds, b.sizes.contention_clients
    if len(b.users) < clients:
        raise BenchFailure(f"need {clients} users, have {len(b.users)}")
    apartments = await b.apartments(rounds, "contended")
    # Open every connection first, so that no round pays for TCP handshakes.
    await asyncio.gather(
        *(b.api.execute("{ __typename }", {}, "__typename") for _ in range(clients))
    )
    cpu = CpuMeter(b.stack.pids)
    counter = b.progress.counter(f"{clients} concurrent reserves of one apartment, rounds", rounds)
    winners_per_round: list[int] = []
    loser_latencies: list[float] = []
    winner_latencies: list[float] = []
    unexpected: Tally[str] = Tally()
    for apartment in apartments:
        gate = asyncio.Event()

        async def one(user: int, apartment: str = apartment, gate: asyncio.Event = gate) -> Reply:
            await gate.wait()
            # Longer than any round can take: a winner's hold that ran out during its own
            # round would let a late request win the apartment again, legitimately.
            return await b.reserve(apartment, CONTENTION_HOLD, user=user)

        tasks = [asyncio.create_task(one(u)) for u in range(clients)]
        await asyncio.sleep(0.01)
        gate.set()
        replies = await asyncio.gather(*tasks)
        winners = 0
        for reply in replies:
            if reply.ok and reply.data and reply.data.get("bookingStatus") == "PENDING":
                winners += 1
                winner_latencies.append(ms(reply.seconds))
            elif reply.error_type == UNAVAILABLE:
                loser_latencies.append(ms(reply.seconds))
            else:
                unexpected[f"{reply.error_type}: {reply.message}"[:120]] += 1
        winners_per_round.append(winners)
        counter.advance()
    counter.finish()
    async with b.pool.acquire() as conn:
        rows = await store.bookings_per_apartment(conn, apartments)
    return {
        "rounds": rounds,
        "clients": clients,
        "rounds_with_exactly_one_winner": sum(1 for w in winners_per_round if w == 1),
        "winners_per_round": winners_per_round,
        "booking_rows_per_apartment": dict(Tally(rows.values())),
        "loser_error_type": UNAVAILABLE,
        "loser_latency_ms": summarize(loser_latencies),
        "winner_latency_ms": summarize(winner_latencies),
        "unexpected_errors": dict(unexpected),
        "cpu_cores_used": cpu.cores_used(),
    }


# -- 5. scale: many open holds ---------------------------------------------------------------


async def start_hold(
    client: Client, data: BookingInput, task_queue: str
) -> WorkflowHandle[ApartmentBookingWorkflow, BookingState]:
    """Start a booking workflow with the id and search attributes the API's reserve gives
    it, without waiting for the hold."""
    return await client.start_workflow(
        ApartmentBookingWorkflow.run,
        data,
        id=workflow_id_for(data.booking_id),
        task_queue=task_queue,
        search_attributes=start_search_attributes(data, None),
    )


async def _place_holds(
    b: Bench,
    apartments: list[str],
    hold_seconds: int,
    label: str,
    *,
    per_second: float | None = None,
) -> tuple[list[str], float, Tally[str]]:
    """Start one booking workflow per apartment, as the API's reserve does, and wait until
    each hold is in the database; with ``per_second``, starts are spread evenly at that rate
    (bookings arrive over time), otherwise they go as fast as the clients can send them.

    Started by a Temporal client rather than through GraphQL: the API's reserve is measured
    in the other scenarios, and on two cores one API process would make placing 10,000
    holds take most of the benchmark's time. The workflow, its input, id and search
    attributes are the API's; the start does not wait for the hold (no update), so the
    worker places holds as fast as it can take them and the time counted is until the
    last one is in Postgres.
    """
    client = b.stack.temporal
    booking_ids = [str(uuid.uuid4()) for _ in apartments]
    errors: Tally[str] = Tally()
    started_counter = b.progress.counter(f"{label}: started", len(apartments))
    start_date, end_date = date.fromisoformat(b.start_date), date.fromisoformat(b.end_date)

    started = time.perf_counter()

    async def job(i: int) -> None:
        if per_second:
            await asyncio.sleep(started + i / per_second - time.perf_counter())
        data = BookingInput(
            booking_id=booking_ids[i],
            apartment_id=apartments[i],
            user_id=b.users[i % len(b.users)],
            start_date=start_date,
            end_date=end_date,
            hold_seconds=hold_seconds,
        )
        try:
            await start_hold(client, data, b.stack.options.task_queue)
        except Exception as exc:  # counted and reported, never hidden
            errors[type(exc).__name__] += 1
        started_counter.advance()

    await run_concurrently(len(apartments), b.sizes.scale_clients, job)
    started_counter.finish()
    held_counter = b.progress.counter(f"{label}: placed in the database", len(apartments))
    held, last_change, last_held = 0, time.perf_counter(), -1
    # Until every hold is placed, or none has been for a while (a rejection leaves no row).
    while held < len(apartments) and time.perf_counter() - last_change < 30:
        await asyncio.sleep(0.2)
        async with b.pool.acquire() as conn:
            held = await store.count_bookings(conn, booking_ids)
        if held != last_held:
            last_change, last_held = time.perf_counter(), held
        held_counter.set(held)
    held_counter.finish()
    seconds = time.perf_counter() - started
    if held < len(apartments):
        errors["no hold placed"] += len(apartments) - held
    return booking_ids, seconds, errors


async def scale(b: Bench) -> dict[str, Any]:
    sizes = b.sizes
    n = sizes.scale_holds
    sampled = {name: pid for name, pid in b.stack.pids.items() if name != "floor_worker"}
    sampler = RssSampler(sampled, tree=frozenset({"postgres"}))
    sampler.start()
    cpu = CpuMeter(b.stack.pids)

    # Calibrate: every hold must still be open when the last one is placed, so the hold
    # must outlast the time placing them takes on this machine.
    calibration = await b.apartments(sizes.scale_calibration, "calibrate")
    _, seconds, _ = await _place_holds(
        b, calibration, sizes.scale_hold_seconds, "calibration holds"
    )
    calibrated = len(calibration) / seconds if seconds > 0 else float("inf")
    # Bookings arrive at a steady rate the machine sustains, not in one burst. Started as
    # fast as possible, 10,000 workflows reached the server at ~110/s, the worker placed few
    # holds until the starts were over and then ~70/s, so the holds came due faster than
    # they expire (~39/s at 10,000: the worker's cache of 1,000 is long evicted by then)
    # and the lag measured the queue of that burst: p99 77 s. Started at 70 % of the
    # calibrated rate (42/s) they were placed on time but still came due faster than 39/s:
    # p99 53 s (bench/results/ab-scale-10000-*.json). Hence 55 %.
    rate = calibrated * SCALE_START_SHARE
    expected = n / rate
    # A hold runs from its placement; paced starts are placed on schedule (the last one
    # 7 s after its start at 70 %), so a 15 % margin keeps the first open to the last.
    hold_seconds = max(sizes.scale_hold_seconds, int(expected * 1.15 + sizes.scale_margin))
    b.progress.say(
        f"  placing {n} holds at {rate:.0f}/s ({SCALE_START_SHARE:.0%} of the calibrated "
        f"{calibrated:.0f}/s, ~{expected:.0f} s): hold {hold_seconds} s"
    )

    apartments = await b.apartments(n, "scale")
    # Per phase, so that a run shows which side was short of CPU while placing and while
    # expiring (over the whole scenario the idle wait between them hides it).
    placing_cpu = CpuMeter(b.stack.pids)
    booking_ids, placing_seconds, place_errors = await _place_holds(
        b, apartments, hold_seconds, f"holds of {hold_seconds} s", per_second=rate
    )
    cores_placing = placing_cpu.cores_used()
    async with b.pool.acquire() as conn:
        open_after_placing = await store.count_pending(conn, booking_ids)
        latest = await store.latest_hold_expiry(conn, booking_ids)
    rss_at_peak_holds = await sampler.stop()
    sampler = RssSampler(sampled, tree=frozenset({"postgres"}), peaks=dict(rss_at_peak_holds))
    sampler.start()

    counter = b.progress.counter("holds expired", len(booking_ids))
    deadline_wall = (latest or datetime.now(UTC)) + timedelta(seconds=sizes.scale_grace)
    pending = len(booking_ids)
    expiring_cpu: CpuMeter | None = None
    first_expiry = last_expiry = 0.0
    while pending and datetime.now(UTC) < deadline_wall:
        await asyncio.sleep(1.0)
        b.stack.check_alive()
        async with b.pool.acquire() as conn:
            now_pending = await store.count_pending(conn, booking_ids)
        if now_pending < pending:
            last_expiry = time.perf_counter()
            if expiring_cpu is None:
                expiring_cpu, first_expiry = CpuMeter(b.stack.pids), last_expiry
        pending = now_pending
        counter.set(len(booking_ids) - pending)
    counter.finish()
    cores_expiring = expiring_cpu.cores_used() if expiring_cpu is not None else {}
    expiring_seconds = last_expiry - first_expiry
    peaks = await sampler.stop()
    async with b.pool.acquire() as conn:
        statuses = await store.status_counts(conn, booking_ids)
        apartment_states = await store.apartment_status_counts(conn, apartments)
        lags = await store.expiry_lags(conn, booking_ids)
    expired = statuses.get("CANCELLED:EXPIRED", 0)
    high_water = {
        name: value
        for name in ("worker", "api")
        if name in b.stack.pids and (value := peak_rss_bytes(b.stack.pids[name])) is not None
    }
    return {
        "holds": n,
        "hold_seconds": hold_seconds,
        "clients": sizes.scale_clients,
        "calibrated_per_second": round(calibrated, 1),
        "start_rate_per_second": round(rate, 1),
        "start_share_of_calibrated": SCALE_START_SHARE,
        "placed": len(booking_ids),
        "place_errors": dict(place_errors),
        "placing_seconds": round(placing_seconds, 1),
        "placing_per_second": round(len(booking_ids) / placing_seconds, 1)
        if placing_seconds
        else None,
        "open_after_placing": open_after_placing,
        "expired": expired,
        # From the first expiry seen to the last (polled once a second).
        "expiring_seconds": round(expiring_seconds, 1),
        "expiring_per_second": round(expired / expiring_seconds, 1) if expiring_seconds else None,
        "statuses": statuses,
        "apartments": apartment_states,
        "all_expired_correctly": expired == n
        and apartment_states.get("VACANT", 0) == n
        and len(lags) == n,
        "expiry_lag_ms": summarize([ms(x) for x in lags]),
        "peak_rss_bytes_while_holding": rss_at_peak_holds,
        "peak_rss_bytes_sampled": peaks,
        "peak_rss_bytes_process_lifetime": high_water,
        "cpu_cores_used": cpu.cores_used(),
        "cpu_cores_used_placing": cores_placing,
        "cpu_cores_used_expiring": cores_expiring,
    }


async def double_bookings(b: Bench) -> list[str]:
    async with b.pool.acquire() as conn:
        return await store.double_booked_apartments(conn, b.prefix)
