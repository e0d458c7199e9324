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
WAITING_ON_VACANT        apartment VACANT, held and let by nobody, while        offered to
                         tenants wait for it on its waiting list                the first
OFFER_NOT_PENDING        entry OFFERED, its offered booking paid or cancelled   BOOKED or
                         without the entry being told                           LAPSED
ENTRY_WITHOUT_WORKFLOW   entry WAITING or OFFERED, its workflow closed or       report only
                         missing: nobody will be told how it ends
======================== ====================================================== ==========

Every repair that frees an apartment hands it on as a release does (``booking.offers``): to
the first tenant waiting for it, in the same transaction, and then starts the offer's
booking workflow; an abandoned hold that was itself an offer settles its entry (LAPSED).

Only the repairs that give back an apartment nobody can use, or tell a waiting-list entry
what its offer already did, are automatic: money (a missing payment) and tenancies (a
lease) need a human. They are the only writes of booking
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
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TextIO

import asyncpg
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from booking.contract import (
    APPROVED,
    BOOKED,
    CANCELLED,
    LAPSED,
    PENDING,
    WAITLIST_WORKFLOW_TYPE,
    WORKFLOW_TYPE,
    HandOn,
    SettledEntry,
)
from booking.converter import DATA_CONVERTER
from booking.db import check_reachable, create_pool
from booking.offers import hand_on, offer_next, settle_entry
from booking.settings import Settings
from booking.store import Conn
from booking.store import bookings as booking_store
from booking.store import doctor as store
from booking.temporal import connect

ORPHANED_RESERVATION = "ORPHANED_RESERVATION"
ABANDONED_HOLD = "ABANDONED_HOLD"
PENDING_NOT_RESERVED = "PENDING_NOT_RESERVED"
APPROVED_WITHOUT_PAYMENT = "APPROVED_WITHOUT_PAYMENT"
LEASE_WITHOUT_WORKFLOW = "LEASE_WITHOUT_WORKFLOW"
OCCUPIED_AFTER_LEASE = "OCCUPIED_AFTER_LEASE"
WAITING_ON_VACANT = "WAITING_ON_VACANT"
OFFER_NOT_PENDING = "OFFER_NOT_PENDING"
ENTRY_WITHOUT_WORKFLOW = "ENTRY_WITHOUT_WORKFLOW"

DRIFT_REPAIRED = "DRIFT_REPAIRED"

EXIT_OK = 0
EXIT_DRIFT = 1

_DESCRIBE_CONCURRENCY = 16
# The offer a repair makes lasts as long as a worker's would (BOOKING_WAITLIST_OFFER_SECONDS).
DEFAULT_OFFER_SECONDS = Settings.model_fields["waitlist_offer_seconds"].default
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


