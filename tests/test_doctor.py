"""`booking doctor`: every kind of drift made on purpose, found, and (where safe) repaired.

Drift is made the ways it happens in life: an operator terminates a workflow, a booking row
points at a workflow that no Temporal server knows (a lost history), rows edited by hand.
The session database holds other tests' rows too, so checks are filtered to this test's ids;
the CLI test runs against a database of its own so that its exit status is about its rows.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from booking.contract import offer_booking_id_for, waitlist_workflow_id_for
from booking.db import create_pool, migrate
from booking.doctor import (
    ABANDONED_HOLD,
    APPROVED_WITHOUT_PAYMENT,
    INVOICE_DRIFT,
    INVOICE_WITHOUT_LEASE,
    LEASE_WITHOUT_WORKFLOW,
    OFFER_NOT_PENDING,
    OVERLAPPING_STAYS,
    WAITING_ON_FREE,
    Finding,
    cancel_abandoned_booking,
    examine,
    offer_to_waiting,
    repair,
    run_doctor,
)
from booking.rent import RentPeriod
from booking.settings import Settings
from booking.store.rent import insert_schedule, invoice_id_for
from tests.helpers import (
    Rental,
    apartment_row,
    booking_client,
    booking_input,
    booking_row,
    events,
    eventually,
    insert_user,
    join_waitlist,
    make_rental,
    offer_handle,
    offered_booking,
    payment_for,
    start_and_hold,
)
from tests.smtp import SmtpInbox
from workflows.booking import ApartmentBookingWorkflow
from workflows.waitlist import WaitlistEntryWorkflow


async def _hand_made_booking(
    pool: asyncpg.Pool,
    rental: Rental,
    *,
    status: str,
    paid: bool = False,
    lease_ended: bool = False,
) -> str:
    """A booking row as if written by a workflow that no Temporal server knows."""
    booking_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """INSERT INTO bookings (id, workflow_id, user_id, apartment_id, start_date, end_date,
                                     booking_status, amount_due, currency, hold_expires_at,
                                     paid_at, cancellation_reason, lease_ended_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)""",
            booking_id,
            f"booking-{booking_id}",
            rental.user_id,
            rental.apartment_id,
            now.date() - timedelta(days=30),
            now.date() - timedelta(days=1),
            status,
            rental.monthly_rent,
            rental.currency,
            now - timedelta(days=31),
            now - timedelta(days=31) if status == "APPROVED" else None,
            "EXPIRED" if status == "CANCELLED" else None,
            now - timedelta(days=1) if lease_ended else None,
        )
        if paid:
            await conn.execute(
                """INSERT INTO payments (booking_id, payment_reference, amount, currency, outcome,
                                         received_at)
                   VALUES ($1, $2, $3, $4, 'APPLIED', now())""",
                booking_id,
                f"pay-{booking_id}",
                rental.monthly_rent,
                rental.currency,
            )
    return booking_id


def _settings(task_queue: str) -> Settings:
    return Settings.model_validate({"BOOKING_TASK_QUEUE": task_queue})


def _mine(findings: list[Finding], ids: set[str]) -> list[tuple[str, str]]:
    # The subject is "apartment <id>" or "booking <id>": what the finding is about.
    return sorted(
        (f.kind, f.subject.split(" ", 1)[1])
        for f in findings
        if f.apartment_id in ids or f.booking_id in ids
    )


@pytest.mark.usefixtures("worker")
async def test_every_kind_of_drift_is_found_and_the_safe_ones_repaired(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    # A healthy hold: a running workflow, PENDING. Never reported.
    healthy = await make_rental(pool)
    healthy_handle, healthy_state = await start_and_hold(
        client, await booking_input(env, healthy), task_queue
    )

    # ABANDONED_HOLD (closed): an operator terminated the workflow during its hold.
    terminated = await make_rental(pool)
    handle, held = await start_and_hold(client, await booking_input(env, terminated), task_queue)
    await handle.terminate("operator mistake")

    # ABANDONED_HOLD (missing): a PENDING row no Temporal server knows.
    lost = await make_rental(pool)
    lost_booking = await _hand_made_booking(pool, lost, status="PENDING")

    # APPROVED_WITHOUT_PAYMENT (its workflow is unknown too: LEASE_WITHOUT_WORKFLOW).
    unpaid = await make_rental(pool)
    unpaid_booking = await _hand_made_booking(pool, unpaid, status="APPROVED")

    ids = {r.apartment_id for r in (healthy, terminated, lost, unpaid)} | {
        held.booking_id,
        lost_booking,
        unpaid_booking,
        healthy_state.booking_id,
    }
    findings = await examine(pool, client)
    assert _mine(findings, ids) == sorted(
        [
            (ABANDONED_HOLD, held.booking_id),
            (ABANDONED_HOLD, lost_booking),
            (APPROVED_WITHOUT_PAYMENT, unpaid_booking),
            (LEASE_WITHOUT_WORKFLOW, unpaid_booking),
        ]
    )
    by_key = {(f.kind, f.subject.split(" ", 1)[1]): f for f in findings}
    assert "TERMINATED" in by_key[(ABANDONED_HOLD, held.booking_id)].message
    assert "MISSING" in by_key[(ABANDONED_HOLD, lost_booking)].message

    mine = [f for f in findings if f.apartment_id in ids or f.booking_id in ids]
    await repair(pool, mine, client, _settings(task_queue))
    assert sorted((f.kind, f.repaired) for f in mine) == sorted(
        [
            (ABANDONED_HOLD, True),
            (ABANDONED_HOLD, True),
            (APPROVED_WITHOUT_PAYMENT, False),
            (LEASE_WITHOUT_WORKFLOW, False),
        ]
    )

    for booking_id, rental in ((held.booking_id, terminated), (lost_booking, lost)):
        row = await booking_row(pool, booking_id)
        assert row is not None
        assert (row["booking_status"], row["cancellation_reason"]) == (
            "CANCELLED",
            "DRIFT_REPAIRED",
        )
        # Its nights are free again: the apartment reads VACANT on the stay's first night.
        apartment = await apartment_row(pool, rental.apartment_id)
        assert (apartment["apartment_status"], apartment["tenant_id"]) == ("VACANT", None)
        assert (await events(pool, booking_id))[-1] == ("PENDING", "CANCELLED", "DRIFT_REPAIRED")

    # The healthy hold was not touched, and still works.
    assert (await apartment_row(pool, healthy.apartment_id))["apartment_status"] == "RESERVED"
    row = await booking_row(pool, healthy_state.booking_id)
    assert row is not None and row["booking_status"] == "PENDING"

    # A second look finds only what needs a human.
    again = _mine(await examine(pool, client), ids)
    assert {kind for kind, _ in again} == {APPROVED_WITHOUT_PAYMENT, LEASE_WITHOUT_WORKFLOW}
    await healthy_handle.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_repairs_are_idempotent_and_refuse_healed_drift(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    rental = await make_rental(pool)
    handle, held = await start_and_hold(client, await booking_input(env, rental), task_queue)
    await handle.terminate("operator mistake")
    first = await cancel_abandoned_booking(pool, held.booking_id)
    second = await cancel_abandoned_booking(pool, held.booking_id)
    assert first.changed and not second.changed
    assert [e for e in await events(pool, held.booking_id) if e[2] == "DRIFT_REPAIRED"] == [
        ("PENDING", "CANCELLED", "DRIFT_REPAIRED")
    ]
    assert not (await cancel_abandoned_booking(pool, "no-such-booking")).changed
    assert not (await offer_to_waiting(pool, "no-such-entry")).changed


@pytest.fixture
async def own_database(migrated_database_url: str) -> AsyncIterator[str]:
    """A database of its own in the session's server, so the doctor sees only our rows."""
    name = f"doctor_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(migrated_database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = migrated_database_url.rsplit("/", 1)[0] + f"/{name}"
    await migrate(url)
    yield url


