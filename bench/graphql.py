"""A small GraphQL-over-HTTP client for the booking API, timing every call."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from booking.webhook_signing import SIGNATURE_HEADER, webhook_signature

RESERVE = """
mutation Reserve($input: ReserveApartmentInput!) {
  reserveApartment(input: $input) { id bookingStatus amountDue currency holdExpiresAt }
}
"""

PAY = """
mutation Pay($input: PayBookingInput!) {
  payBooking(input: $input) { id bookingStatus paidAt }
}
"""

WEBHOOK_PATH = "/webhooks/payments"


@dataclass(frozen=True)
class Reply:
    """One call's outcome: ``data`` or the first error's ``errorType``, and its latency."""

    seconds: float
    data: dict[str, Any] | None
    error_type: str | None
    message: str | None
    status_code: int

    @property
    def ok(self) -> bool:
        return self.error_type is None and self.data is not None


class ApiClient:
    def __init__(self, base_url: str, api_key: str, *, connections: int = 128) -> None:
        self._base = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self._base,
            headers={"x-api-key": api_key, "content-type": "application/json"},
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
            timeout=httpx.Timeout(120.0),
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def execute(self, query: str, variables: dict[str, Any], field: str) -> Reply:
        body = json.dumps({"query": query, "variables": variables})
        started = time.perf_counter()
        try:
            response = await self._http.post("/graphql", content=body)
            payload = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            return Reply(time.perf_counter() - started, None, type(exc).__name__, str(exc), 0)
        seconds = time.perf_counter() - started
        errors = payload.get("errors") if isinstance(payload, dict) else None
        if errors:
            first = errors[0]
            return Reply(
                seconds,
                None,
                str(first.get("errorType") or "Unknown"),
                str(first.get("message")),
                response.status_code,
            )
        data = (payload.get("data") or {}).get(field)
        if data is None:
            return Reply(seconds, None, "NoData", json.dumps(payload)[:300], response.status_code)
        return Reply(seconds, data, None, None, response.status_code)

    async def reserve(
        self, apartment_id: str, user_id: str, start: str, end: str, hold_seconds: int
    ) -> Reply:
        variables = {
            "input": {
                "apartmentId": apartment_id,
                "userId": user_id,
                "startDate": start,
                "endDate": end,
                "holdSeconds": hold_seconds,
            }
        }
        return await self.execute(RESERVE, variables, "reserveApartment")

    async def pay(self, booking_id: str, amount: int, currency: str, reference: str) -> Reply:
        variables = {
            "input": {
                "bookingId": booking_id,
                "amount": amount,
                "currency": currency,
                "paymentReference": reference,
            }
        }
        return await self.execute(PAY, variables, "payBooking")

    async def webhook_payment(
        self,
        secret: str,
        event_id: str,
        booking_id: str,
        amount: int,
        currency: str,
        reference: str,
    ) -> Reply:
        """A provider's signed payment event (POST /webhooks/payments)."""
        body = json.dumps(
            {
                "id": event_id,
                "bookingId": booking_id,
                "amount": amount,
                "currency": currency,
                "paymentReference": reference,
            }
        ).encode()
        headers = {SIGNATURE_HEADER: webhook_signature(secret, body, int(time.time()))}
        started = time.perf_counter()
        try:
            response = await self._http.post(WEBHOOK_PATH, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return Reply(time.perf_counter() - started, None, type(exc).__name__, str(exc), 0)
        seconds = time.perf_counter() - started
        if response.status_code >= 300:
            return Reply(
                seconds,
                None,
                f"HTTP{response.status_code}",
                response.text[:300],
                response.status_code,
            )
        return Reply(seconds, {"status": response.status_code}, None, None, response.status_code)