async def _workflow_statuses(
    client: Client, workflow_ids: Iterable[str], workflow_type: str = WORKFLOW_TYPE
) -> dict[str, str]:
    """workflow id -> status name ("RUNNING", "TERMINATED", ..., or "MISSING").

    The visibility list says cheaply which are running; every other id is described, since
    visibility lags and only a describe is authoritative about a closed or missing run.
    """
    wanted = set(workflow_ids)
    running: set[str] = set()
    if wanted:
        try:
            async for execution in client.list_workflows(
                f"WorkflowType = '{workflow_type}' AND ExecutionStatus = 'Running'"
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
        waiting = await store.waiting_on_free_apartment(conn)
        stale_offers = await store.offers_not_pending(conn)
        entries = await store.live_entries(conn)
    statuses = await _workflow_statuses(client, (b.workflow_id for b in open_bookings))
    entry_statuses = await _workflow_statuses(
        client, (e.workflow_id for e in entries), WAITLIST_WORKFLOW_TYPE
    )

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
    findings += [
        Finding(
            WAITING_ON_VACANT,
            f"apartment {w.apartment_id}",
            w.apartment_id,
            None,
            f"apartment is VACANT while {w.waiting} tenant(s) wait for it "
            f"(first: entry {w.first_entry_id})",
            repairable=True,
        )
        for w in waiting
    ]
    findings += [
        Finding(
            OFFER_NOT_PENDING,
            f"waitlist entry {e.entry_id}",
            e.apartment_id,
            e.offered_booking_id,
            f"entry is OFFERED but its booking {e.offered_booking_id} is {e.booking_status}",
            repairable=True,
        )
        for e in stale_offers
    ]
    for entry in entries:
        status = entry_statuses.get(entry.workflow_id, "MISSING")
        if status != "RUNNING":
            findings.append(
                Finding(
                    ENTRY_WITHOUT_WORKFLOW,
                    f"waitlist entry {entry.entry_id}",
                    entry.apartment_id,
                    entry.offered_booking_id,
                    f"entry is {entry.status} but its workflow {entry.workflow_id} is {status}",
                    repairable=False,
                )
            )
    return findings


@dataclass(frozen=True)
class RepairOutcome:
    changed: bool  # False: nothing to do any more (repaired before, or healed meanwhile)
    detail: str
    # What to do once the repair has committed: start an offer, tell entries how they ended.
    hand_on: HandOn | None = None


async def _offer_or_vacate(
    conn: Conn, apartment_id: str, now: datetime, offer_seconds: int
) -> tuple[str, HandOn | None]:
    """The freed apartment (locked by the caller) to the first tenant waiting, else VACANT."""
    terms = await booking_store.lock_apartment(conn, apartment_id)
    offer, lapsed = await offer_next(conn, apartment_id, terms, now, offer_seconds)
    settled = [SettledEntry(entry_id, LAPSED) for entry_id in lapsed]
    if offer is None:
        await booking_store.release_reserved_apartment(conn, apartment_id)
        return "apartment VACANT", HandOn(settled) if settled else None
    return (
        f"apartment offered to {offer.booking.user_id} "
        f"(entry {offer.booking.waitlist_entry_id}, booking {offer.booking.booking_id})",
        HandOn(settled, offer),
    )


async def release_orphaned_apartment(
    pool: asyncpg.Pool, apartment_id: str, *, offer_seconds: int = DEFAULT_OFFER_SECONDS
) -> RepairOutcome:
    """RESERVED -> the first tenant waiting, or VACANT, for an apartment no PENDING booking
    holds."""
    async with pool.acquire() as conn, conn.transaction():
        status = await store.lock_apartment(conn, apartment_id)
        if status != "RESERVED":
            return RepairOutcome(False, f"apartment is {status}")
        if await store.held_by_pending(conn, apartment_id):
            return RepairOutcome(False, "a PENDING booking holds the apartment")
        detail, hand_on = await _offer_or_vacate(
            conn, apartment_id, datetime.now(UTC), offer_seconds
        )
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
                {"apartmentId": apartment_id, "apartment": f"RESERVED -> {detail}"},
            )
    return RepairOutcome(True, f"RESERVED -> {detail}", hand_on)


async def cancel_abandoned_booking(
    pool: asyncpg.Pool, booking_id: str, *, offer_seconds: int = DEFAULT_OFFER_SECONDS
) -> RepairOutcome:
    """PENDING -> CANCELLED(DRIFT_REPAIRED) for a booking whose workflow is gone.

    The caller has established that no workflow will ever settle the booking. In the same
    transaction its entry (when it was a waiting-list offer) lapses, and its apartment, if
    this booking held it, goes to the next tenant waiting or back to VACANT.
    """
    async with pool.acquire() as conn, conn.transaction():
        booking = await booking_store.get_booking(conn, booking_id, for_update=True)
        if booking is None:
            return RepairOutcome(False, "no such booking")
        if booking.booking_status != PENDING:
            return RepairOutcome(False, f"booking is {booking.booking_status}")
        await booking_store.cancel_booking(conn, booking.id, DRIFT_REPAIRED)
        entry = await settle_entry(conn, booking.id, LAPSED, DRIFT_REPAIRED)
        settled = [SettledEntry(entry, LAPSED)] if entry is not None else []
        detail = f"booking PENDING -> CANCELLED ({DRIFT_REPAIRED})"
        hand_on = HandOn(settled) if settled else None
        if await store.lock_apartment(conn, booking.apartment_id) == "RESERVED":
            freed, handed = await _offer_or_vacate(
                conn, booking.apartment_id, datetime.now(UTC), offer_seconds
            )
            detail += f"; apartment {booking.apartment_id} RESERVED -> {freed}"
            if handed is not None:
                hand_on = HandOn(settled + handed.settled, handed.offer)
        await booking_store.append_event(
            conn,
            booking.id,
            PENDING,
            CANCELLED,
            DRIFT_REPAIRED,
            {"workflowId": booking.workflow_id, "repair": detail},
        )
    if entry is not None:
        detail += f"; waitlist entry {entry} OFFERED -> LAPSED"
    return RepairOutcome(True, detail, hand_on)