async def test_cli_exit_status_follows_the_drift_left(
    env: WorkflowEnvironment, own_database: str
) -> None:
    pool = await create_pool(own_database, min_size=1, max_size=4)
    try:
        rental = await make_rental(pool)
        lost_booking = await _hand_made_booking(pool, rental, status="PENDING")
        target = env.client.service_client.config.target_host
        cli_env = {
            **os.environ,
            "DATABASE_URL": own_database,
            "TEMPORAL_ADDRESS": target,
            "TEMPORAL_NAMESPACE": env.client.namespace,
        }

        def doctor(*flags: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "cli", "doctor", *flags],
                env=cli_env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        found = doctor()
        assert found.returncode == 1, found.stderr
        assert ABANDONED_HOLD in found.stdout and lost_booking in found.stdout
        assert "--repair" in found.stdout
        # Reporting changed nothing.
        row = await booking_row(pool, lost_booking)
        assert row is not None and row["booking_status"] == "PENDING"

        as_json = doctor("--json")
        assert as_json.returncode == 1
        report = json.loads(as_json.stdout)
        assert report["ok"] is False and report["remaining"] == 1
        assert report["findings"][0]["kind"] == ABANDONED_HOLD

        repaired = doctor("--repair", "--json")
        assert repaired.returncode == 0, repaired.stdout + repaired.stderr
        assert json.loads(repaired.stdout)["repaired"] == 1
        row = await booking_row(pool, lost_booking)
        assert row is not None and row["cancellation_reason"] == "DRIFT_REPAIRED"

        clean = doctor()
        assert clean.returncode == 0 and "no drift" in clean.stdout

        # Drift that needs a human keeps the exit status non-zero even with --repair.
        await _hand_made_booking(pool, rental, status="APPROVED")
        stuck = doctor("--repair")
        assert stuck.returncode == 1
        assert APPROVED_WITHOUT_PAYMENT in stuck.stdout and "needs an operator" in stuck.stdout
    finally:
        await pool.close()


