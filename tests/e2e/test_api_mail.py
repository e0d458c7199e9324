"""Issue 25 over real HTTP: each message a tenant gets, through the real API, worker, Temporal
dev server, Postgres and a real SMTP server (the one `booking dev` runs, keeping one file per
message); and `booking dev`'s mailbox page in Chromium.

The rent steps' own timers (issued, due, overdue) and an offer's lapse take days; they are
mailed by the same path and checked on the time-skipping server (tests/test_workflow_mail.py).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from booking.mail import money
from booking.maildir import StoredMail, messages
from booking.webhook_signing import SIGNATURE_HEADER, webhook_signature
from tests.e2e.helpers import (
    RESERVE,
    WEBHOOK_SECRET,
    E2EStack,
    Gql,
    create_apartment,
    create_user,
    days_ahead,
    paid_lease,
    reserve_input,
    shot,
)
from tests.helpers import eventually

pytestmark = pytest.mark.e2e

JOIN = """mutation ($input: JoinWaitlistInput!) { joinWaitlist(input: $input) { id status } }"""
INVOICES = """query ($b: ID!) { getRentInvoices(bookingId: $b) { id status amountDue } }"""
PAY_RENT = """mutation ($input: PayRentInput!) { payRent(input: $input) { id status } }"""
RENEW_LEASE = """mutation ($input: RenewLeaseInput!) { renewLease(input: $input) { id endDate } }"""
END_LEASE = """mutation ($input: EndLeaseInput!) { endLease(input: $input) { id endDate } }"""


async def _webhook(stack: E2EStack, payment: dict[str, Any]) -> int:
    body = json.dumps({"id": f"evt-{uuid.uuid4()}", **payment}).encode()
    headers = {SIGNATURE_HEADER: webhook_signature(WEBHOOK_SECRET, body, int(time.time()))}
    async with httpx.AsyncClient(base_url=stack.api.url) as http:
        response = await http.post("/webhooks/payments", content=body, headers=headers)
    return response.status_code


async def _mail(stack: E2EStack, user: str, subjects: list[str]) -> list[StoredMail]:
    """Wait until the tenant's mailbox holds one message per subject (a part of each), in
    order; each is the notification's own message (its Message-ID) and was SENT."""

    async def kept() -> list[StoredMail]:
        return sorted(
            (m for m in messages(stack.mailbox_dir) if m.to == f"{user}@example.com"),
            key=lambda m: m.message_id,
        )

    found = await eventually(
        kept,
        lambda got: len(got) == len(subjects),
        what=f"{subjects} mailed to {user}",
        within=30,
    )
    rows = await stack.pool.fetch(
        "SELECT kind, status, message_id FROM notifications WHERE user_id = $1 ORDER BY id",
        user,
    )
    assert [r["status"] for r in rows] == ["SENT"] * len(subjects), rows
    by_id = {m.message_id: m for m in found}
    ordered = [by_id[r["message_id"]] for r in rows]
    for mail, subject in zip(ordered, subjects, strict=True):
        assert subject in mail.subject, (mail.subject, subject)
        assert mail.html is not None and mail.text
    return ordered


async def test_a_hold_its_reminder_expiry_refund_and_the_offer_it_frees_are_mailed(
    stack: E2EStack, admin: Gql
) -> None:
    _, apartment = await create_apartment(admin, rent=90_000)
    tenant, waiter = await create_user(admin), await create_user(admin)
    stay = {"apartmentId": apartment, "startDate": days_ahead(3), "endDate": days_ahead(10)}
    body = await admin(RESERVE, {"input": {**stay, "userId": tenant, "holdSeconds": 8}})
    booking = body["data"]["reserveApartment"]
    due = money(booking["amountDue"], "EUR")
    joined = await admin(JOIN, {"input": {**stay, "userId": waiter}})
    assert joined["data"]["joinWaitlist"]["status"] == "WAITING", joined

    # Placed at once; "ends soon" 2 s before its end (BOOKING_HOLD_REMINDER_SECONDS); ended.
    placed, ending, ended = await _mail(stack, tenant, ["Your hold on", "ends soon", "has ended"])
    for mail in (placed, ending):
        assert due in mail.text and apartment in mail.text
        assert days_ahead(3) in mail.text and days_ahead(10) in mail.text
    assert "free again" in ended.text
    # The nights went to the tenant in line, who is told what to pay and by when.
    (offered,) = await _mail(stack, waiter, ["is offered to you"])
    assert due in offered.text and "next tenant in line" in offered.text

    # Money after the end: refunded, and the tenant told why.
    reference = f"late-{uuid.uuid4().hex[:8]}"
    late = {
        "bookingId": booking["id"],
        "amount": booking["amountDue"],
        "currency": "EUR",
        "paymentReference": reference,
    }
    assert await _webhook(stack, late) == 202
    *_, refunded = await _mail(
        stack, tenant, ["Your hold on", "ends soon", "has ended", "Payment refunded"]
    )
    assert reference in refunded.text and due in refunded.text
    assert "after the hold had ended" in refunded.text


