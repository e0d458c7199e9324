"""``booking doctor [--repair] [--json]``: find drift between Postgres and the workflows.

The workflows and the rows agree by construction (every write is an activity of the
workflow that owns the booking), so drift means something outside the design happened:
an operator terminated a workflow, a history was lost with a Temporal server, someone
edited rows by hand, a restore from an older backup. The doctor looks for:

======================== ====================================================== ==========
kind                     meaning                                                --repair
======================== ====================================================== ==========
OVERLAPPING_STAYS        two live stays of one apartment share a night (the     report only
                         exclusion constraint forbids it: a dropped constraint,
                         a restore)
ABANDONED_HOLD           booking PENDING, its workflow closed or missing        CANCELLED
                                                                                (DRIFT_REPAIRED),
                                                                                nights offered
                                                                                or free
APPROVED_WITHOUT_PAYMENT booking APPROVED, no APPLIED payment row               report only
LEASE_WITHOUT_WORKFLOW   lease running (APPROVED, not ended), workflow closed   report only
                         or missing: nothing will end it
WAITING_ON_FREE          entry WAITING for a range that is free (and still to   offered to
                         come): nothing will offer it                           the first
                                                                                in line
OFFER_NOT_PENDING        entry OFFERED, its offered booking paid or cancelled   BOOKED or
                         without the entry being told                           LAPSED
ENTRY_WITHOUT_WORKFLOW   entry WAITING or OFFERED, its workflow closed or       report only
                         missing: nobody will be told how it ends
INVOICE_WITHOUT_LEASE    rent invoice still open (SCHEDULED, ISSUED, OVERDUE)   VOID
                         but its stay was cancelled or has ended, or its period
                         starts after the move-out day: nobody will collect it
INVOICE_DRIFT            a running lease's invoice, unchanged for 5 minutes,    report only
                         reads differently in Postgres and in its workflow
                         (status or amount), or its workflow lacks it
MAIL_STUCK               a tenant's notification PENDING for over 15 minutes    sent now
                         (the mail server down, the worker without one, or the  (with the
                         workflow that would send it gone)                      doctor's
                                                                                BOOKING_SMTP_*)
MAIL_FAILED              a notification FAILED in the last 7 days: no valid     report only
                         address, or refused for good (5xx); the reason given
======================== ====================================================== ==========

An apartment's status is read from its stays (``booking.calendar``), so it cannot drift from
them; what can drift is a stay against its workflow, and a waiting entry against the calendar.

Every repair that frees nights hands them on as a release does (``booking.offers``): to
the first tenant waiting for a range they make free, in the same transaction, and then
starts the offer's booking workflow; an abandoned hold that was itself an offer settles its
entry (LAPSED).

Only the repairs that give back nights nobody can use, or tell a waiting-list entry
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
import logging
import sys
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import TextIO

import asyncpg
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.client import Client, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from booking.contract import (
    APPROVED,
    BOOKED,
    CANCELLED,
    LAPSED,
    PENDING,
    RENT_INVOICES_QUERY,
    WAITING,
    WAITLIST_WORKFLOW_TYPE,
    WORKFLOW_TYPE,
    HandOn,
    InvoiceState,
    Offer,
    SettledEntry,
)
from booking.converter import DATA_CONVERTER
from booking.db import check_reachable, create_pool
from booking.mailer import Delivery, deliver, smtp_config
from booking.offers import hand_on, offer_next, settle_entry
from booking.settings import Settings
from booking.store import bookings as booking_store
from booking.store import doctor as store
from booking.store import mail as mail_store
from booking.store import waitlist as waitlist_store
from booking.store.doctor import LeaseInvoice
from booking.store.mail import MailProblem
from booking.temporal import connect

OVERLAPPING_STAYS = "OVERLAPPING_STAYS"
ABANDONED_HOLD = "ABANDONED_HOLD"
APPROVED_WITHOUT_PAYMENT = "APPROVED_WITHOUT_PAYMENT"
LEASE_WITHOUT_WORKFLOW = "LEASE_WITHOUT_WORKFLOW"
WAITING_ON_FREE = "WAITING_ON_FREE"
OFFER_NOT_PENDING = "OFFER_NOT_PENDING"
ENTRY_WITHOUT_WORKFLOW = "ENTRY_WITHOUT_WORKFLOW"
INVOICE_WITHOUT_LEASE = "INVOICE_WITHOUT_LEASE"
INVOICE_DRIFT = "INVOICE_DRIFT"
MAIL_STUCK = "MAIL_STUCK"
MAIL_FAILED = "MAIL_FAILED"
# A notification's workflow sends it within seconds; retries back off to one every 10 minutes.
MAIL_STUCK_SECONDS = 900
MAIL_FAILED_DAYS = 7
# An invoice row changed more recently than this may have a step's answer still on its way to
# its workflow (ACTIVITY_TIMEOUT per attempt, retried): not compared yet.
INVOICE_SETTLE_SECONDS = 300

DRIFT_REPAIRED = "DRIFT_REPAIRED"

EXIT_OK = 0
EXIT_DRIFT = 1

_DESCRIBE_CONCURRENCY = 16
# The offer a repair makes lasts as long as a worker's would (BOOKING_WAITLIST_OFFER_SECONDS).
DEFAULT_OFFER_SECONDS = Settings.model_fields["waitlist_offer_seconds"].default
_RUNNING = WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
log = logging.getLogger("booking.doctor")


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
    entry_id: str | None = None  # the waiting-list entry a finding is about


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
        overlaps = await store.overlapping_stays(conn)
        open_bookings = await store.open_bookings(conn)
        unpaid = await store.approved_without_payment(conn)
        waiting = await store.waiting_on_free_range(conn, datetime.now(UTC).date())
        stale_offers = await store.offers_not_pending(conn)
        entries = await store.live_entries(conn)
        stray_invoices = await store.invoices_without_lease(conn)
        mail = await mail_store.mail_problems(conn, MAIL_STUCK_SECONDS, MAIL_FAILED_DAYS)
    statuses = await _workflow_statuses(client, (b.workflow_id for b in open_bookings))
    entry_statuses = await _workflow_statuses(
        client, (e.workflow_id for e in entries), WAITLIST_WORKFLOW_TYPE
    )

    findings = [
        Finding(
            OVERLAPPING_STAYS,
            f"apartment {apartment}",
            apartment,
            first,
            f"live stays of bookings {first} and {second} share nights",
            repairable=False,
        )
        for apartment, first, second in overlaps
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
            WAITING_ON_FREE,
            f"waitlist entry {w.entry_id}",
            w.apartment_id,
            None,
            f"entry is WAITING for {w.start_date} to {w.end_date}, which is free",
            repairable=True,
            entry_id=w.entry_id,
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
            entry_id=e.entry_id,
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
                    entry_id=entry.entry_id,
                )
            )
    findings += [
        Finding(
            INVOICE_WITHOUT_LEASE,
            f"invoice {i.invoice_id}",
            i.apartment_id,
            i.booking_id,
            f"invoice for {i.period_start} is {i.status} but {i.why}: nobody will collect it",
            repairable=True,
        )
        for i in stray_invoices
    ]
    findings += await _invoice_drift(pool, client, statuses)
    findings += [_mail_finding(problem) for problem in mail]
    return findings


def _mail_finding(problem: MailProblem) -> Finding:
    to = problem.to_address or "(no address)"
    if problem.status == "FAILED":
        message = f"{problem.kind} to {to} FAILED: {problem.last_error}"
    else:
        message = (
            f"{problem.kind} to {to} PENDING since {problem.created_on:%Y-%m-%d %H:%M} UTC "
            f"({problem.attempts} attempt(s)"
            + (f"; last: {problem.last_error}" if problem.last_error else "")
            + ")"
        )
    return Finding(
        MAIL_STUCK if problem.status == "PENDING" else MAIL_FAILED,
        f"notification {problem.id}",
        problem.apartment_id,
        problem.booking_id,
        message,
        repairable=problem.status == "PENDING",
        entry_id=problem.waitlist_entry_id,
    )


async def _invoice_drift(
    pool: asyncpg.Pool, client: Client, statuses: dict[str, str]
) -> list[Finding]:
    """Each running lease's invoices against its workflow's (query ``rent_invoices``). Only
    rows unchanged for :data:`INVOICE_SETTLE_SECONDS` count: a step whose commit has not yet
    reached its workflow (a worker killed between the two, the activity retried) is not drift."""
    async with pool.acquire() as conn:
        rows = await store.running_lease_invoices(conn, INVOICE_SETTLE_SECONDS)
    by_lease: dict[str, list[LeaseInvoice]] = {}
    for row in rows:
        if row.settled and statuses.get(row.workflow_id) == "RUNNING":
            by_lease.setdefault(row.workflow_id, []).append(row)
    semaphore = asyncio.Semaphore(_DESCRIBE_CONCURRENCY)
    findings: list[Finding] = []

    async def compare(workflow_id: str, invoices: list[LeaseInvoice]) -> None:
        async with semaphore:
            try:
                seen = await client.get_workflow_handle(workflow_id).query(
                    RENT_INVOICES_QUERY, result_type=list[InvoiceState]
                )
            except (RPCError, WorkflowQueryFailedError) as err:
                # No worker to answer (or an older one without the query): not drift.
                log.warning("doctor: lease %s not asked: %s", workflow_id, err)
                return
        mine = {i.invoice_id: i for i in seen}
        for row in invoices:
            theirs = mine.get(row.invoice_id)
            if theirs is None:
                why = "its workflow does not know this invoice"
            elif (theirs.status, theirs.amount_due) != (row.status, row.amount_due):
                why = (
                    f"Postgres says {row.status} {row.amount_due}, its workflow "
                    f"{theirs.status} {theirs.amount_due}"
                )
            else:
                continue
            findings.append(
                Finding(
                    INVOICE_DRIFT,
                    f"invoice {row.invoice_id}",
                    row.apartment_id,
                    row.booking_id,
                    why,
                    repairable=False,
                )
            )

    await asyncio.gather(*(compare(w, rows) for w, rows in by_lease.items()))
    return findings


@dataclass(frozen=True)
class RepairOutcome:
    changed: bool  # False: nothing to do any more (repaired before, or healed meanwhile)
    detail: str
    # What to do once the repair has committed: start an offer, tell entries how they ended.
    hand_on: HandOn | None = None
    # The repair could not be made (a stuck mail the server still refuses): the finding stays.
    failed: bool = False


def _offered(offer: Offer | None, lapsed: list[str]) -> tuple[str, HandOn | None]:
    settled = [SettledEntry(entry_id, LAPSED) for entry_id in lapsed]
    if offer is None:
        return "nights free", HandOn(settled) if settled else None
    return (
        f"offered to {offer.booking.user_id} "
        f"(entry {offer.booking.waitlist_entry_id}, booking {offer.booking.booking_id})",
        HandOn(settled, offer),
    )


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
        terms = await booking_store.lock_apartment(conn, booking.apartment_id)
        await booking_store.cancel_booking(conn, booking.id, DRIFT_REPAIRED)
        entry = await settle_entry(conn, booking.id, LAPSED, DRIFT_REPAIRED)
        settled = [SettledEntry(entry, LAPSED)] if entry is not None else []
        offer, lapsed = await offer_next(conn, booking, terms, datetime.now(UTC), offer_seconds)
        freed, handed = _offered(offer, lapsed)
        detail = f"booking PENDING -> CANCELLED ({DRIFT_REPAIRED}); its nights {freed}"
        hand_on = HandOn(settled + handed.settled, handed.offer) if handed else None
        if hand_on is None and settled:
            hand_on = HandOn(settled)
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
    pool: asyncpg.Pool, entry_id: str, *, offer_seconds: int = DEFAULT_OFFER_SECONDS
) -> RepairOutcome:
    """The nights of a WAITING entry's free range, to the first tenant in line for them (this
    entry, or one before it whose range they also make free)."""
    async with pool.acquire() as conn, conn.transaction():
        entry = await waitlist_store.get_entry(conn, entry_id)
        if entry is None or entry.status != WAITING:
            return RepairOutcome(False, "the entry is no longer waiting")
        terms = await booking_store.lock_apartment(conn, entry.apartment_id)
        offer, lapsed = await offer_next(conn, entry, terms, datetime.now(UTC), offer_seconds)
    detail, handed = _offered(offer, lapsed)
    if offer is None:
        return RepairOutcome(bool(lapsed), "nobody waiting can take them any more", handed)
    return RepairOutcome(True, f"nights {entry.start_date} to {entry.end_date} {detail}", handed)


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


async def void_stray_invoice(pool: asyncpg.Pool, invoice_id: str) -> RepairOutcome:
    """An open invoice no running lease will collect -> VOID (no money had moved)."""
    async with pool.acquire() as conn, conn.transaction():
        booking_id = await store.void_stray_invoice(conn, invoice_id)
        if booking_id is None:
            return RepairOutcome(False, "the invoice is no longer open, or its lease runs")
        await booking_store.append_event(
            conn,
            booking_id,
            APPROVED,
            APPROVED,
            DRIFT_REPAIRED,
            {"invoiceId": invoice_id, "repair": "invoice VOID"},
        )
    return RepairOutcome(True, "invoice VOID")


async def send_stuck_mail(
    pool: asyncpg.Pool, notification_id: int, settings: Settings
) -> RepairOutcome:
    """Send a stuck notification now, with this process's mail settings (the same rule and
    Message-ID as the worker's: a copy the worker sends meanwhile is the same message)."""
    config = smtp_config(settings)
    if config is None:
        return RepairOutcome(False, "BOOKING_SMTP_HOST is unset here: not sent", failed=True)
    async with pool.acquire() as conn:
        pending = await mail_store.pending_by_id(conn, [notification_id])
    if not pending:
        return RepairOutcome(False, "no longer PENDING")
    delivery = Delivery()
    try:
        await deliver(pool, config, pending, delivery)
    except Exception as err:  # recorded on the row; the worker's retries go on
        return RepairOutcome(False, f"not sent: {type(err).__name__}: {err}", failed=True)
    if delivery.sent:
        return RepairOutcome(True, f"sent to {pending[0].to_address}")
    return RepairOutcome(delivery.failed > 0, "refused for good: FAILED")


