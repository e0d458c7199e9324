"""Issue 24 over real HTTP: a lease's invoices and paying one (payRent), through the real
worker, Temporal dev server and Postgres."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from tests.e2e.helpers import (
    PAY,
    RESERVE,
    E2EStack,
    Gql,
    create_apartment,
    create_user,
    days_ahead,
    error_types,
)

pytestmark = pytest.mark.e2e

INVOICES = """query ($b: ID!) { getRentInvoices(bookingId: $b) {
  id bookingId periodStart periodEnd dueDate rent lateFee amountDue currency status paidAt
  paymentReference } }"""
PAY_RENT = """mutation ($input: PayRentInput!) { payRent(input: $input) {
  id status amountDue paymentReference paidAt } }"""


async def test_a_lease_lists_its_invoices_and_one_is_paid_ahead(stack: E2EStack) -> None:
    async with stack.api.client(stack.key) as http:
        admin = Gql(http)
        _, apartment = await create_apartment(admin, rent=90_000)
        tenant = await create_user(admin)
        other = await create_user(admin)
        body = await admin(
            RESERVE,
            {
                "input": {
                    "apartmentId": apartment,
                    "userId": tenant,
                    "startDate": days_ahead(0),
                    "endDate": days_ahead(45),
                }
            },
        )
        booking = body["data"]["reserveApartment"]
        paid = await admin(
            PAY,
            {
                "input": {
                    "bookingId": booking["id"],
                    "amount": booking["amountDue"],
                    "currency": "EUR",
                    "paymentReference": f"ref-{uuid.uuid4()}",
                }
            },
        )
        assert paid["data"]["payBooking"]["bookingStatus"] == "APPROVED", paid

        invoices: list[dict[str, Any]] = []
        for _ in range(100):
            invoices = (await admin(INVOICES, {"b": booking["id"]}))["data"]["getRentInvoices"]
            if len(invoices) == 2:
                break
            await asyncio.sleep(0.1)
        assert [(i["status"], i["periodStart"], i["currency"]) for i in invoices] == [
            ("PAID", days_ahead(0), "EUR"),
            ("SCHEDULED", invoices[1]["periodStart"], "EUR"),
        ]
        second = invoices[1]
        assert second["periodEnd"] == days_ahead(45) and second["amountDue"] == second["rent"]

    # The tenant pays the second ahead of its time; a wrong amount first is refused.
    async with stack.api.client(stack.bearer(tenant, "Tenants")) as http:
        gql = Gql(http)
        wrong = await gql(
            PAY_RENT,
            {
                "input": {
                    "invoiceId": second["id"],
                    "amount": second["amountDue"] + 1,
                    "currency": "EUR",
                    "paymentReference": "rent-2",
                }
            },
        )
        assert error_types(wrong) == ["PaymentRejected"], wrong
        pay = {
            "input": {
                "invoiceId": second["id"],
                "amount": second["amountDue"],
                "currency": "EUR",
                "paymentReference": "rent-2",
            }
        }
        done = await gql(PAY_RENT, pay)
        assert done["data"]["payRent"]["status"] == "PAID", done
        again = await gql(PAY_RENT, pay)
        assert again["data"]["payRent"] == done["data"]["payRent"]
        listed = (await gql(INVOICES, {"b": booking["id"]}))["data"]["getRentInvoices"]
        assert [i["status"] for i in listed] == ["PAID", "PAID"]

    # Another tenant sees none of it.
    async with stack.api.client(stack.bearer(other, "Tenants")) as http:
        refused = await Gql(http)(INVOICES, {"b": booking["id"]})
        assert error_types(refused) == ["Unauthorized"], refused
