"""A lease collects its rent (issue 24), on the time-skipping server: invoices issued before
they are due, reminded, overdue with the late fee once, paid ahead or late, and the lease's
end; continue-as-new keeps a long lease's history bounded."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta

import asyncpg
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from booking.contract import LeaseEndInput, PaymentInput, RentPaymentInput
from booking.rent import prorated, rent_periods
from booking.settings import Settings
from tests.helpers import (
    booking_input,
    eventually,
    insert_user,
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
        "SELECT id, seq, period_start, period_end, due_date, rent, late_fee, refunded, status, "
        "payment_reference "
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
        # Paid ahead of its first night: the invoices are there from the payment on.
        invoices = await eventually(
            lambda: _invoices(pool, data.booking_id),
            lambda rows: len(rows) == 4,
            what="the invoices written at the payment",
        )
        assert await env.get_current_time() < _midnight(data.start_date)
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
        await _refuse(
            handle.execute_update,
            ApartmentBookingWorkflow.pay_rent,
            RentPaymentInput(second["id"], 100_000, "EUR", "rent-1b"),
            error_type="PaymentRejected",
        )

        # The third is not paid: due reminder, then OVERDUE with the fee once, reminders.
        await _skip_to(env, _midnight(third["due_date"]) + timedelta(days=5, hours=1))
        row = (await _invoices(pool, data.booking_id))[2]
        assert (row["status"], row["late_fee"]) == ("OVERDUE", 2_500)
        await _skip_to(env, _midnight(third["due_date"]) + timedelta(days=11, hours=1))
        assert (await _invoices(pool, data.booking_id))[2]["late_fee"] == 2_500  # never compounds
        message = await _refuse(
            handle.execute_update,
            ApartmentBookingWorkflow.pay_rent,
            RentPaymentInput(third["id"], 100_000, "EUR", "rent-2"),
            error_type="PaymentRejected",
        )
        assert "102500" in message  # the fee is asked for
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
        await record_history(handle, "lease_invoices_at_payment_issued_overdue_paid")
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
    """Five years of rent in seconds: a four-year lease renewed after its tenth period to
    five years and forty days, then ended by notice at five years; every invoice issued and
    paid as it is issued, but one left to go overdue (its fee, five reminders, then quiet);
    the history continues as new."""
    task_queue = unique("lease")
    async with create_worker(
        client, pool, Settings.model_validate({"BOOKING_LATE_FEE": "5%"}), task_queue=task_queue
    ):
        rental = await make_rental(pool, monthly_rent=100_000)
        data = await booking_input(env, rental, lease_days=4 * 365)
        handle, held = await start_and_hold(client, data, task_queue)
        await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
        start = data.start_date
        final_end = start + timedelta(days=5 * 365)
        periods = rent_periods(start, final_end, 100_000, held.amount_due or 0)
        await _skip_to(env, _midnight(start) + timedelta(hours=1))
        unpaid = 30
        for period in periods[1:]:
            await _skip_to(env, _midnight(period.due_date) - timedelta(days=7, hours=-1))
            today = (await env.get_current_time()).date()
            if period.seq == 11:
                await handle.execute_update(
                    ApartmentBookingWorkflow.renew_lease,
                    LeaseEndInput(final_end + timedelta(days=40), today),
                )
            if period.seq == len(periods) - 2:
                # Notice, well ahead of the 30 days a tenant must give.
                await handle.execute_update(
                    ApartmentBookingWorkflow.end_lease,
                    LeaseEndInput(final_end, today + timedelta(days=30)),
                )
            if period.seq == unpaid:
                continue
            invoice = (await _invoices(pool, data.booking_id))[period.seq]
            assert invoice["status"] == "ISSUED", invoice
            assert (invoice["period_start"], invoice["rent"]) == (period.period_start, period.rent)
            await handle.execute_update(
                ApartmentBookingWorkflow.pay_rent,
                RentPaymentInput(invoice["id"], invoice["rent"], "EUR", f"rent-{period.seq}"),
            )
        final = await handle.result()
        assert final.status == "APPROVED" and final.lease_ended_at == _midnight(final_end)
        rows = await _invoices(pool, data.booking_id)
        live = [r for r in rows if r["status"] != "VOID"]
        assert [(r["period_start"], r["period_end"], r["rent"]) for r in live] == [
            (p.period_start, p.period_end, p.rent) for p in periods
        ]
        voided = [r["period_start"] for r in rows if r["status"] == "VOID"]
        assert voided and min(voided) > final_end  # the renewal's periods after the notice
        assert {r["status"] for i, r in enumerate(live) if i != unpaid} == {"PAID"}
        assert (live[unpaid]["status"], live[unpaid]["late_fee"]) == ("OVERDUE", 5_000)
        reasons = await _reasons(pool, data.booking_id)
        assert reasons.count("RENT_OVERDUE") == 1
        assert reasons.count("RENT_REMINDER") == 4  # the overdue notice and four more
        assert reasons.count("RENT_PAID") == len(periods) - 2
        assert reasons.count("LEASE_RENEWED") == 1 and reasons.count("LEASE_ENDS_EARLIER") == 1
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


async def _refuse(update: object, *args: object, error_type: str) -> str:
    """Run an update that must be refused with ``error_type``; its message."""
    try:
        await update(*args)  # type: ignore[operator]
    except WorkflowUpdateFailedError as err:
        assert isinstance(err.cause, ApplicationError)
        assert err.cause.type == error_type, err.cause
        return err.cause.message
    raise AssertionError(f"expected {error_type}")


def _contiguous(rows: list[asyncpg.Record], start: date, end: date) -> None:
    live = [r for r in rows if r["status"] != "VOID"]
    assert live[0]["period_start"] == start
    for before, after in itertools.pairwise(live):
        assert before["period_end"] == after["period_start"], (before, after)
    assert live[-1]["period_end"] == end


async def test_a_lease_renewed_then_ended_with_notice(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool
) -> None:
    """renewLease extends a stay whose next nights are free (its cut-short last period made
    whole, new periods invoiced) and is refused when another stay has them; endLease keeps
    the notice, prorates the period it falls in, refunds rent paid for nights given up, VOIDs
    later invoices; money the webhook brings for a VOID invoice is recorded and refunded."""
    task_queue = unique("lease")
    async with create_worker(client, pool, Settings(), task_queue=task_queue):
        rental = await make_rental(pool, monthly_rent=90_000)
        data = await booking_input(env, rental, lease_days=75)
        handle, held = await start_and_hold(client, data, task_queue)
        await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
        await _skip_to(env, _midnight(data.start_date) + timedelta(hours=1))
        start = data.start_date
        before = await _invoices(pool, data.booking_id)
        assert [r["rent"] for r in before][1:] == [
            p.rent for p in rent_periods(start, data.end_date, 90_000, 0)[1:]
        ]
        today = (await env.get_current_time()).date()

        # Renewal: to 200 nights; refused beyond a stay another tenant holds after that.
        renewed_end = start + timedelta(days=200)
        state = await handle.execute_update(
            ApartmentBookingWorkflow.renew_lease, LeaseEndInput(renewed_end, today)
        )
        assert state.end_date == renewed_end
        rows = await _invoices(pool, data.booking_id)
        _contiguous(rows, start, renewed_end)
        assert [r["rent"] for r in rows][1:] == [
            p.rent for p in rent_periods(start, renewed_end, 90_000, 0)[1:]
        ]
        other = await booking_input(
            env,
            rental,
            start_date=renewed_end + timedelta(days=10),
            end_date=renewed_end + timedelta(days=20),
            user_id=await insert_user(pool),
        )
        await start_and_hold(client, other, task_queue)
        message = await _refuse(
            handle.execute_update,
            ApartmentBookingWorkflow.renew_lease,
            LeaseEndInput(renewed_end + timedelta(days=15), today),
            error_type="ApartmentUnavailable",
        )
        assert str(renewed_end + timedelta(days=10)) in message
        assert (
            await pool.fetchval("SELECT end_date FROM bookings WHERE id = $1", data.booking_id)
        ) == renewed_end
        for wrong in (renewed_end, start):
            await _refuse(
                handle.execute_update,
                ApartmentBookingWorkflow.renew_lease,
                LeaseEndInput(wrong, today),
                error_type="LeaseNotChangeable",
            )

        # Pay the second and third invoices ahead, then give notice inside the third period.
        rows = await _invoices(pool, data.booking_id)
        second, third = rows[1], rows[2]
        for row, ref in ((second, "rent-2"), (third, "rent-3")):
            await handle.execute_update(
                ApartmentBookingWorkflow.pay_rent,
                RentPaymentInput(row["id"], row["rent"], "EUR", ref),
            )
        notice_end = third["period_start"] + timedelta(days=10)
        # A tenant's notice must reach past the earliest day the API allows it.
        await _refuse(
            handle.execute_update,
            ApartmentBookingWorkflow.end_lease,
            LeaseEndInput(notice_end, notice_end + timedelta(days=1)),
            error_type="LeaseNotChangeable",
        )
        await _refuse(
            handle.execute_update,
            ApartmentBookingWorkflow.end_lease,
            LeaseEndInput(start, today),
            error_type="LeaseNotChangeable",
        )
        state = await handle.execute_update(
            ApartmentBookingWorkflow.end_lease, LeaseEndInput(notice_end, today)
        )
        assert state.end_date == notice_end
        rows = await _invoices(pool, data.booking_id)
        _contiguous(rows, start, notice_end)
        cut = next(r for r in rows if r["id"] == third["id"])
        assert (cut["status"], cut["period_end"], cut["rent"]) == (
            "PAID",
            notice_end,
            third["rent"],
        )
        assert cut["refunded"] == third["rent"] - prorated(90_000, 10)
        voided = [r for r in rows if r["period_start"] >= notice_end]
        assert voided and {r["status"] for r in voided} == {"VOID"}

        # Money for a VOID invoice by the webhook: recorded and refunded, never applied.
        await handle.signal(
            ApartmentBookingWorkflow.payment_received,
            PaymentInput(voided[0]["rent"], "EUR", "late-rent", invoice_id=voided[0]["id"]),
        )
        final = await handle.result()
        assert final.end_date == notice_end and final.lease_ended_at == _midnight(notice_end)
        refund = await pool.fetchrow(
            "SELECT p.outcome, r.reason FROM payments p JOIN refunds r ON r.payment_id = p.id "
            "WHERE p.booking_id = $1 AND p.payment_reference = 'late-rent'",
            data.booking_id,
        )
        assert refund is not None and tuple(refund) == ("REFUNDED", "INVOICE_VOID")
        reasons = await _reasons(pool, data.booking_id)
        assert reasons.count("LEASE_RENEWED") == 1 and reasons.count("LEASE_ENDS_EARLIER") == 1
        assert reasons[-1] == "LEASE_ENDED"
        await record_history(handle, "lease_renewed_then_ended_with_notice")


async def test_a_short_stay_renewed_past_a_month_becomes_a_lease(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool
) -> None:
    """A stay with no invoices (a short stay here; a lease from before leases collected rent
    is the same case) renewed past a month: invoices for the added nights from its old end
    on, which the workflow then issues and collects like any lease's."""
    task_queue = unique("lease")
    async with create_worker(client, pool, Settings(), task_queue=task_queue):
        rental = await make_rental(pool, monthly_rent=60_000)
        data = await booking_input(env, rental, lease_days=20)
        handle, held = await start_and_hold(client, data, task_queue)
        await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
        await _skip_to(env, _midnight(data.start_date) + timedelta(hours=1))
        assert await _invoices(pool, data.booking_id) == []
        new_end = data.start_date + timedelta(days=80)
        today = (await env.get_current_time()).date()
        await handle.execute_update(
            ApartmentBookingWorkflow.renew_lease, LeaseEndInput(new_end, today)
        )
        rows = await _invoices(pool, data.booking_id)
        _contiguous(rows, data.end_date, new_end)
        assert rows[0]["rent"] == prorated(60_000, (rows[0]["period_end"] - data.end_date).days)
        assert {r["status"] for r in rows} <= {"SCHEDULED", "ISSUED"}
        for row in rows:
            await _skip_to(env, _midnight(row["due_date"]) - timedelta(days=7, hours=-1))
            issued = next(r for r in await _invoices(pool, data.booking_id) if r["id"] == row["id"])
            assert issued["status"] == "ISSUED", issued
            await handle.execute_update(
                ApartmentBookingWorkflow.pay_rent,
                RentPaymentInput(row["id"], row["rent"], "EUR", f"rent-{row['seq']}"),
            )
        final = await handle.result()
        assert final.end_date == new_end and final.lease_ended_at == _midnight(new_end)
        assert {r["status"] for r in await _invoices(pool, data.booking_id)} == {"PAID"}
