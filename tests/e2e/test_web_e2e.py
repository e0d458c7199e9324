"""The tenant page in a real browser (Debian's Chromium, headless, via Playwright)
against the real stack: the API over HTTP, the worker, the Temporal dev server
and Postgres. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import re
import time
from datetime import date, timedelta

import pytest
from playwright.async_api import Page, expect

from tests.e2e.helpers import TIMEOUT_MS, E2EStack, Gql, open_signed_in, shot
from tests.helpers import insert_user, make_rental

pytestmark = pytest.mark.e2e

RESERVE = """mutation R($input: ReserveApartmentInput!) {
  reserveApartment(input: $input) { id bookingStatus amountDue currency }
}"""
PAY = """mutation P($input: PayBookingInput!) { payBooking(input: $input) { id bookingStatus } }"""


async def apartment_status(stack: E2EStack, apartment_id: str) -> str:
    """The status for today, as the API reads it."""
    status: str = await stack.pool.fetchval(
        "SELECT apartment_status FROM apartments_on((now() AT TIME ZONE 'UTC')::date) "
        "WHERE id = $1",
        apartment_id,
    )
    return status


async def test_reserve_pay_and_see_approved(stack: E2EStack, page: Page) -> None:
    rental = await make_rental(stack.pool, monthly_rent=98_765)
    await open_signed_in(page, stack, rental)
    apartment = page.locator(f'tr[data-apartment-id="{rental.apartment_id}"]')
    await expect(apartment).to_have_attribute("data-status", "VACANT", timeout=TIMEOUT_MS)
    await expect(apartment).to_contain_text("987.65")
    await shot(page, "1-catalogue")

    await apartment.get_by_role("button", name="Reserve").click()
    status = page.get_by_test_id("booking-status")
    await expect(status).to_have_text("PENDING", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("countdown")).to_have_text(re.compile(r"^\d\d:\d\d$"))
    await expect(apartment).to_have_attribute("data-status", "RESERVED", timeout=TIMEOUT_MS)
    assert await apartment_status(stack, rental.apartment_id) == "RESERVED"
    # The countdown runs: its value goes down.
    first = int(await page.get_by_test_id("countdown").get_attribute("data-remaining") or "0")
    await page.wait_for_timeout(1300)
    second = int(await page.get_by_test_id("countdown").get_attribute("data-remaining") or "0")
    assert 0 < second < first <= 60
    await expect(page.get_by_test_id("cancel")).to_be_visible()
    await shot(page, "2-reserved")

    await page.get_by_test_id("pay").click()
    await expect(status).to_have_text("APPROVED", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("message")).to_contain_text("Payment received")
    await expect(apartment).to_have_attribute("data-status", "OCCUPIED", timeout=TIMEOUT_MS)
    # A paid stay is not cancelled (the API refuses it): the page no longer offers it.
    await expect(page.get_by_test_id("cancel")).to_be_hidden()
    booking_id = await page.get_by_test_id("booking-id").inner_text()
    row_ = await stack.pool.fetchrow(
        "SELECT booking_status, amount_due FROM bookings WHERE id = $1", booking_id
    )
    assert row_ is not None
    assert row_["booking_status"] == "APPROVED"
    assert row_["amount_due"] > 0
    assert await apartment_status(stack, rental.apartment_id) == "OCCUPIED"
    await shot(page, "3-approved")


async def test_short_hold_expires_and_the_apartment_is_free_again(
    stack: E2EStack, page: Page
) -> None:
    rental = await make_rental(stack.pool)
    await open_signed_in(page, stack, rental, "&hold=2")
    apartment = page.locator(f'tr[data-apartment-id="{rental.apartment_id}"]')
    await expect(apartment).to_have_attribute("data-status", "VACANT", timeout=TIMEOUT_MS)
    await apartment.get_by_role("button", name="Reserve").click()
    status = page.get_by_test_id("booking-status")
    await expect(status).to_have_text("PENDING", timeout=TIMEOUT_MS)
    await shot(page, "4-short-hold")

    # The durable timer releases the hold; the subscription brings CANCELLED.
    await expect(status).to_have_text("CANCELLED", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("message")).to_contain_text("hold expired")
    await expect(page.get_by_test_id("pay-form")).to_be_hidden()
    await expect(apartment).to_have_attribute("data-status", "VACANT", timeout=TIMEOUT_MS)
    await expect(apartment.get_by_role("button", name="Reserve")).to_be_enabled()
    assert await apartment_status(stack, rental.apartment_id) == "VACANT"
    booking_id = await page.get_by_test_id("booking-id").inner_text()
    reason = await stack.pool.fetchval(
        "SELECT cancellation_reason FROM bookings WHERE id = $1", booking_id
    )
    assert reason == "EXPIRED"
    await shot(page, "5-expired")


async def test_status_follows_a_payment_made_elsewhere(stack: E2EStack, page: Page) -> None:
    """The page's status changes with no click: a payment from another client
    (through the second API process) arrives over the subscription."""
    rental = await make_rental(stack.pool)
    await open_signed_in(page, stack, rental)
    apartment = page.locator(f'tr[data-apartment-id="{rental.apartment_id}"]')
    await expect(apartment).to_have_attribute("data-status", "VACANT", timeout=TIMEOUT_MS)
    await apartment.get_by_role("button", name="Reserve").click()
    status = page.get_by_test_id("booking-status")
    await expect(status).to_have_text("PENDING", timeout=TIMEOUT_MS)
    await expect(page.locator("#live.connected")).to_be_visible(timeout=TIMEOUT_MS)
    booking_id = await page.get_by_test_id("booking-id").inner_text()
    row_ = await stack.pool.fetchrow(
        "SELECT amount_due, currency FROM bookings WHERE id = $1", booking_id
    )
    assert row_ is not None
    async with stack.api2.client(stack.key) as http:
        response = await http.post(
            "/graphql",
            json={
                "query": PAY,
                "variables": {
                    "input": {
                        "bookingId": booking_id,
                        "amount": row_["amount_due"],
                        "currency": row_["currency"],
                        "paymentReference": f"elsewhere-{booking_id}",
                    }
                },
            },
        )
    assert response.json()["data"]["payBooking"]["bookingStatus"] == "APPROVED"
    started = time.monotonic()
    await expect(status).to_have_text("APPROVED", timeout=TIMEOUT_MS)
    assert time.monotonic() - started < 10  # pushed, not polled: the page never re-reads it
    await expect(page.get_by_test_id("message")).to_contain_text("Payment received")
    await shot(page, "6-paid-elsewhere")


async def test_apartment_just_taken_is_explained(stack: E2EStack, page: Page) -> None:
    rental = await make_rental(stack.pool)
    await open_signed_in(page, stack, rental)
    apartment = page.locator(f'tr[data-apartment-id="{rental.apartment_id}"]')
    await expect(apartment).to_have_attribute("data-status", "VACANT", timeout=TIMEOUT_MS)

    # Someone else holds it while this page still shows it VACANT.
    other = await make_rental(stack.pool)
    start = date.today()  # the page's own default stay starts tonight too
    async with stack.api.client(stack.key) as http:
        taken = await http.post(
            "/graphql",
            json={
                "query": RESERVE,
                "variables": {
                    "input": {
                        "apartmentId": rental.apartment_id,
                        "userId": other.user_id,
                        "startDate": start.isoformat(),
                        "endDate": (start + timedelta(days=30)).isoformat(),
                    }
                },
            },
        )
    assert taken.json()["data"]["reserveApartment"]["bookingStatus"] == "PENDING"
    await expect(apartment).to_have_attribute("data-status", "VACANT")  # still the old view

    await apartment.get_by_role("button", name="Reserve").click()
    message = page.get_by_test_id("message")
    await expect(message).to_contain_text("just taken", timeout=TIMEOUT_MS)
    await expect(message).to_have_attribute("data-kind", "error")
    await expect(page.get_by_test_id("booking")).to_be_hidden()
    await expect(apartment).to_have_attribute("data-status", "RESERVED", timeout=TIMEOUT_MS)
    # A taken apartment cannot be reserved; it can be waited for.
    await expect(apartment.get_by_role("button", name="Reserve")).to_have_count(0)
    await expect(apartment.get_by_role("button", name="Join the waiting list")).to_be_enabled()
    await shot(page, "7-just-taken")


async def test_the_calendar_picks_dates_and_the_search_finds_them(
    stack: E2EStack, page: Page
) -> None:
    """The tenant page on ranges: an apartment held for the page's default stay is taken for
    those dates (join the waiting list), its calendar shows the held nights and the free ones
    after; picking a free range sets the dates, and the apartment can be reserved for them."""
    rental = await make_rental(stack.pool)
    today = date.today()
    holder = await insert_user(stack.pool)
    async with stack.api.client(stack.key) as http:
        held = await Gql(http)(
            RESERVE,
            {
                "input": {
                    "apartmentId": rental.apartment_id,
                    "userId": holder,
                    "startDate": today.isoformat(),
                    "endDate": (today + timedelta(days=45)).isoformat(),
                }
            },
        )
        assert "errors" not in held, held

    await open_signed_in(page, stack, rental)
    apartment = page.locator(f'tr[data-apartment-id="{rental.apartment_id}"]')
    await expect(apartment).to_have_attribute("data-free", "false", timeout=TIMEOUT_MS)
    await expect(apartment).to_have_attribute("data-status", "RESERVED")
    await expect(apartment.locator(".available-from")).to_have_text(
        (today + timedelta(days=45)).isoformat()
    )
    await expect(apartment.get_by_role("button", name="Join the waiting list")).to_be_enabled()

    await apartment.get_by_role("button", name="Calendar").click()
    ranges = page.get_by_test_id("calendar-ranges").locator("li")
    await expect(ranges.first).to_have_attribute("data-state", "HELD", timeout=TIMEOUT_MS)
    await expect(ranges.nth(1)).to_have_attribute("data-state", "FREE")
    await expect(ranges.nth(1)).to_have_attribute(
        "data-start", (today + timedelta(days=45)).isoformat()
    )
    await shot(page, "calendar")

    # Pick the free range: the dates move to it, and the apartment is free for them.
    await ranges.nth(1).click()
    await expect(page.get_by_test_id("start-date")).to_have_value(
        (today + timedelta(days=45)).isoformat()
    )
    await expect(page.get_by_test_id("end-date")).to_have_value(
        (today + timedelta(days=75)).isoformat()
    )
    await expect(apartment).to_have_attribute("data-free", "true", timeout=TIMEOUT_MS)
    await apartment.get_by_role("button", name="Reserve").click()
    await expect(page.get_by_test_id("booking-status")).to_have_text("PENDING", timeout=TIMEOUT_MS)
    row = await stack.pool.fetchrow(
        "SELECT start_date, end_date FROM bookings WHERE apartment_id = $1 AND user_id = $2",
        rental.apartment_id,
        rental.user_id,
    )
    assert row is not None
    assert (row["start_date"], row["end_date"]) == (
        today + timedelta(days=45),
        today + timedelta(days=75),
    )

    # The search across buildings lists only apartments free for the dates: not this one
    # for the held nights.
    await page.get_by_test_id("start-date").fill(today.isoformat())
    await page.get_by_test_id("end-date").fill((today + timedelta(days=10)).isoformat())
    await expect(apartment).to_have_attribute("data-free", "false", timeout=TIMEOUT_MS)
    await page.get_by_test_id("search").click()
    await expect(apartment).to_have_count(0, timeout=TIMEOUT_MS)
    listed = page.locator("#apartments tbody tr")
    await expect(listed.first).to_have_attribute("data-free", "true")


async def test_a_lease_shows_its_invoices_and_one_is_paid_ahead(
    stack: E2EStack, page: Page
) -> None:
    """A stay of 75 nights is a lease: once paid, the page lists its rent invoices (the
    first PAID by the booking's payment) and pays the next one ahead of its time."""
    rental = await make_rental(stack.pool, monthly_rent=120_000)
    await open_signed_in(page, stack, rental)
    start = await page.get_by_test_id("start-date").input_value()
    end = (date.fromisoformat(start) + timedelta(days=75)).isoformat()
    await page.get_by_test_id("end-date").fill(end)
    await page.get_by_test_id("end-date").dispatch_event("change")
    apartment = page.locator(f'tr[data-apartment-id="{rental.apartment_id}"]')
    await apartment.get_by_role("button", name="Reserve").click()
    await expect(page.get_by_test_id("booking-status")).to_have_text("PENDING", timeout=TIMEOUT_MS)
    await page.get_by_test_id("pay").click()
    await expect(page.get_by_test_id("booking-status")).to_have_text("APPROVED", timeout=TIMEOUT_MS)

    rows = page.get_by_test_id("invoice-row")
    await expect(rows).to_have_count(3, timeout=TIMEOUT_MS)
    await expect(rows.nth(0)).to_have_attribute("data-status", "PAID")
    await expect(rows.nth(1)).to_have_attribute("data-status", "SCHEDULED")
    await expect(rows.nth(1)).to_contain_text("1,200.00")
    await shot(page, "lease-invoices")
    await rows.nth(1).get_by_role("button", name="Pay ahead").click()
    await expect(rows.nth(1)).to_have_attribute("data-status", "PAID", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("message")).to_contain_text("paid")
    invoice_id = await rows.nth(1).get_attribute("data-invoice-id")
    paid = await stack.pool.fetchrow(
        "SELECT status, payment_reference FROM rent_invoices WHERE id = $1", invoice_id
    )
    assert paid is not None and paid["status"] == "PAID"
    assert paid["payment_reference"] == f"web-rent-{invoice_id}"
    await shot(page, "lease-invoice-paid")
