"""A small GraphQL-over-HTTP client for the booking API, timing every call.

Over plain HTTP it sends through :class:`bench.http.LeanHttp` (little CPU per request, so
that the load generator does not crowd the service it measures on a shared machine); over
HTTPS through httpx.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.http import LeanHttp, LeanHttpError
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
        self._lean = (
            LeanHttp(
                self._base,
                {"x-api-key": api_key, "content-type": "application/json"},
                connections=connections,
            )
            if LeanHttp.usable(self._base)
            else None
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        if self._lean is not None:
            await self._lean.aclose()

    async def _post(
        self, path: str, body: bytes, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        if self._lean is not None:
            return await self._lean.post(path, body, headers)
        response = await self._http.post(path, content=body, headers=headers)
        return response.status_code, response.content

    async def execute(self, query: str, variables: dict[str, Any], field: str) -> Reply:
        body = json.dumps({"query": query, "variables": variables}).encode()
        started = time.perf_counter()
        try:
            status_code, content = await self._post("/graphql", body)
            payload = json.loads(content)
        except (httpx.HTTPError, LeanHttpError, ValueError) as exc:
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
                status_code,
            )
        data = (payload.get("data") or {}).get(field)
        if data is None:
            return Reply(seconds, None, "NoData", json.dumps(payload)[:300], status_code)
        return Reply(seconds, data, None, None, status_code)

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
            status_code, content = await self._post(WEBHOOK_PATH, body, headers)
        except (httpx.HTTPError, LeanHttpError) as exc:
            return Reply(time.perf_counter() - started, None, type(exc).__name__, str(exc), 0)
        seconds = time.perf_counter() - started
        if status_code >= 300:
            text = content.decode("utf-8", "replace")[:300]
            return Reply(seconds, None, f"HTTP{status_code}", text, status_code)
        return Reply(seconds, {"status": status_code}, None, None, status_code)
