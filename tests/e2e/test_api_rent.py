"""Issue 24 over real HTTP: a lease's invoices and paying one (payRent), through the real
worker, Temporal dev server and Postgres."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, date, datetime
from datetime import time as midnight_time
from typing import Any

import httpx
import pytest

from booking.search_attributes import NEXT_RENT_DUE
from booking.webhook_signing import SIGNATURE_HEADER, webhook_signature
from tests.e2e.helpers import (
    PAY,
    RESERVE,
    SUBSCRIBERS,
    WEBHOOK_SECRET,
    E2EStack,
    Gql,
    create_apartment,
    create_user,
    days_ahead,
    error_types,
    paid_lease,
)
from tests.helpers import eventually

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

        # Operators find the lease by its rent state on the real server's visibility.
        workflow_id = f"booking-{booking['id']}"

        async def visible(query: str) -> list[str]:
            return [e.id async for e in stack.client.list_workflows(query)]

        found = await eventually(
            lambda: visible(f"WorkflowId = '{workflow_id}' AND RentStatus = 'CURRENT'"),
            lambda ids: ids == [workflow_id],
            what="the lease listed by RentStatus",
        )
        attributes = (
            await stack.client.get_workflow_handle(workflow_id).describe()
        ).typed_search_attributes
        assert attributes.get(NEXT_RENT_DUE) == datetime.combine(
            date.fromisoformat(second["dueDate"]), midnight_time.min, tzinfo=UTC
        )
        assert found == [workflow_id]

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

    # Another tenant can do nothing with it: read, pay, give notice, renew, or watch it.
    async with stack.api.client(stack.bearer(other, "Tenants")) as http:
        gql = Gql(http)
        refused = await gql(INVOICES, {"b": booking["id"]})
        assert error_types(refused) == ["Unauthorized"], refused
        pay_theirs = dict(pay["input"], paymentReference="not-mine")
        for operation, variables in (
            (PAY_RENT, {"input": pay_theirs}),
            (END_LEASE, {"input": {"bookingId": booking["id"], "endDate": days_ahead(40)}}),
            (RENEW_LEASE, {"input": {"bookingId": booking["id"], "endDate": days_ahead(60)}}),
        ):
            body = await gql(operation, variables)
            assert error_types(body) == ["Unauthorized"], (operation, body)
    rows = await stack.pool.fetch(
        "SELECT end_date, (SELECT count(*) FROM rent_invoices WHERE booking_id = b.id) AS n "
        "FROM bookings b WHERE id = $1",
        booking["id"],
    )
    assert [(r["end_date"].isoformat(), r["n"]) for r in rows] == [(days_ahead(45), 2)]
    token = stack.token(other, ["Tenants"])
    for name, subscribe in SUBSCRIBERS.items():
        ws, follow = await subscribe(stack.api.ws_url, token, ON_INVOICE, {"b": booking["id"]})
        async with ws:
            answer = await follow(ws)
        assert [e.get("errorType") for e in answer["errors"]] == ["Unauthorized"], (name, answer)


END_LEASE = """mutation ($input: EndLeaseInput!) { endLease(input: $input) {
  id bookingStatus startDate endDate } }"""
RENEW_LEASE = """mutation ($input: RenewLeaseInput!) { renewLease(input: $input) {
  id bookingStatus startDate endDate } }"""
ON_INVOICE = """subscription S($b: ID!) { onRentInvoiceChanged(bookingId: $b) {
  id bookingId periodStart periodEnd rent status paymentReference } }"""


async def _webhook(
    stack: E2EStack, booking_id: str, invoice: dict[str, Any], amount: int, reference: str
) -> int:
    body = json.dumps(
        {
            "id": f"evt-{uuid.uuid4()}",
            "bookingId": booking_id,
            "invoiceId": invoice["id"],
            "amount": amount,
            "currency": "EUR",
            "paymentReference": reference,
        }
    ).encode()
    headers = {SIGNATURE_HEADER: webhook_signature(WEBHOOK_SECRET, body, int(time.time()))}
    async with httpx.AsyncClient(base_url=stack.api.url) as http:
        response = await http.post("/webhooks/payments", content=body, headers=headers)
    return response.status_code


async def test_renewal_notice_webhook_rent_and_live_invoices_on_every_protocol(
    stack: E2EStack,
) -> None:
    """renewLease and endLease over HTTP, a tenant's notice period and an Admin's any-day end;
    the webhook pays an invoice ahead and refunds money for a VOID one; every change reaches
    subscribers of onRentInvoiceChanged on all three WebSocket protocols."""
    async with stack.api.client(stack.key) as http:
        admin = Gql(http)
        _, apartment = await create_apartment(admin, rent=60_000)
        tenant = await create_user(admin)
        booking = await paid_lease(admin, tenant, apartment, 45)
    token = stack.token(tenant, ["Tenants"])
    headers = stack.bearer(tenant, "Tenants")
    invoices = await eventually(
        lambda: _list(stack, headers, booking["id"]),
        lambda rows: len(rows) == 2,
        what="the lease's invoices written",
    )
    subscribers = []
    try:
        for subscribe in SUBSCRIBERS.values():
            subscribers.append(
                await subscribe(stack.api2.ws_url, token, ON_INVOICE, {"b": booking["id"]})
            )
        await asyncio.sleep(0.5)  # every subscription live before the first change
        async with stack.api.client(headers) as http:
            gql = Gql(http)
            # Renewal: to 100 nights; the cut-short second period made whole, two more.
            renewed = await gql(
                RENEW_LEASE, {"input": {"bookingId": booking["id"], "endDate": days_ahead(100)}}
            )
            assert renewed["data"]["renewLease"]["endDate"] == days_ahead(100), renewed
            rows = await _list(stack, headers, booking["id"])
            assert rows[1]["periodStart"] == invoices[1]["periodStart"]
            assert rows[-1]["periodEnd"] == days_ahead(100) and len(rows) == 4
            for ws, follow in subscribers:
                changed = {(await follow(ws))["data"]["onRentInvoiceChanged"]["id"] for _ in "xyz"}
                assert changed == {r["id"] for r in rows[1:]}
            # A tenant's notice must give BOOKING_LEASE_NOTICE_DAYS (30).
            early = await gql(
                END_LEASE, {"input": {"bookingId": booking["id"], "endDate": days_ahead(20)}}
            )
            assert error_types(early) == ["LeaseNotChangeable"], early
            backwards = await gql(
                RENEW_LEASE, {"input": {"bookingId": booking["id"], "endDate": days_ahead(50)}}
            )
            assert error_types(backwards) == ["LeaseNotChangeable"], backwards

        # The webhook pays the second invoice ahead.
        second = rows[1]
        assert await _webhook(stack, booking["id"], second, second["amountDue"], "wh-2") == 202
        for ws, follow in subscribers:
            paid = (await follow(ws))["data"]["onRentInvoiceChanged"]
            assert (paid["id"], paid["status"], paid["paymentReference"]) == (
                second["id"],
                "PAID",
                "wh-2",
            )

        # An Admin ends the stay inside its first period: every later invoice VOID, the
        # paid second one refunded in full, the nights free again at once.
        async with stack.api.client(stack.key) as http:
            ended = await Gql(http)(
                END_LEASE, {"input": {"bookingId": booking["id"], "endDate": days_ahead(20)}}
            )
        assert "errors" not in ended, ended
        assert ended["data"]["endLease"]["endDate"] == days_ahead(20)
        rows = await _list(stack, headers, booking["id"])
        assert [r["status"] for r in rows] == ["PAID", "VOID", "VOID", "VOID"]
        assert rows[0]["periodEnd"] == days_ahead(20)
        for ws, follow in subscribers:
            seen = [(await follow(ws))["data"]["onRentInvoiceChanged"] for _ in range(4)]
            assert {s["id"] for s in seen} == {r["id"] for r in rows}
        refunded = await stack.pool.fetch(
            "SELECT status, refunded FROM rent_invoices WHERE booking_id = $1 ORDER BY seq",
            booking["id"],
        )
        assert refunded[1]["refunded"] == second["amountDue"]
        assert refunded[0]["refunded"] > 0  # the first period's nights after the new end

        # Money for a VOID invoice: accepted by the webhook, recorded and refunded.
        assert await _webhook(stack, booking["id"], rows[2], rows[2]["amountDue"], "wh-3") == 202
        refund = await eventually(
            lambda: stack.pool.fetchrow(
                "SELECT p.outcome, r.reason FROM payments p JOIN refunds r ON r.payment_id = p.id"
                " WHERE p.booking_id = $1 AND p.payment_reference = 'wh-3'",
                booking["id"],
            ),
            lambda row: row is not None,
            what="the VOID invoice's money refunded",
        )
        assert refund is not None and tuple(refund) == ("REFUNDED", "INVOICE_VOID")
        status = await stack.pool.fetchval(
            "SELECT status FROM rent_invoices WHERE id = $1", rows[2]["id"]
        )
        assert status == "VOID"
    finally:
        for ws, _ in subscribers:
            await ws.close()


async def _list(stack: E2EStack, headers: dict[str, str], booking_id: str) -> list[dict[str, Any]]:
    async with stack.api.client(headers) as http:
        body = await Gql(http)(INVOICES, {"b": booking_id})
    rows: list[dict[str, Any]] = body["data"]["getRentInvoices"]
    return rows
