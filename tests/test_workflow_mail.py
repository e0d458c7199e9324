"""Mail to tenants from the workflows, on the time-skipping server: a real worker, a real
Postgres and a real SMTP server (tests/smtp.py).

Each transition a tenant is told of writes its notification in its own transaction; the
workflow then sends it in the background. Checked here: every kind a hold, a payment, a
lease's rent, a move of its end and the waiting list produce, each delivered once with the
notification's Message-ID; the hold-ending reminder's durable timer; a mail server that is
down delays mail and never a booking; an address refused for good is not tried again.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from booking.contract import (
    LeaseEndInput,
    RentPaymentInput,
    offer_booking_id_for,
)
from booking.mail import money
from booking.settings import Settings
from tests.helpers import (
    booking_input,
    eventually,
    insert_user,
    join_waitlist,
    make_rental,
    offer_handle,
    offered_booking,
    payment_for,
    record_history,
    start_and_hold,
    unique,
)
from tests.smtp import SmtpInbox
from worker import create_worker
from workflows.booking import ApartmentBookingWorkflow


@pytest.fixture
def inbox() -> Iterator[SmtpInbox]:
    with SmtpInbox() as server:
        yield server


@pytest.fixture
async def mail_queue(client: Client, pool: asyncpg.Pool, inbox: SmtpInbox) -> AsyncIterator[str]:
    """A worker that delivers mail to ``inbox`` (a late fee, so that the overdue mail has one)."""
    task_queue = unique("mail")
    settings = Settings.model_validate({**inbox.settings, "BOOKING_LATE_FEE": "2500"})
    async with create_worker(client, pool, settings, task_queue=task_queue):
        yield task_queue


async def _notifications(pool: asyncpg.Pool, user_id: str) -> list[asyncpg.Record]:
    return await pool.fetch(
        """SELECT kind, status, attempts, last_error, message_id, to_address
             FROM notifications WHERE user_id = $1 ORDER BY id""",
        user_id,
    )


async def _delivered(
    pool: asyncpg.Pool, inbox: SmtpInbox, user_id: str, kinds: list[str]
) -> dict[str, Any]:
    """Wait until the tenant's notifications are exactly ``kinds``, all SENT; each one's
    message, as the SMTP server received it, by kind."""
    rows = await eventually(
        lambda: _notifications(pool, user_id),
        lambda found: (
            [r["kind"] for r in found] == kinds and all(r["status"] == "SENT" for r in found)
        ),
        what=f"{kinds} sent",
    )
    by_kind: dict[str, Any] = {}
    for row in rows:
        (mail,) = [m for m in inbox.to(row["to_address"]) if m.message_id == row["message_id"]]
        assert inbox.copies(row["message_id"]) == 1, row["kind"]
        by_kind[row["kind"]] = mail
    assert len(inbox.to(f"{user_id}@example.com")) == len(kinds)
    return by_kind


async def _no_activity_left(handle: WorkflowHandle[Any, Any]) -> None:
    """Before a terminate: the time-skipping server stops skipping time while an activity of
    a terminated execution is outstanding."""
    await eventually(
        handle.describe,
        lambda d: not d.raw_description.pending_activities,
        what="the workflow's activities done",
    )


async def test_a_hold_is_mailed_placed_ending_expired_and_a_late_payment_refunded(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    inbox: SmtpInbox,
    mail_queue: str,
) -> None:
    rental = await make_rental(pool, monthly_rent=100_000)
    data = await booking_input(env, rental, hold_seconds=3600, lease_days=20)
    handle, held = await start_and_hold(client, data, mail_queue)
    assert held.hold_expires_at is not None and held.amount_due is not None
    due = money(held.amount_due, "EUR")
    placed = (await _delivered(pool, inbox, rental.user_id, ["HOLD_PLACED"]))["HOLD_PLACED"]
    assert due in placed.text and held.hold_expires_at.strftime("%H:%M UTC") in placed.text
    for body in (placed.text, placed.html):
        assert rental.apartment_id in body
        assert str(data.start_date) in body and str(data.end_date) in body

    # Five minutes (BOOKING_HOLD_REMINDER_SECONDS' default) before the end: the reminder.
    reminder_at = held.hold_expires_at - timedelta(seconds=300)
    await env.sleep(reminder_at - await env.get_current_time() - timedelta(seconds=5))
    assert [r["kind"] for r in await _notifications(pool, rental.user_id)] == ["HOLD_PLACED"]
    await env.sleep(timedelta(seconds=10))
    mails = await _delivered(pool, inbox, rental.user_id, ["HOLD_PLACED", "HOLD_ENDING"])
    assert "ends soon" in mails["HOLD_ENDING"].subject and due in mails["HOLD_ENDING"].text

    # The end: expired; a payment arriving after it is refunded, and the tenant told why.
    await env.sleep(held.hold_expires_at - await env.get_current_time() + timedelta(seconds=1))
    late = payment_for(held)
    await handle.signal(ApartmentBookingWorkflow.payment_received, late)
    kinds = ["HOLD_PLACED", "HOLD_ENDING", "HOLD_EXPIRED", "PAYMENT_REFUNDED"]
    mails = await _delivered(pool, inbox, rental.user_id, kinds)
    assert "has ended" in mails["HOLD_EXPIRED"].subject
    refunded = mails["PAYMENT_REFUNDED"].text
    assert late.payment_reference in refunded and due in refunded
    assert "after the hold had ended" in refunded
    final = await handle.result()
    assert (final.status, final.cancellation_reason) == ("CANCELLED", "EXPIRED")
    await record_history(handle, "mail_hold_reminded_expired_refunded")


async def test_a_lease_mails_its_receipt_its_rent_and_its_new_end(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    inbox: SmtpInbox,
    mail_queue: str,
) -> None:
    rental = await make_rental(pool, monthly_rent=100_000)
    # A short hold: no reminder (the hold must last more than twice the reminder's lead).
    data = await booking_input(env, rental, hold_seconds=600, lease_days=70)
    handle, held = await start_and_hold(client, data, mail_queue)
    paid = payment_for(held)
    await handle.execute_update(ApartmentBookingWorkflow.pay, paid)
    mails = await _delivered(pool, inbox, rental.user_id, ["HOLD_PLACED", "PAYMENT_RECEIVED"])
    receipt = mails["PAYMENT_RECEIVED"].text
    assert paid.payment_reference in receipt and money(paid.amount, "EUR") in receipt

    invoices = await pool.fetch(
        "SELECT id, due_date, rent FROM rent_invoices WHERE booking_id = $1 ORDER BY seq",
        data.booking_id,
    )
    second = invoices[1]
    due = datetime.combine(second["due_date"], time.min, tzinfo=UTC)
    # Unpaid past its grace days: issued, due, overdue with the 25.00 EUR fee.
    await env.sleep(due + timedelta(days=5, hours=1) - await env.get_current_time())
    kinds = ["HOLD_PLACED", "PAYMENT_RECEIVED", "RENT_ISSUED", "RENT_DUE", "RENT_OVERDUE"]
    mails = await _delivered(pool, inbox, rental.user_id, kinds)
    assert money(100_000, "EUR") in mails["RENT_ISSUED"].text
    assert str(second["due_date"]) in mails["RENT_DUE"].text
    overdue = mails["RENT_OVERDUE"].text
    assert money(2_500, "EUR") in overdue and money(102_500, "EUR") in overdue
    # Still unpaid BOOKING_RENT_REMINDER_DAYS (3) later: a reminder, with the fee.
    await env.sleep(timedelta(days=3))
    kinds.append("RENT_REMINDER")
    mails = await _delivered(pool, inbox, rental.user_id, kinds)
    assert money(102_500, "EUR") in mails["RENT_REMINDER"].text
    await handle.execute_update(
        ApartmentBookingWorkflow.pay_rent,
        RentPaymentInput(second["id"], 102_500, "EUR", "rent-late"),
    )
    # Then the tenant gives notice: the stay ends with the second period.
    today = (await env.get_current_time()).date()
    new_end = second["due_date"] + timedelta(days=20)
    await handle.execute_update(ApartmentBookingWorkflow.end_lease, LeaseEndInput(new_end, today))
    kinds += ["RENT_PAID", "LEASE_ENDS_EARLIER"]
    mails = await _delivered(pool, inbox, rental.user_id, kinds)
    assert "rent-late" in mails["RENT_PAID"].text
    assert money(102_500, "EUR") in mails["RENT_PAID"].text
    assert f"now ends on {new_end}" in mails["LEASE_ENDS_EARLIER"].text
    final = await handle.result()
    assert final.lease_ended_at is not None
    await record_history(handle, "mail_lease_receipt_rent_overdue_paid_ended_early")


async def test_the_waiting_list_mails_an_offer_its_lapse_and_a_stay_that_began(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    inbox: SmtpInbox,
    mail_queue: str,
) -> None:
    rental = await make_rental(pool)
    waiting = await insert_user(pool)
    data = await booking_input(env, rental, hold_seconds=600, lease_days=30)
    handle, held = await start_and_hold(client, data, mail_queue)
    _, entry = await join_waitlist(client, env, rental, waiting, mail_queue)
    # The hold runs out: the tenant in line is offered the nights, and told so.
    assert held.hold_expires_at is not None
    await env.sleep(held.hold_expires_at - await env.get_current_time())
    offer = await offered_booking(client, pool, entry.entry_id)
    assert offer.hold_expires_at is not None and offer.amount_due is not None
    mails = await _delivered(pool, inbox, waiting, ["OFFERED"])
    assert money(offer.amount_due, "EUR") in mails["OFFERED"].text
    assert offer.hold_expires_at.strftime("%Y-%m-%d %H:%M UTC") in mails["OFFERED"].text
    # The first tenant hears that its hold ended (not that an offer lapsed).
    await _delivered(pool, inbox, rental.user_id, ["HOLD_PLACED", "HOLD_EXPIRED"])

    # The offer runs out unpaid: its tenant is told it lapsed (once: not also "hold ended"),
    # after the reminder the offer's long hold earns.
    await env.sleep(offer.hold_expires_at - await env.get_current_time() + timedelta(seconds=1))
    mails = await _delivered(pool, inbox, waiting, ["OFFERED", "HOLD_ENDING", "OFFER_LAPSED"])
    assert "lapsed" in mails["OFFER_LAPSED"].subject
    offered = offer_handle(client, entry.entry_id)
    await _no_activity_left(offered)
    assert offered.id.endswith(offer_booking_id_for(entry.entry_id))

    # A paid stay; someone waits for nights in it; the stay ends after theirs began: lapsed.
    other = await make_rental(pool)
    late_comer = await insert_user(pool)
    data = await booking_input(env, other, lease_days=30)
    lease, held = await start_and_hold(client, data, mail_queue)
    await lease.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    entry_handle, entry = await join_waitlist(client, env, other, late_comer, mail_queue)
    await lease.result()
    mails = await _delivered(pool, inbox, late_comer, ["WAITLIST_LAPSED"])
    assert "waiting list" in mails["WAITLIST_LAPSED"].subject
    assert (await entry_handle.result()).status == "LAPSED"
    await record_history(entry_handle, "entry_lapsed_mailed")
    # A month on, the expired hold and the lapsed offer have waited out their late-payment
    # windows and closed by themselves.
    for h in (handle, offered):
        assert (await h.result()).cancellation_reason == "EXPIRED"
    await record_history(offered, "mail_offer_reminded_lapsed")


async def test_a_mail_server_that_is_down_delays_mail_never_the_booking(
    env: WorkflowEnvironment, client: Client, pool: asyncpg.Pool
) -> None:
    down = SmtpInbox()  # its port, nothing listening yet
    task_queue = unique("mail-down")
    settings = Settings.model_validate(down.settings)
    async with create_worker(client, pool, settings, task_queue=task_queue):
        rental = await make_rental(pool)
        data = await booking_input(env, rental, hold_seconds=600, lease_days=20)
        handle, held = await start_and_hold(client, data, task_queue)
        paid = await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
        assert paid.status == "APPROVED"
        rows = await eventually(
            lambda: _notifications(pool, rental.user_id),
            lambda found: len(found) == 2 and found[0]["attempts"] >= 2,
            what="the first mail tried again",
        )
        # In order: the receipt waits behind the first message; nothing is lost.
        assert [r["status"] for r in rows] == ["PENDING", "PENDING"]
        assert "SMTPConnectError" in rows[0]["last_error"]
        # The server comes up: the retries deliver, each message once.
        down.start()
        try:
            # Past the retry's backoff (the test server skips it only when asked to).
            await env.sleep(timedelta(minutes=2))
            await _delivered(pool, down, rental.user_id, ["HOLD_PLACED", "PAYMENT_RECEIVED"])
        finally:
            await _no_activity_left(handle)
            down.stop()
        await handle.terminate("test done")


async def test_an_address_refused_for_good_is_not_tried_again(
    env: WorkflowEnvironment,
    client: Client,
    pool: asyncpg.Pool,
    inbox: SmtpInbox,
    mail_queue: str,
) -> None:
    rental = await make_rental(pool)
    gone = f"gone-{uuid.uuid4().hex[:8]}@example.com"
    await pool.execute("UPDATE users SET email = $2 WHERE id = $1", rental.user_id, gone)
    data = await booking_input(env, rental, hold_seconds=600, lease_days=20)
    handle, held = await start_and_hold(client, data, mail_queue)
    paid = await handle.execute_update(ApartmentBookingWorkflow.pay, payment_for(held))
    assert paid.status == "APPROVED"
    rows = await eventually(
        lambda: _notifications(pool, rental.user_id),
        lambda found: len(found) == 2 and all(r["status"] == "FAILED" for r in found),
        what="both mails refused",
    )
    assert [r["attempts"] for r in rows] == [1, 1]
    assert all("550" in r["last_error"] for r in rows)
    assert inbox.deliveries == []
    await _no_activity_left(handle)
    await handle.terminate("test done")
