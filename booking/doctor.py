"""``booking doctor [--repair] [--json]``: find drift between Postgres and the workflows.

The workflows and the rows agree by construction (every write is an activity of the
workflow that owns the booking), so drift means something outside the design happened:
an operator terminated a workflow, a history was lost with a Temporal server, someone
edited rows by hand, a restore from an older backup. The doctor looks for:

======================== ====================================================== ==========
kind                     meaning                                                --repair
======================== ====================================================== ==========
ORPHANED_RESERVATION     apartment RESERVED, no PENDING booking holds it        VACANT
ABANDONED_HOLD           booking PENDING, its workflow closed or missing        CANCELLED
                                                                                (DRIFT_REPAIRED),
                                                                                apartment VACANT
PENDING_NOT_RESERVED     booking PENDING, its apartment not RESERVED            report only
APPROVED_WITHOUT_PAYMENT booking APPROVED, no APPLIED payment row               report only
LEASE_WITHOUT_WORKFLOW   lease running (APPROVED, not ended), workflow closed   report only
                         or missing: nothing will end it
OCCUPIED_AFTER_LEASE     apartment OCCUPIED by a tenant whose lease here ended  report only
======================== ====================================================== ==========

Only the two repairs that give back an apartment nobody can use are automatic: money
(a missing payment) and tenancies (a lease) need a human. They are the only writes of booking
state outside a booking workflow, and only for bookings no workflow will ever settle: each is
one idempotent transaction that re-checks, under row locks, the condition the doctor saw (so a
repair raced by a workflow that healed the drift itself changes nothing) and appends a
``booking_events`` row with reason ``DRIFT_REPAIRED``.

A workflow that is running is never second-guessed, even when its hold is overdue (the
worker may simply be down: it will settle the hold when it is back).

Exit status: 0 when no drift is left (none found, or all repaired), 1 when drift remains.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import TextIO

import asyncpg
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from booking.contract import CANCELLED, PENDING, WORKFLOW_TYPE
from booking.converter import DATA_CONVERTER
from booking.db import check_reachable, create_pool
from booking.settings import Settings
from booking.store import bookings as booking_store
from booking.store import doctor as store
from booking.temporal import connect

ORPHANED_RESERVATION = "ORPHANED_RESERVATION"
ABANDONED_HOLD = "ABANDONED_HOLD"
PENDING_NOT_RESERVED = "PENDING_NOT_RESERVED"
APPROVED_WITHOUT_PAYMENT = "APPROVED_WITHOUT_PAYMENT"
LEASE_WITHOUT_WORKFLOW = "LEASE_WITHOUT_WORKFLOW"
OCCUPIED_AFTER_LEASE = "OCCUPIED_AFTER_LEASE"

DRIFT_REPAIRED = "DRIFT_REPAIRED"

EXIT_OK = 0
EXIT_DRIFT = 1

_DESCRIBE_CONCURRENCY = 16
_RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING


@dataclass
class Finding:
    kind: str
    subject: str  # "apartment <id>" or "booking <id>"
    apartment_id: str
    booking_id: str | None
    message: str
    repairable: bool
    repaired: bool = False
    repair_detail: str | None = None


async def _workflow_statuses(client: Client, workflow_ids: Iterable[str]) -> dict[str, str]:
    """workflow id -> status name ("RUNNING", "TERMINATED", ..., or "MISSING").

    The visibility list says cheaply which are running; every other id is described, since
    visibility lags and only a describe is authoritative about a closed or missing run.
    """
    wanted = set(workflow_ids)
    running: set[str] = set()
    if wanted:
        try:
            async for execution in client.list_workflows(
                f"WorkflowType = '{WORKFLOW_TYPE}' AND ExecutionStatus = 'Running'"
            ):
                if execution.id in wanted:
                    running.add(execution.id)
        except RPCError:
            running = set()  # a server without visibility (the test server): describe all
    statuses = dict.fromkeys(running, "RUNNING")
    semaphore = asyncio.Semaphore(_DESCRIBE_CONCURRENCY)

    async def describe(workflow_id: str) -> None:
        async with semaphore:
            try:
                description = await client.get_workflow_handle(workflow_id).describe()
            except RPCError as exc:
                if exc.status != RPCStatusCode.NOT_FOUND:
                    raise
                statuses[workflow_id] = "MISSING"
                return
        raw = description.raw_description.workflow_execution_info.status
        statuses[workflow_id] = WorkflowExecutionStatus.Name(raw).removeprefix(
            "WORKFLOW_EXECUTION_STATUS_"
        )

    await asyncio.gather(*(describe(wid) for wid in wanted - running))
    return statuses


async def examine(pool: asyncpg.Pool, client: Client) -> list[Finding]:
    """Every drift found now, repairable ones first within each kind."""
    async with pool.acquire() as conn:
        orphaned = await store.reserved_without_hold(conn)
        open_bookings = await store.open_bookings(conn)
        not_reserved = await store.pending_without_reservation(conn)
        unpaid = await store.approved_without_payment(conn)
        after_lease = await store.occupied_after_lease(conn)
    statuses = await _workflow_statuses(client, (b.workflow_id for b in open_bookings))

    findings = [
        Finding(
            ORPHANED_RESERVATION,
            f"apartment {a.apartment_id}",
            a.apartment_id,
            a.booking_id,
            "apartment is RESERVED but no PENDING booking holds it",
            repairable=True,
        )
        for a in orphaned
    ]
    for booking in open_bookings:
        status = statuses.get(booking.workflow_id, "MISSING")
        if status == "RUNNING":
            continue
        if booking.booking_status == "PENDING":
            findings.append(
                Finding(
                    ABANDONED_HOLD,
                    f"booking {booking.booking_id}",
                    booking.apartment_id,
                    booking.booking_id,
                    f"booking is PENDING but its workflow {booking.workflow_id} is {status}",
                    repairable=True,
                )
            )
        else:
            findings.append(
                Finding(
                    LEASE_WITHOUT_WORKFLOW,
                    f"booking {booking.booking_id}",
                    booking.apartment_id,
                    booking.booking_id,
                    f"lease until {booking.end_date} is running but its workflow "
                    f"{booking.workflow_id} is {status}: nothing will end it",
                    repairable=False,
                )
            )
    findings += [
        Finding(
            PENDING_NOT_RESERVED,
            f"booking {b.booking_id}",
            b.apartment_id,
            b.booking_id,
            f"booking is PENDING but apartment {b.apartment_id} is {b.apartment_status}",
            repairable=False,
        )
        for b in not_reserved
    ]
    findings += [
        Finding(
            APPROVED_WITHOUT_PAYMENT,
            f"booking {b.booking_id}",
            b.apartment_id,
            b.booking_id,
            "booking is APPROVED but has no APPLIED payment",
            repairable=False,
        )
        for b in unpaid
    ]
    findings += [
        Finding(
            OCCUPIED_AFTER_LEASE,
            f"apartment {a.apartment_id}",
            a.apartment_id,
            a.booking_id,
            f"apartment is OCCUPIED by {a.tenant_id}, whose lease (booking {a.booking_id}) "
            "has ended",
            repairable=False,
        )
        for a in after_lease
    ]
    return findings


@dataclass(frozen=True)
class RepairOutcome:
    changed: bool  # False: nothing to do any more (repaired before, or healed meanwhile)
    detail: str


async def release_orphaned_apartment(pool: asyncpg.Pool, apartment_id: str) -> RepairOutcome:
    """RESERVED -> VACANT for an apartment that no PENDING booking holds."""
    async with pool.acquire() as conn, conn.transaction():
        status = await store.lock_apartment(conn, apartment_id)
        if status != "RESERVED":
            return RepairOutcome(False, f"apartment is {status}")
        if not await store.release_orphaned_reservation(conn, apartment_id):
            return RepairOutcome(False, "a PENDING booking holds the apartment")
        latest = await store.latest_booking(conn, apartment_id)
        if latest is not None:
            # The event log is per booking; the last booking of the apartment is the one
            # whose hold was orphaned.
            booking_id, booking_status = latest
            await booking_store.append_event(
                conn,
                booking_id,
                booking_status,
                booking_status,
                DRIFT_REPAIRED,
                {"apartmentId": apartment_id, "apartment": "RESERVED -> VACANT"},
            )
    return RepairOutcome(True, "apartment RESERVED -> VACANT")


async def cancel_abandoned_booking(pool: asyncpg.Pool, booking_id: str) -> RepairOutcome:
    """PENDING -> CANCELLED(DRIFT_REPAIRED) for a booking whose workflow is gone.

    The caller has established that no workflow will ever settle the booking; its apartment
    is released in the same transaction if it is still RESERVED.
    """
    async with pool.acquire() as conn, conn.transaction():
        booking = await booking_store.get_booking(conn, booking_id, for_update=True)
        if booking is None:
            return RepairOutcome(False, "no such booking")
        if booking.booking_status != PENDING:
            return RepairOutcome(False, f"booking is {booking.booking_status}")
        await booking_store.cancel_booking(conn, booking.id, DRIFT_REPAIRED)
        released = await booking_store.release_reserved_apartment(conn, booking.apartment_id)
        await booking_store.append_event(
            conn,
            booking.id,
            PENDING,
            CANCELLED,
            DRIFT_REPAIRED,
            {"workflowId": booking.workflow_id, "apartmentReleased": released},
        )
    detail = f"booking PENDING -> CANCELLED ({DRIFT_REPAIRED})"
    if released:
        detail += f"; apartment {booking.apartment_id} RESERVED -> VACANT"
    return RepairOutcome(True, detail)


async def repair(pool: asyncpg.Pool, findings: list[Finding]) -> None:
    """Apply the safe repairs, marking each finding; abandoned holds first.

    Cancelling an abandoned hold also releases its apartment, so doing those first leaves
    fewer orphaned reservations to release separately.
    """
    for finding in (f for f in findings if f.kind == ABANDONED_HOLD):
        assert finding.booking_id is not None
        outcome = await cancel_abandoned_booking(pool, finding.booking_id)
        finding.repaired = True
        finding.repair_detail = outcome.detail if outcome.changed else f"no-op: {outcome.detail}"
    for finding in (f for f in findings if f.kind == ORPHANED_RESERVATION):
        outcome = await release_orphaned_apartment(pool, finding.apartment_id)
        finding.repaired = True
        finding.repair_detail = outcome.detail if outcome.changed else f"no-op: {outcome.detail}"


def render_text(findings: list[Finding], *, repaired: bool, out: TextIO) -> None:
    if not findings:
        print("booking doctor: no drift: Postgres and the workflows agree", file=out)
        return
    print(f"booking doctor: {len(findings)} finding(s)", file=out)
    for f in findings:
        line = f"  {f.kind:<25} {f.subject}: {f.message}"
        if f.repaired:
            line += f"\n  {'':<25} repaired: {f.repair_detail}"
        elif f.repairable and not repaired:
            line += " (run with --repair to fix)"
        elif not f.repairable:
            line += " (needs an operator)"
        print(line, file=out)
    left = sum(1 for f in findings if not f.repaired)
    fixed = len(findings) - left
    print(f"{fixed} repaired, {left} remaining", file=out)


def render_json(findings: list[Finding], out: TextIO) -> None:
    left = sum(1 for f in findings if not f.repaired)
    print(
        json.dumps(
            {
                "ok": left == 0,
                "findings": [asdict(f) for f in findings],
                "repaired": len(findings) - left,
                "remaining": left,
            },
            indent=2,
        ),
        file=out,
    )


async def run_doctor(
    pool: asyncpg.Pool,
    client: Client,
    *,
    apply_repairs: bool,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> int:
    findings = await examine(pool, client)
    if apply_repairs:
        await repair(pool, findings)
    if as_json:
        render_json(findings, out)
    else:
        render_text(findings, repaired=apply_repairs, out=out)
    return EXIT_DRIFT if any(not f.repaired for f in findings) else EXIT_OK


async def doctor_command(
    settings: Settings, *, apply_repairs: bool, as_json: bool, out: TextIO = sys.stdout
) -> int:
    """``booking doctor``: connect with ``settings``, examine, optionally repair, report."""
    # Both raise ConfigurationError (exit 2): exit 1 means "drift left", and an unreachable
    # dependency is a setup problem.
    client = await connect(
        settings.temporal_address, settings.temporal_namespace, data_converter=DATA_CONVERTER
    )
    dsn = settings.require_database_url()
    await check_reachable(dsn)
    pool = await create_pool(dsn, min_size=1, max_size=4)
    try:
        return await run_doctor(pool, client, apply_repairs=apply_repairs, as_json=as_json, out=out)
    finally:
        await pool.close()