async def offer_to_waiting(
    pool: asyncpg.Pool, apartment_id: str, *, offer_seconds: int = DEFAULT_OFFER_SECONDS
) -> RepairOutcome:
    """A VACANT apartment nobody holds or lets, to the first tenant waiting for it."""
    async with pool.acquire() as conn, conn.transaction():
        terms = await booking_store.lock_apartment(conn, apartment_id)
        if terms is None:
            return RepairOutcome(False, "no such apartment")
        if not await store.free_for_offer(conn, apartment_id):
            return RepairOutcome(False, "the apartment is no longer free")
        offer, lapsed = await offer_next(
            conn, apartment_id, terms, datetime.now(UTC), offer_seconds
        )
    settled = [SettledEntry(entry_id, LAPSED) for entry_id in lapsed]
    if offer is None:
        detail = "nobody waiting can take it any more"
        return RepairOutcome(bool(lapsed), detail, HandOn(settled) if settled else None)
    return RepairOutcome(
        True,
        f"apartment VACANT -> offered to {offer.booking.user_id} "
        f"(entry {offer.booking.waitlist_entry_id}, booking {offer.booking.booking_id})",
        HandOn(settled, offer),
    )


async def settle_stale_offer(pool: asyncpg.Pool, booking_id: str) -> RepairOutcome:
    """OFFERED -> BOOKED (its booking paid) or LAPSED (cancelled), as the offer's workflow
    would have told the entry."""
    async with pool.acquire() as conn, conn.transaction():
        booking = await booking_store.get_booking(conn, booking_id, for_update=True)
        if booking is None or booking.booking_status == PENDING:
            return RepairOutcome(False, "the offer is still open")
        status = BOOKED if booking.booking_status == APPROVED else LAPSED
        entry = await settle_entry(conn, booking.id, status, DRIFT_REPAIRED)
    if entry is None:
        return RepairOutcome(False, "the entry was settled meanwhile")
    return RepairOutcome(True, f"entry OFFERED -> {status}", HandOn([SettledEntry(entry, status)]))


async def repair(
    pool: asyncpg.Pool, findings: list[Finding], client: Client, settings: Settings
) -> None:
    """Apply the safe repairs, marking each finding; abandoned holds first.

    Cancelling an abandoned hold also hands on its apartment, so doing those first leaves
    fewer orphaned reservations and free apartments to repair separately. After each commit
    the offers made are started and the entries told (``booking.offers.hand_on``).
    """
    seconds = settings.waitlist_offer_seconds
    steps: list[tuple[str, Callable[[Finding], Awaitable[RepairOutcome]]]] = [
        (ABANDONED_HOLD, lambda f: cancel_abandoned_booking(pool, _id(f), offer_seconds=seconds)),
        (
            ORPHANED_RESERVATION,
            lambda f: release_orphaned_apartment(pool, f.apartment_id, offer_seconds=seconds),
        ),
        (OFFER_NOT_PENDING, lambda f: settle_stale_offer(pool, _id(f))),
        (
            WAITING_ON_VACANT,
            lambda f: offer_to_waiting(pool, f.apartment_id, offer_seconds=seconds),
        ),
    ]
    for kind, step in steps:
        for finding in (f for f in findings if f.kind == kind):
            outcome = await step(finding)
            if outcome.hand_on is not None:
                await hand_on(client, settings.task_queue, outcome.hand_on)
            finding.repaired = True
            finding.repair_detail = (
                outcome.detail if outcome.changed else f"no-op: {outcome.detail}"
            )


def _id(finding: Finding) -> str:
    assert finding.booking_id is not None
    return finding.booking_id


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
    settings: Settings,
    *,
    apply_repairs: bool,
    as_json: bool,
    out: TextIO = sys.stdout,
) -> int:
    findings = await examine(pool, client)
    if apply_repairs:
        await repair(pool, findings, client, settings)
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
        return await run_doctor(
            pool, client, settings, apply_repairs=apply_repairs, as_json=as_json, out=out
        )
    finally:
        await pool.close()