async def repair(
    pool: asyncpg.Pool, findings: list[Finding], client: Client, settings: Settings
) -> None:
    """Apply the safe repairs, marking each finding; abandoned holds first.

    Cancelling an abandoned hold also hands on its nights, so doing those first leaves fewer
    waiting entries to repair separately. After each commit
    the offers made are started and the entries told (``booking.offers.hand_on``).
    """
    seconds = settings.waitlist_offer_seconds
    steps: list[tuple[str, Callable[[Finding], Awaitable[RepairOutcome]]]] = [
        (ABANDONED_HOLD, lambda f: cancel_abandoned_booking(pool, _id(f), offer_seconds=seconds)),
        (OFFER_NOT_PENDING, lambda f: settle_stale_offer(pool, _id(f))),
        (
            WAITING_ON_FREE,
            lambda f: offer_to_waiting(pool, _entry_id(f), offer_seconds=seconds),
        ),
        (INVOICE_WITHOUT_LEASE, lambda f: void_stray_invoice(pool, f.subject.split(" ", 1)[1])),
        (MAIL_STUCK, lambda f: send_stuck_mail(pool, int(f.subject.split(" ", 1)[1]), settings)),
    ]
    for kind, step in steps:
        for finding in (f for f in findings if f.kind == kind):
            outcome = await step(finding)
            if outcome.hand_on is not None:
                await hand_on(client, settings.task_queue, outcome.hand_on)
            finding.repaired = not outcome.failed
            finding.repair_detail = (
                outcome.detail if outcome.changed or outcome.failed else f"no-op: {outcome.detail}"
            )


def _id(finding: Finding) -> str:
    assert finding.booking_id is not None
    return finding.booking_id


def _entry_id(finding: Finding) -> str:
    assert finding.entry_id is not None
    return finding.entry_id


def render_text(findings: list[Finding], *, repaired: bool, out: TextIO) -> None:
    if not findings:
        print("booking doctor: no drift: Postgres and the workflows agree", file=out)
        return
    print(f"booking doctor: {len(findings)} finding(s)", file=out)
    for f in findings:
        line = f"  {f.kind:<25} {f.subject}: {f.message}"
        if f.repaired:
            line += f"\n  {'':<25} repaired: {f.repair_detail}"
        elif f.repair_detail is not None:
            line += f"\n  {'':<25} not repaired: {f.repair_detail}"
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
