"""A lease collects its rent (issue 24), on the time-skipping server: invoices issued before
they are due, reminded, overdue with the late fee once, paid ahead or late, and the lease's
end; continue-as-new keeps a long lease's history bounded."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import asyncpg
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from booking.contract import RentPaymentInput
from booking.rent import rent_periods
from booking.settings import Settings
from tests.helpers import (
    booking_input,
    make_rental,
    payment_for,
    record_history,
    start_and_hold,
    unique,
)
from worker import create_worker
from workflows.booking import LEASE_HISTORY_EVENTS, ApartmentBookingWorkflow


async def _invoices(pool: asyncpg.Pool, booking_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        "SELECT id, seq, due_date, rent, late_fee, status, payment_reference "
        "FROM rent_invoices WHERE booking_id = $1 ORDER BY seq",
        booking_id,
    )


async def _reasons(pool: asyncpg.Pool, booking_id: str) -> list[str]:
    rows = await pool.fetch(
        "SELECT reason FROM booking_events WHERE booking_id = $1 ORDER BY id", booking_id
    )
    return [r["reason"] for r in rows]


async def _skip_to(env: WorkflowEnvironment, at: datetime) -> None:
    now = await env.get_current_time()
    if at > now:
        await env.sleep(at - now)


def _midnight(day: object) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)  # type: ignore[arg-type]


async def test_a_lease_issues_reminds_charges_and_takes_its_rent(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool
) -> None:
    task_queue = unique("lease")
    settings = Settings.model_validate({"BOOKING_LATE_FEE": "2500"})
    async with create_worker(client, pool, settings, task_queue=task_queue):
        rental = await make_rental(pool, monthly_rent=100_000)
        data = await booking_input(env, rental, lease_days=100)
        handle, held = await start_and_hold(client, data, task_queue)
        await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
        await _skip_to(env, _midnight(data.start_date) + timedelta(hours=1))
        invoices = await _invoices(pool, data.booking_id)
        assert [(i["seq"], i["status"]) for i in invoices] == [
            (0, "PAID"),
            (1, "SCHEDULED"),
            (2, "SCHEDULED"),
            (3, "SCHEDULED"),
        ]
        second, third, last = invoices[1], invoices[2], invoices[3]

        # Issued 7 days before it is due; paid on time.
        await _skip_to(env, _midnight(second["due_date"]) - timedelta(days=7, hours=-1))
        assert (await _invoices(pool, data.booking_id))[1]["status"] == "ISSUED"
        paid = await handle.execute_update(
            ApartmentBookingWorkflow.pay_rent,
            RentPaymentInput(second["id"], 100_000, "EUR", "rent-1"),
        )
        assert (paid.status, paid.payment_reference) == ("PAID", "rent-1")
        # The same payment again answers the same; another reference is refused.
        again = await handle.execute_update(
            ApartmentBookingWorkflow.pay_rent,
            RentPaymentInput(second["id"], 100_000, "EUR", "rent-1"),
        )
        assert again.status == "PAID"
        try:
            await handle.execute_update(
                ApartmentBookingWorkflow.pay_rent,
                RentPaymentInput(second["id"], 100_000, "EUR", "rent-1b"),
            )
            raise AssertionError("a second payment of a paid invoice was accepted")
        except WorkflowUpdateFailedError as err:
            assert isinstance(err.cause, ApplicationError)
            assert err.cause.type == "PaymentRejected"

        # The third is not paid: due reminder, then OVERDUE with the fee once, reminders.
        await _skip_to(env, _midnight(third["due_date"]) + timedelta(days=5, hours=1))
        row = (await _invoices(pool, data.booking_id))[2]
        assert (row["status"], row["late_fee"]) == ("OVERDUE", 2_500)
        await _skip_to(env, _midnight(third["due_date"]) + timedelta(days=11, hours=1))
        assert (await _invoices(pool, data.booking_id))[2]["late_fee"] == 2_500  # never compounds
        try:
            await handle.execute_update(
                ApartmentBookingWorkflow.pay_rent,
                RentPaymentInput(third["id"], 100_000, "EUR", "rent-2"),
            )
            raise AssertionError("the fee was not asked for")
        except WorkflowUpdateFailedError as err:
            assert isinstance(err.cause, ApplicationError)
            assert err.cause.type == "PaymentRejected"
            assert "102500" in err.cause.message
        await handle.execute_update(
            ApartmentBookingWorkflow.pay_rent,
            RentPaymentInput(third["id"], 102_500, "EUR", "rent-2"),
        )
        # The last, prorated, paid ahead while still SCHEDULED.
        await handle.execute_update(
            ApartmentBookingWorkflow.pay_rent,
            RentPaymentInput(last["id"], last["rent"], "EUR", "rent-3"),
        )
        final = await handle.result()
        assert final.status == "APPROVED" and final.lease_ended_at is not None
        await record_history(handle, "lease_rent_issued_overdue_paid")
        rows = await _invoices(pool, data.booking_id)
        assert [r["status"] for r in rows] == ["PAID"] * 4
        reasons = await _reasons(pool, data.booking_id)
        assert reasons.count("RENT_ISSUED") == 2  # the last was paid before its issue date
        assert reasons.count("RENT_DUE") == 1 and reasons.count("RENT_OVERDUE") == 1
        assert reasons.count("RENT_REMINDER") >= 1
        assert reasons.count("RENT_PAID") == 3
        assert reasons[-1] == "LEASE_ENDED"


async def test_a_five_year_lease_keeps_a_bounded_history(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool
) -> None:
    """Five years of rent in seconds: every invoice issued and paid as it is issued, but one
    left to go overdue (five reminders, then quiet); the history continues as new."""
    task_queue = unique("lease")
    async with create_worker(client, pool, Settings(), task_queue=task_queue):
        rental = await make_rental(pool, monthly_rent=100_000)
        data = await booking_input(env, rental, lease_days=5 * 365)
        handle, held = await start_and_hold(client, data, task_queue)
        await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
        periods = rent_periods(data.start_date, data.end_date, 100_000, held.amount_due or 0)
        await _skip_to(env, _midnight(data.start_date) + timedelta(hours=1))
        unpaid = 30
        for period in periods[1:]:
            await _skip_to(env, _midnight(period.due_date) - timedelta(days=7, hours=-1))
            if period.seq == unpaid:
                continue
            invoice = (await _invoices(pool, data.booking_id))[period.seq]
            assert invoice["status"] == "ISSUED", invoice
            await handle.execute_update(
                ApartmentBookingWorkflow.pay_rent,
                RentPaymentInput(invoice["id"], invoice["rent"], "EUR", f"rent-{period.seq}"),
            )
        final = await handle.result()
        assert final.status == "APPROVED" and final.lease_ended_at is not None
        rows = await _invoices(pool, data.booking_id)
        assert len(rows) == len(periods)
        assert [r["rent"] for r in rows] == [p.rent for p in periods]
        assert {r["status"] for i, r in enumerate(rows) if i != unpaid} == {"PAID"}
        assert rows[unpaid]["status"] == "OVERDUE"
        reasons = await _reasons(pool, data.booking_id)
        assert reasons.count("RENT_REMINDER") == 4  # the overdue notice and four more
        assert reasons.count("RENT_PAID") == len(periods) - 2
        # Every run of the chain, from the last back to the first (continued-as-new ones).
        lengths: list[int] = []
        run_id: str | None = None
        while True:
            history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
            lengths.append(len(history.events))
            started = history.events[0].workflow_execution_started_event_attributes
            run_id = started.continued_execution_run_id or None
            if run_id is None:
                break
        print(f"5-year lease: {len(lengths)} runs, longest history {max(lengths)} events")
        assert len(lengths) > 1  # it did continue as new
        assert max(lengths) <= LEASE_HISTORY_EVENTS + 100
