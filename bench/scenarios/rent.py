"""The lease scenario (issue 24): 10,000 leases whose next invoice is issued at the same
moment, as on the first of a month.

Leases are seeded as they stand a few weeks into their first period (the booking paid, its
invoices written), and each gets its booking workflow in the state a lease carries across
continue-as-new (``BookingInput.lease``), so no hold or payment is replayed. A rent step is
due at a midnight; to make 10,000 of them fall due together at a moment of the benchmark's
choosing, every execution is started with Temporal's ``start_delay`` set to that moment and
an invoice whose issue time has come: at that moment all of them run their first workflow
task and issue their invoice, exactly the load a shared timer firing would bring (the timer
itself costs the server, not the worker, the same either way).

Measured: from that moment until every invoice is ISSUED in Postgres, none twice (one
RENT_ISSUED event each); the worker's peak RSS; the worker's CPU while the executions wait
for their start and, afterwards, while 10,000 leases wait on their next timer (days away).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, date, datetime, timedelta
from typing import Any

from bench import store
from bench.procs import RssSampler
from bench.scenarios.harness import Bench, CpuMeter, run_concurrently
from booking import rent
from booking.contract import (
    APPROVED,
    BookingInput,
    BookingState,
    InvoiceState,
    LeaseResume,
    start_search_attributes,
    workflow_id_for,
)
from booking.store.rent import invoice_id_for
from workflows.booking import ApartmentBookingWorkflow

RENT = 100_000
# The lease began this many days ago: its second invoice is due within the week, so its
# issue time (a week before) has come.
STARTED_DAYS_AGO = 24
LEASE_DAYS = 365
ISSUE_TIMEOUT = 600.0


def _resume(
    booking_id: str, apartment: str, user: str, start: date, paid_at: datetime
) -> LeaseResume:
    end = start + timedelta(days=LEASE_DAYS)
    invoices = [
        InvoiceState(
            invoice_id=invoice_id_for(booking_id, p.seq),
            seq=p.seq,
            period_start=p.period_start,
            period_end=p.period_end,
            due_date=p.due_date,
            rent=p.rent,
            late_fee=0,
            currency="EUR",
            status="PAID" if p.seq == 0 else "SCHEDULED",
            payment_reference=f"bench-{booking_id}" if p.seq == 0 else None,
        )
        for p in rent.rent_periods(start, end, RENT, RENT)
    ]
    state = BookingState(
        booking_id=booking_id,
        workflow_id=workflow_id_for(booking_id),
        apartment_id=apartment,
        user_id=user,
        status=APPROVED,
        amount_due=RENT,
        currency="EUR",
        hold_expires_at=None,
        paid_at=paid_at,
        cancellation_reason=None,
        lease_ended_at=None,
        start_date=start,
        end_date=end,
    )
    schedule = rent.schedule_of(invoices, rent.RentRules())
    return LeaseResume(state, schedule, [], {}, f"bench-{booking_id}")


async def leases(b: Bench) -> dict[str, Any]:
    n = b.sizes.rent_leases
    prefix = f"{b.prefix}lease-"
    start = datetime.now(UTC).date() - timedelta(days=STARTED_DAYS_AGO)
    paid_at = datetime.now(UTC) - timedelta(days=STARTED_DAYS_AGO)
    progress = b.progress
    progress.say(f"  seeding {n} leases with their invoices")
    seeding = time.monotonic()
    async with b.pool.acquire() as conn, conn.transaction():
        booking_ids = await store.seed_leases(
            conn,
            b.building_id,
            b.users[0],
            prefix,
            n,
            start,
            start + timedelta(days=LEASE_DAYS),
            RENT,
        )
    seed_seconds = time.monotonic() - seeding

    worker = {"worker": b.stack.pids["worker"]}
    sampler = RssSampler(worker)
    sampler.start()
    client = b.stack.temporal
    # Starting 10,000 executions takes a while on two cores; the moment is set after it.
    idle_window = b.sizes.rent_idle_seconds
    fire_at = time.time() + max(2.0, n / 80) + idle_window
    counter = progress.counter("lease executions started (delayed)", n)
    errors: list[str] = []
    starting = time.monotonic()

    async def job(i: int) -> None:
        booking_id = booking_ids[i]
        data = BookingInput(
            booking_id=booking_id,
            apartment_id=f"{prefix}{i}",
            user_id=b.users[0],
            start_date=start,
            end_date=start + timedelta(days=LEASE_DAYS),
            hold_seconds=900,
            lease=_resume(booking_id, f"{prefix}{i}", b.users[0], start, paid_at),
        )
        try:
            await client.start_workflow(
                ApartmentBookingWorkflow.run,
                data,
                id=workflow_id_for(booking_id),
                task_queue=b.stack.options.task_queue,
                search_attributes=start_search_attributes(data, None),
                start_delay=timedelta(seconds=max(0.0, fire_at - time.time())),
            )
        except Exception as exc:  # counted and reported, never hidden
            errors.append(type(exc).__name__)
        counter.advance()

    await run_concurrently(n, b.sizes.scale_clients, job)
    counter.finish()
    start_seconds = time.monotonic() - starting
    # The worker before the moment: executions exist, none has a task yet.
    idle = CpuMeter(worker)
    await asyncio.sleep(max(0.0, fire_at - time.time()))
    cores_before = idle.cores_used().get("worker")

    fired = time.monotonic()
    busy = CpuMeter(worker)
    # Where the CPU goes while they issue: every process of the stack.
    everyone = CpuMeter(b.stack.pids)
    issued_counter = progress.counter("invoices issued", n)
    issued = 0
    while issued < n and time.monotonic() - fired < ISSUE_TIMEOUT:
        await asyncio.sleep(0.5)
        async with b.pool.acquire() as conn:
            issued = await store.count_issued(conn, prefix)
        issued_counter.set(issued)
    issued_counter.finish()
    issue_seconds = time.monotonic() - fired
    cores_issuing = busy.cores_used().get("worker")
    cores_by_process = everyone.cores_used()

    # Every lease now waits for its invoice's due date (days away): the worker should rest.
    await asyncio.sleep(min(5.0, idle_window))
    waiting = CpuMeter(worker)
    await asyncio.sleep(idle_window)
    cores_waiting = waiting.cores_used().get("worker")
    peaks = await sampler.stop()
    async with b.pool.acquire() as conn:
        events, distinct = await store.issue_events(conn, prefix)
    return {
        "leases": n,
        "seed_seconds": round(seed_seconds, 1),
        "start_seconds": round(start_seconds, 1),
        "start_errors": len(errors),
        "issued": issued,
        "issue_seconds": round(issue_seconds, 1),
        "issued_per_second": round(issued / issue_seconds, 1) if issue_seconds else None,
        "issue_events": events,
        "issue_events_distinct_invoices": distinct,
        "none_twice": events == distinct == n,
        "worker_peak_rss_bytes": peaks.get("worker"),
        "worker_cores_before": cores_before,
        "worker_cores_issuing": cores_issuing,
        "worker_cores_waiting": cores_waiting,
        "cores_by_process_issuing": cores_by_process,
        "idle_window_seconds": idle_window,
    }