async def test_run_doctor_reports_in_text(env: WorkflowEnvironment, own_database: str) -> None:
    pool = await create_pool(own_database, min_size=1, max_size=2)
    try:
        out = io.StringIO()
        assert (
            await run_doctor(
                pool,
                booking_client(env),
                _settings("unused"),
                apply_repairs=False,
                as_json=False,
                out=out,
            )
            == 0
        )
        assert "no drift" in out.getvalue()
    finally:
        await pool.close()


# -- the waiting list ------------------------------------------------------------------------


async def test_overlapping_live_stays_are_reported(
    env: WorkflowEnvironment, own_database: str
) -> None:
    """What the exclusion constraint forbids, found if it was ever dropped (or a restore
    brought rows from before it): two live stays sharing a night, reported, not repaired."""
    pool = await create_pool(own_database, min_size=1, max_size=2)
    try:
        await pool.execute("ALTER TABLE bookings DROP CONSTRAINT bookings_no_overlapping_stays")
        rental = await make_rental(pool)
        first = await _hand_made_booking(pool, rental, status="PENDING")
        second = await _hand_made_booking(pool, rental, status="PENDING")
        # Touching is not overlapping: a stay from the others' move-out day is fine.
        today = datetime.now(UTC).date()
        await pool.execute(
            """INSERT INTO bookings (id, workflow_id, user_id, apartment_id, start_date,
                                     end_date, booking_status, amount_due, currency)
               VALUES ('touching', 'booking-touching', $1, $2, $3, $4, 'PENDING', 1, 'EUR')""",
            rental.user_id,
            rental.apartment_id,
            today - timedelta(days=1),
            today + timedelta(days=3),
        )
        findings = await examine(pool, booking_client(env))
        overlaps = [f for f in findings if f.kind == OVERLAPPING_STAYS]
        assert [(f.apartment_id, f.repairable) for f in overlaps] == [(rental.apartment_id, False)]
        assert {first, second} <= set(overlaps[0].message.split())
    finally:
        await pool.close()


