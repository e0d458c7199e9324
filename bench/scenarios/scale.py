"""5. Scale: many holds open at once, all expiring on time, and the worker's memory."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter as Tally
from datetime import UTC, date, datetime, timedelta
from typing import Any

from temporalio.client import Client, WorkflowHandle

from bench import store
from bench.procs import RssSampler, peak_rss_bytes
from bench.scenarios.harness import (
    SCALE_START_SHARE,
    Bench,
    CpuMeter,
    ms,
    run_concurrently,
)
from bench.stats import summarize
from booking.contract import BookingInput, BookingState, start_search_attributes, workflow_id_for
from workflows.booking import ApartmentBookingWorkflow


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
    held = await _wait_until_placed(b, booking_ids, label)
    seconds = time.perf_counter() - started
    if held < len(apartments):
        errors["no hold placed"] += len(apartments) - held
    return booking_ids, seconds, errors


async def _wait_until_placed(b: Bench, booking_ids: list[str], label: str) -> int:
    """How many of these holds are in the database once all are, or once none has been
    placed for a while (a rejection leaves no row)."""
    held_counter = b.progress.counter(f"{label}: placed in the database", len(booking_ids))
    held, last_change, last_held = 0, time.perf_counter(), -1
    while held < len(booking_ids) and time.perf_counter() - last_change < 30:
        await asyncio.sleep(0.2)
        async with b.pool.acquire() as conn:
            held = await store.count_bookings(conn, booking_ids)
        if held != last_held:
            last_change, last_held = time.perf_counter(), held
        held_counter.set(held)
    held_counter.finish()
    return held


async def scale(b: Bench) -> dict[str, Any]:
    sizes = b.sizes
    n = sizes.scale_holds
    sampled = {name: pid for name, pid in b.stack.pids.items() if name != "floor_worker"}
    sampler = RssSampler(sampled, tree=frozenset({"postgres"}))
    sampler.start()
    cpu = CpuMeter(b.stack.pids)
    calibrated, rate, hold_seconds = await _calibrate(b)

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
    cores_expiring, expiring_seconds = await _wait_for_expiries(b, booking_ids, latest)
    peaks = await sampler.stop()
    async with b.pool.acquire() as conn:
        statuses = await store.status_counts(conn, booking_ids)
        apartment_states = await store.apartment_status_counts(
            conn, apartments, date.fromisoformat(b.start_date)
        )
        lags = await store.expiry_lags(conn, booking_ids)
    expired = statuses.get("CANCELLED:EXPIRED", 0)
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
        "peak_rss_bytes_process_lifetime": _lifetime_peaks(b),
        "cpu_cores_used": cpu.cores_used(),
        "cpu_cores_used_placing": cores_placing,
        "cpu_cores_used_expiring": cores_expiring,
    }


async def _calibrate(b: Bench) -> tuple[float, float, int]:
    """(holds placed per second here, the start rate, the hold's length) for this machine.

    Every hold must still be open when the last one is placed, so the hold must outlast the
    time placing them takes on this machine.
    """
    sizes = b.sizes
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
    expected = sizes.scale_holds / rate
    # A hold runs from its placement; paced starts are placed on schedule (the last one
    # 7 s after its start at 70 %), so a 15 % margin keeps the first open to the last.
    hold_seconds = max(sizes.scale_hold_seconds, int(expected * 1.15 + sizes.scale_margin))
    b.progress.say(
        f"  placing {sizes.scale_holds} holds at {rate:.0f}/s ({SCALE_START_SHARE:.0%} of the "
        f"calibrated {calibrated:.0f}/s, ~{expected:.0f} s): hold {hold_seconds} s"
    )
    return calibrated, rate, hold_seconds


async def _wait_for_expiries(
    b: Bench, booking_ids: list[str], latest: datetime | None
) -> tuple[dict[str, float], float]:
    """Poll until every hold has expired (or the grace after the last deadline is over):
    the CPU cores used from the first expiry to the last, and that span in seconds."""
    counter = b.progress.counter("holds expired", len(booking_ids))
    deadline_wall = (latest or datetime.now(UTC)) + timedelta(seconds=b.sizes.scale_grace)
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
    cores = expiring_cpu.cores_used() if expiring_cpu is not None else {}
    return cores, last_expiry - first_expiry


def _lifetime_peaks(b: Bench) -> dict[str, int]:
    return {
        name: value
        for name in ("worker", "api")
        if name in b.stack.pids and (value := peak_rss_bytes(b.stack.pids[name])) is not None
    }