async def test_a_lease_mails_its_receipt_rent_paid_ahead_renewal_and_notice(
    stack: E2EStack, admin: Gql
) -> None:
    _, apartment = await create_apartment(admin, rent=90_000)
    tenant = await create_user(admin)
    reference = f"ref-{uuid.uuid4().hex[:8]}"
    booking = await paid_lease(admin, tenant, apartment, 45, reference)
    _, receipt = await _mail(stack, tenant, ["Your hold on", "Payment received"])
    assert reference in receipt.text and money(booking["amountDue"], "EUR") in receipt.text

    invoices = await eventually(
        lambda: admin(INVOICES, {"b": booking["id"]}),
        lambda got: len(got["data"]["getRentInvoices"]) == 2,
        what="the lease's invoices",
    )
    second = invoices["data"]["getRentInvoices"][1]
    payment = {
        "invoiceId": second["id"],
        "amount": second["amountDue"],
        "currency": "EUR",
        "paymentReference": "rent-ahead",
    }
    rent = await admin(PAY_RENT, {"input": payment})
    assert rent["data"]["payRent"]["status"] == "PAID", rent
    renewed = await admin(
        RENEW_LEASE, {"input": {"bookingId": booking["id"], "endDate": days_ahead(60)}}
    )
    assert renewed["data"]["renewLease"]["endDate"] == days_ahead(60), renewed
    ended = await admin(
        END_LEASE, {"input": {"bookingId": booking["id"], "endDate": days_ahead(20)}}
    )
    assert ended["data"]["endLease"]["endDate"] == days_ahead(20), ended
    kinds = ["Your hold on", "Payment received", "Rent received", "is renewed", "ends earlier"]
    *_, rent_mail, renewal, shortened = await _mail(stack, tenant, kinds)
    assert "rent-ahead" in rent_mail.text and money(second["amountDue"], "EUR") in rent_mail.text
    assert f"now ends on {days_ahead(60)}" in renewal.text
    assert f"now ends on {days_ahead(20)}" in shortened.text
    # The rent paid ahead for nights the notice dropped is refunded, and the tenant told.
    assert "refunded" in shortened.text
    # Operators see the outbox in the API's metrics.
    metrics = (await admin.http.get("/metrics")).text
    sent = re.search(r'^booking_notifications\{status="SENT"\} (\S+)$', metrics, re.M)
    assert sent is not None and float(sent.group(1)) >= len(kinds), metrics[-2000:]
    assert "booking_notifications_oldest_pending_seconds" in metrics


async def test_the_dev_mailbox_page_lists_and_shows_a_message(
    stack: E2EStack, admin: Gql, page: Page
) -> None:
    """`booking dev`'s mailbox page (a dev-mode API given the mailbox's directory), in Chromium:
    the list, one message's headers and its HTML as the tenant sees it (in a sandboxed frame)."""
    _, apartment = await create_apartment(admin, rent=70_000)
    tenant = await create_user(admin)
    stay = reserve_input(apartment, tenant, startDate=days_ahead(5), endDate=days_ahead(12))
    body = await admin(RESERVE, stay)
    booking = body["data"]["reserveApartment"]
    (placed,) = await _mail(stack, tenant, ["Your hold on"])
    dev = await stack.extra_api(
        "api-mailbox", BOOKING_DEV_MODE="true", BOOKING_DEV_MAILBOX_DIR=str(stack.mailbox_dir)
    )
    try:
        await page.goto(f"{dev.url}/dev/mailbox")
        row = page.get_by_role("row").filter(has_text=f"{tenant}@example.com")
        await expect(row).to_contain_text(placed.subject)
        await shot(page, "mailbox-list")
        await row.get_by_role("link").click()
        await expect(page.get_by_role("heading", level=1)).to_have_text(placed.subject)
        await expect(page.locator("table")).to_contain_text(placed.message_id)
        frame = page.frame_locator("iframe[title=message]")
        await expect(frame.locator("body")).to_contain_text(apartment)
        await expect(frame.locator("body")).to_contain_text(money(booking["amountDue"], "EUR"))
        await expect(page.locator("pre")).to_contain_text(days_ahead(12))
        await shot(page, "mailbox-message")
        async with httpx.AsyncClient(base_url=dev.url) as http:
            listed = (await http.get("/dev/mailbox/messages.json")).json()
            assert placed.message_id in {m["messageId"] for m in listed}
            raw = await http.get(f"/dev/mailbox/{placed.name}/html")
            assert "sandbox" in raw.headers["content-security-policy"]
            assert (await http.get("/dev/mailbox/../../etc/passwd")).status_code == 404
            missing = await http.get("/dev/mailbox/0123456789abcdef01234567/html")
            assert missing.status_code == 404
        # Not served by an API outside dev mode.
        async with httpx.AsyncClient(base_url=stack.api.url) as http:
            assert (await http.get("/dev/mailbox")).status_code == 404
    finally:
        stack.stop_api("api-mailbox")
