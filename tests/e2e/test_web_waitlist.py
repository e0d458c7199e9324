"""The tenant page's hold extension and waiting list in Debian's Chromium, against the real
stack (the API over HTTP and WebSockets, the worker, the Temporal dev server, Postgres)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from playwright.async_api import Page, expect

from tests.e2e.helpers import (
    TIMEOUT_MS,
    E2EStack,
    Gql,
    days_ahead,
    error_types,
    open_signed_in,
    shot,
)
from tests.helpers import insert_user, make_rental

pytestmark = pytest.mark.e2e

RESERVE = """mutation R($input: ReserveApartmentInput!) {
  reserveApartment(input: $input) { id bookingStatus }
}"""
CANCEL = """mutation C($id: ID!) { cancelBooking(id: $id) { id bookingStatus } }"""


async def test_extend_the_hold_once_from_the_page(stack: E2EStack, page: Page) -> None:
    rental = await make_rental(stack.pool)
    await open_signed_in(page, stack, rental)
    apartment = page.locator(f'tr[data-apartment-id="{rental.apartment_id}"]')
    await expect(apartment).to_have_attribute("data-status", "VACANT", timeout=TIMEOUT_MS)
    await apartment.get_by_role("button", name="Reserve").click()
    await expect(page.get_by_test_id("booking-status")).to_have_text("PENDING", timeout=TIMEOUT_MS)
    booking_id = await page.get_by_test_id("booking-id").inner_text()
    before = await stack.pool.fetchval(
        "SELECT hold_expires_at FROM bookings WHERE id = $1", booking_id
    )
    remaining = int(await page.get_by_test_id("countdown").get_attribute("data-remaining") or 0)

    extend = page.get_by_test_id("extend-hold")
    await expect(extend).to_be_visible()
    await extend.click()
    await expect(page.get_by_test_id("booking-extensions")).to_have_text("1", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("message")).to_contain_text("Hold extended")
    row = await stack.pool.fetchrow(
        "SELECT hold_expires_at, hold_extensions FROM bookings WHERE id = $1", booking_id
    )
    assert row is not None and row["hold_extensions"] == 1
    assert row["hold_expires_at"] - before == timedelta(seconds=300)
    # The countdown follows the new deadline.
    later = int(await page.get_by_test_id("countdown").get_attribute("data-remaining") or 0)
    assert later > remaining + 200
    await shot(page, "6-extended")

    # The one extension allowed is used: the server says so and the button goes away.
    await extend.click()
    await expect(page.get_by_test_id("message")).to_contain_text("cannot be extended")
    await expect(extend).to_be_hidden()
    assert (
        await stack.pool.fetchval("SELECT hold_extensions FROM bookings WHERE id = $1", booking_id)
        == 1
    )


async def test_join_the_waiting_list_and_pay_the_offer_live(stack: E2EStack, page: Page) -> None:
    rental = await make_rental(stack.pool)
    holder = await insert_user(stack.pool)
    async with stack.api.client(stack.key) as http:
        admin = Gql(http)
        held = await admin(
            RESERVE,
            {
                "input": {
                    "apartmentId": rental.apartment_id,
                    "userId": holder,
                    # Covers the page's default stay (from tonight, for a month).
                    "startDate": days_ahead(0),
                    "endDate": days_ahead(181),
                }
            },
        )
        assert "errors" not in held, held
        booking_id = held["data"]["reserveApartment"]["id"]

        await open_signed_in(page, stack, rental)
        apartment = page.locator(f'tr[data-apartment-id="{rental.apartment_id}"]')
        await expect(apartment).to_have_attribute("data-status", "RESERVED", timeout=TIMEOUT_MS)
        join = apartment.get_by_role("button", name="Join the waiting list")
        await join.click()
        entry_status = page.get_by_test_id("entry-status")
        await expect(entry_status).to_have_text("WAITING", timeout=TIMEOUT_MS)
        await expect(page.get_by_test_id("entry-position")).to_have_text("1")
        await expect(join).to_be_disabled(timeout=TIMEOUT_MS)
        await shot(page, "7-waiting")

        # Elsewhere, the holder lets go: the page hears of its offer with no click.
        cancelled = await admin(CANCEL, {"id": booking_id})
        assert error_types(cancelled) == [], cancelled
        await expect(entry_status).to_have_text("OFFERED", timeout=TIMEOUT_MS)
        await expect(page.get_by_test_id("message")).to_contain_text("offered to you")
        status = page.get_by_test_id("booking-status")
        await expect(status).to_have_text("PENDING", timeout=TIMEOUT_MS)
        offer_id = await page.get_by_test_id("booking-id").inner_text()
        assert offer_id != booking_id
        # An offer's hold is a full offer period (a day by default), not the page's default.
        expires = await stack.pool.fetchval(
            "SELECT hold_expires_at FROM bookings WHERE id = $1", offer_id
        )
        assert expires - datetime.now(expires.tzinfo) > timedelta(hours=23)
        await shot(page, "8-offered")

        await page.get_by_test_id("pay").click()
        await expect(status).to_have_text("APPROVED", timeout=TIMEOUT_MS)
        await expect(entry_status).to_have_text("BOOKED", timeout=TIMEOUT_MS)
        await expect(page.get_by_test_id("leave-waitlist")).to_be_hidden()
        await expect(apartment).to_have_attribute("data-status", "OCCUPIED", timeout=TIMEOUT_MS)
        owner = await stack.pool.fetchval(
            "SELECT tenant_id FROM apartments_on((now() AT TIME ZONE 'UTC')::date) WHERE id = $1",
            rental.apartment_id,
        )
        assert owner == rental.user_id
        await shot(page, "9-offer-paid")


async def test_leave_the_waiting_list_from_the_page(stack: E2EStack, page: Page) -> None:
    rental = await make_rental(stack.pool)
    holder = await insert_user(stack.pool)
    async with stack.api.client(stack.key) as http:
        held = await Gql(http)(
            RESERVE,
            {
                "input": {
                    "apartmentId": rental.apartment_id,
                    "userId": holder,
                    # Covers the page's default stay (from tonight, for a month).
                    "startDate": days_ahead(0),
                    "endDate": days_ahead(181),
                }
            },
        )
        assert "errors" not in held, held
    await open_signed_in(page, stack, rental)
    apartment = page.locator(f'tr[data-apartment-id="{rental.apartment_id}"]')
    await apartment.get_by_role("button", name="Join the waiting list").click()
    await expect(page.get_by_test_id("entry-status")).to_have_text("WAITING", timeout=TIMEOUT_MS)
    await page.get_by_test_id("leave-waitlist").click()
    await expect(page.get_by_test_id("entry-status")).to_have_text("LEFT", timeout=TIMEOUT_MS)
    await expect(page.get_by_test_id("leave-waitlist")).to_be_hidden()
    # Free to join again.
    await expect(apartment.get_by_role("button", name="Join the waiting list")).to_be_enabled(
        timeout=TIMEOUT_MS
    )
    statuses = await stack.pool.fetch(
        "SELECT status FROM waitlist_entries WHERE apartment_id = $1", rental.apartment_id
    )
    assert [r["status"] for r in statuses] == ["LEFT"]