@pytest.mark.usefixtures("worker")
async def test_every_repair_that_frees_nights_hands_them_to_the_waiting_list(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    """The class: each way the doctor frees nights (an abandoned hold cancelled, an entry found
    WAITING for a range that is free) offers them to the first tenant waiting, starts the
    offer's workflow, and leaves no drift behind; an offer whose booking ended without telling
    its entry is settled."""
    settings = _settings(task_queue)

    async def hold_abandoned_with_one_waiting() -> tuple[Rental, str, str]:
        """A hold whose workflow an operator terminated, a tenant WAITING behind it: the
        rental, the hold's booking id, the entry's id."""
        rental = await make_rental(pool)
        handle, held = await start_and_hold(client, await booking_input(env, rental), task_queue)
        _, entry = await join_waitlist(client, env, rental, await insert_user(pool), task_queue)
        assert entry.status == "WAITING"
        await handle.terminate("operator mistake")
        return rental, held.booking_id, entry.entry_id

    async def cancel_by_hand(booking_id: str) -> None:
        await pool.execute(
            "UPDATE bookings SET booking_status = 'CANCELLED', cancellation_reason = 'EXPIRED' "
            "WHERE id = $1",
            booking_id,
        )

    # ABANDONED_HOLD: the hold's row still PENDING.
    abandoned, _, behind_abandoned = await hold_abandoned_with_one_waiting()
    # WAITING_ON_FREE: the hold's row cancelled by hand, nobody offered its nights.
    freed, released, behind_freed = await hold_abandoned_with_one_waiting()
    await cancel_by_hand(released)

    ids = {r.apartment_id for r in (abandoned, freed)}
    findings = [f for f in await examine(pool, client) if f.apartment_id in ids]
    assert sorted((f.kind, f.apartment_id, f.entry_id) for f in findings) == sorted(
        [
            (ABANDONED_HOLD, abandoned.apartment_id, None),
            (WAITING_ON_FREE, freed.apartment_id, behind_freed),
        ]
    )
    await repair(pool, findings, client, settings)
    assert all(f.repaired and "offered to" in (f.repair_detail or "") for f in findings), findings

    offers = []
    for rental, entry_id in ((abandoned, behind_abandoned), (freed, behind_freed)):
        offer = await offered_booking(client, pool, entry_id)
        assert offer.status == "PENDING"
        assert (await apartment_row(pool, rental.apartment_id))["apartment_status"] == "RESERVED"
        offers.append(offer_handle(client, entry_id))
    # A second look finds nothing of these: the offers run, their nights are held.
    assert [f for f in await examine(pool, client) if f.apartment_id in ids] == []

    # An offer cancelled behind its workflow's back: the entry is told, and its workflow ends.
    stale = offers[0]
    await stale.terminate("operator mistake")
    await cancel_by_hand(offer_booking_id_for(behind_abandoned))
    stale_findings = [
        f for f in await examine(pool, client) if f.apartment_id == abandoned.apartment_id
    ]
    assert (OFFER_NOT_PENDING, offer_booking_id_for(behind_abandoned)) in [
        (f.kind, f.booking_id) for f in stale_findings
    ]
    await repair(pool, stale_findings, client, settings)
    entry_handle = client.get_workflow_handle_for(
        WaitlistEntryWorkflow.run, waitlist_workflow_id_for(behind_abandoned)
    )
    assert (await entry_handle.result()).status == "LAPSED"
    for running in offers[1:]:
        await running.terminate("test done")


@pytest.mark.usefixtures("worker")
async def test_invoices_are_compared_with_their_leases(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool, task_queue: str
) -> None:
    """INVOICE_DRIFT: a running lease's invoice edited by hand reads differently from its
    workflow's (reported, never repaired); INVOICE_WITHOUT_LEASE: an open invoice of a
    cancelled stay, or for a period after a running stay's end, is found and made VOID."""
    rental = await make_rental(pool, monthly_rent=70_000)
    data = await booking_input(env, rental, lease_days=100)
    handle, held = await start_and_hold(client, data, task_queue)
    await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    first_night = datetime.combine(data.start_date, time.min, tzinfo=UTC)
    now = await env.get_current_time()
    await env.sleep(first_night + timedelta(hours=1) - now)
    invoices = await eventually(
        lambda: pool.fetch(
            "SELECT id, seq, status FROM rent_invoices WHERE booking_id = $1 ORDER BY seq",
            data.booking_id,
        ),
        lambda rows: len(rows) == 4,
        what="the lease's invoices written",
    )
    assert not [f for f in await examine(pool, client) if f.booking_id == data.booking_id]

    # Drift made by hand: one invoice marked ISSUED behind the workflow's back; another
    # invoice for a period after the stay's end; a cancelled stay's open invoice.
    await pool.execute(
        "UPDATE rent_invoices SET status = 'ISSUED', updated_on = now() WHERE id = $1",
        invoices[2]["id"],
    )
    # Changed a moment ago: a step's answer may still be on its way to the workflow.
    assert not [f for f in await examine(pool, client) if f.booking_id == data.booking_id]
    await pool.execute(
        "UPDATE rent_invoices SET updated_on = now() - interval '1 hour' WHERE id = $1",
        invoices[2]["id"],
    )
    async with pool.acquire() as conn:
        await insert_schedule(
            conn,
            data.booking_id,
            [RentPeriod(9, data.end_date, data.end_date + timedelta(days=30), 70_000)],
            "EUR",
            first_paid=None,
        )
        cancelled_rental = await make_rental(pool)
        cancelled = await _hand_made_booking(pool, cancelled_rental, status="CANCELLED")
        await insert_schedule(
            conn,
            cancelled,
            [RentPeriod(1, data.start_date, data.start_date + timedelta(days=30), 70_000)],
            "EUR",
            first_paid=None,
        )
    findings = [
        f for f in await examine(pool, client) if f.booking_id in (data.booking_id, cancelled)
    ]
    assert sorted((f.kind, f.subject) for f in findings) == sorted(
        [
            (INVOICE_DRIFT, f"invoice {invoices[2]['id']}"),
            (INVOICE_WITHOUT_LEASE, f"invoice {invoice_id_for(data.booking_id, 9)}"),
            (INVOICE_WITHOUT_LEASE, f"invoice {invoice_id_for(cancelled, 1)}"),
        ]
    )
    drift = next(f for f in findings if f.kind == INVOICE_DRIFT)
    assert "ISSUED" in drift.message and "SCHEDULED" in drift.message

    await repair(pool, findings, client, _settings(task_queue))
    assert sorted((f.kind, f.repaired) for f in findings) == sorted(
        [(INVOICE_DRIFT, False), (INVOICE_WITHOUT_LEASE, True), (INVOICE_WITHOUT_LEASE, True)]
    )
    for invoice_id in (invoice_id_for(data.booking_id, 9), invoice_id_for(cancelled, 1)):
        status = await pool.fetchval("SELECT status FROM rent_invoices WHERE id = $1", invoice_id)
        assert status == "VOID"
    again = [
        f.kind for f in await examine(pool, client) if f.booking_id in (data.booking_id, cancelled)
    ]
    assert again == [INVOICE_DRIFT]
    await handle.terminate("test done")


async def test_stuck_mail_is_sent_by_the_repair_and_failed_mail_reported(
    client: Client, pool: asyncpg.Pool
) -> None:
    """MAIL_STUCK: a notification PENDING for over 15 minutes (here: its booking's workflow is
    gone) is reported, and sent by --repair with the doctor's own mail settings; without them
    it stays. MAIL_FAILED: an account without a valid address is reported, never repaired."""
    rental = await make_rental(pool)
    stuck = await _hand_made_booking(pool, rental, status="CANCELLED")
    nobody = await make_rental(pool)
    await pool.execute("UPDATE users SET email = 'nobody' WHERE id = $1", nobody.user_id)
    failed = await _hand_made_booking(pool, nobody, status="CANCELLED")
    for booking_id in (stuck, failed):
        await pool.execute(
            """INSERT INTO booking_events (booking_id, from_status, to_status, reason, details)
               VALUES ($1, 'PENDING', 'CANCELLED', 'EXPIRED', '{}')""",
            booking_id,
        )
    await pool.execute(
        """UPDATE notifications SET created_on = now() - interval '20 minutes'
            WHERE booking_id = ANY($1::text[])""",
        [stuck, failed],
    )

    def mine(findings: list[Finding]) -> list[Finding]:
        return [f for f in findings if f.booking_id in (stuck, failed) and "MAIL" in f.kind]

    found = mine(await examine(pool, client))
    assert [(f.kind, f.booking_id, f.repairable) for f in found] == [
        ("MAIL_STUCK", stuck, True),
        ("MAIL_FAILED", failed, False),
    ]
    assert "HOLD_EXPIRED" in found[0].message and "0 attempt(s)" in found[0].message
    assert "no valid email address" in found[1].message

    await repair(pool, found, client, Settings())
    assert not found[0].repaired and "BOOKING_SMTP_HOST is unset" in str(found[0].repair_detail)

    with SmtpInbox() as inbox:
        found = mine(await examine(pool, client))
        await repair(pool, found, client, Settings.model_validate(inbox.settings))
    assert found[0].repaired and not found[1].repaired
    (mail,) = inbox.to(f"{rental.user_id}@example.com")
    assert "has ended" in mail.subject
    assert [f.kind for f in mine(await examine(pool, client))] == ["MAIL_FAILED"]
