"""``POST /webhooks/payments``: payments reported by a payment provider.

A provider calls us with a JSON body ``{"id", "bookingId", "amount",
"currency", "paymentReference"}`` (and ``"invoiceId"`` when the money is a
lease's rent) signed in the ``Booking-Signature`` header (see
``booking.webhook_signing``). A valid event becomes the booking workflow's
``payment_received`` signal; the workflow decides what the payment does
(confirms the hold or pays the invoice, or is recorded and refunded when it
came late, was doubled or was wrong, or its invoice is VOID or paid). The API
writes nothing itself.

Checks, in order, each answering 4xx, logging why and changing nothing:
size (413, counted while reading, so a lying Content-Length does not help),
signature header shape (400), signature (401), timestamp within 300 s (401),
JSON shape (400/422), booking exists (404), booking still running (409), event
not seen before (409).

Deduplication by event id, across API processes and restarts, is Temporal's
job, because the API may not write to the database:

- the signal carries the event id in its header, so the booking's own
  history records which events it received; before signalling we read that
  history and answer 409 for an event already there (that covers a replayed
  request, a provider's retry, any process, any restart);
- the signal's ``request_id`` is derived from the event id, so two processes
  racing with the same event between that read and the signal collapse into
  one signal on the Temporal server (it ignores a repeated request id);
- a bounded in-process LRU answers the common repeat without any RPC;
- last line: the workflow itself treats a repeated ``paymentReference`` as a
  no-op, so even an event re-sent under a new id cannot pay twice.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType, WorkflowExecutionStatus
from temporalio.api.workflowservice.v1 import SignalWorkflowExecutionRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.errors import INTERNAL_FAILURE, ServiceUnavailable
from booking.contract import PaymentInput, payment_problem, text_problem, workflow_id_for
from booking.errors import BookingNotFound, ValidationError
from booking.settings import Settings
from booking.webhook_signing import (
    DEFAULT_TOLERANCE_SECONDS,
    SIGNATURE_HEADER,
    SignatureError,
    verify_signature,
)

log = logging.getLogger("booking.webhooks")

PATH = "/webhooks/payments"
MAX_BODY_BYTES = 64 * 1024
SIGNAL_NAME = "payment_received"
EVENT_HEADER = "booking-webhook-event-id"
# Fixed namespace for uuid5(request id) so every API process derives the same
# request id from the same event id.
_REQUEST_ID_NAMESPACE = uuid.UUID("6f1d3c52-5b7e-4c1e-9a53-0c1f8e1f2b7a")
_LRU_SIZE = 10_000
_RPC_TIMEOUT = timedelta(seconds=10)


class WebhookRejected(Exception):
    """A request we refuse: HTTP ``status``, a loggable ``reason`` code, a client message."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class PaymentEvent:
    id: str
    booking_id: str
    amount: int
    currency: str
    payment_reference: str
    # Our clock when the request arrived: the workflow judges "paid in time" by it.
    received_at: datetime
    # The rent invoice this money pays (a lease's), or None: the booking itself.
    invoice_id: str | None = None


def _text_field(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise WebhookRejected(422, "invalid_event", f"{name} must be a non-empty string")
    problem = text_problem(name, value)
    if problem is not None:
        raise WebhookRejected(422, "invalid_event", problem)
    return value


def parse_event(body: bytes, received_at: datetime | None = None) -> PaymentEvent:
    """The event in ``body`` or WebhookRejected (400 not JSON, 422 wrong fields)."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        # RecursionError: JSON nested deeper than the parser's stack (a hostile body).
        raise WebhookRejected(400, "malformed_json", "body is not JSON") from exc
    if not isinstance(data, dict):
        raise WebhookRejected(400, "malformed_json", "body must be a JSON object")
    event_id = _text_field(data, "id")
    booking_id = _text_field(data, "bookingId")
    reference = _text_field(data, "paymentReference")
    invoice_id = _text_field(data, "invoiceId") if data.get("invoiceId") is not None else None
    payment = PaymentInput(data.get("amount"), data.get("currency"), reference)  # type: ignore[arg-type]
    problem = payment_problem(payment)
    if problem is not None:
        raise WebhookRejected(422, "invalid_event", problem)
    return PaymentEvent(
        id=event_id,
        booking_id=booking_id,
        amount=payment.amount,
        currency=payment.currency,
        payment_reference=reference,
        received_at=received_at or datetime.now(UTC),
        invoice_id=invoice_id,
    )


async def read_limited(request: Request, limit: int = MAX_BODY_BYTES) -> bytes:
    """The body, refusing with 413 as soon as it grows past ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise WebhookRejected(400, "bad_content_length", "Content-Length is not a number")
        if int(declared) > limit:
            raise WebhookRejected(413, "too_large", f"body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise WebhookRejected(413, "too_large", f"body is larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise WebhookRejected(400, "client_disconnected", "request body incomplete") from exc
    return b"".join(chunks)


def request_id_for(event_id: str) -> str:
    return str(uuid.uuid5(_REQUEST_ID_NAMESPACE, f"payment-webhook:{event_id}"))


class _SeenEvents:
    """Bounded LRU of event ids this process has already signalled."""

    def __init__(self, size: int = _LRU_SIZE) -> None:
        self._size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, event_id: str) -> bool:
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return True
        return False

    def add(self, event_id: str) -> None:
        self._ids[event_id] = None
        self._ids.move_to_end(event_id)
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)


# The app's Temporal client (``Services.require_client``): the webhook keeps none of its own.
ClientSource = Callable[[], Client]


class PaymentWebhook:
    """The endpoint; one per app, holding the settings and a Temporal client source."""

    def __init__(
        self,
        settings: Settings,
        client_source: ClientSource,
        *,
        clock: Callable[[], float] = time.time,
        tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    ) -> None:
        self._secret = settings.webhook_secret
        self._client_source = client_source
        self._clock = clock
        self._tolerance = tolerance_seconds
        self._seen = _SeenEvents()
        # Two deliveries of one event inside this process wait for each other,
        # so the second sees the first's signal in the history (or the LRU).
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    async def handle(self, request: Request) -> Response:
        client_host = request.client.host if request.client else "-"
        if not self._secret:
            log.error("payment webhook refused: BOOKING_WEBHOOK_SECRET is not configured")
            return _error(503, "WebhookNotConfigured", "payment webhook is not configured")
        # Taken before anything else: the payment counts as made when it reached us.
        received_at = datetime.now(UTC)
        event: PaymentEvent | None = None
        try:
            body = await read_limited(request)
            try:
                verify_signature(
                    self._secret,
                    request.headers.get(SIGNATURE_HEADER),
                    body,
                    now=self._clock(),
                    tolerance_seconds=self._tolerance,
                )
            except SignatureError as exc:
                status = 400 if exc.reason in ("missing_signature", "malformed_signature") else 401
                raise WebhookRejected(status, exc.reason, exc.message) from exc
            event = parse_event(body, received_at)
            await self._deliver(event)
        except WebhookRejected as rejected:
            # Ids only: never the body, the signature header or the secret.
            log.warning(
                "payment webhook rejected: status=%d reason=%s event=%s booking=%s client=%s",
                rejected.status,
                rejected.reason,
                _short(event.id) if event else "-",
                _short(event.booking_id) if event else "-",
                client_host,
            )
            return _error(rejected.status, _ERROR_TYPES[rejected.reason], rejected.message)
        except Exception:
            # A bug or an SDK surprise: the provider should retry later, and nothing was
            # signalled (the signal is the last step). The traceback holds no secret.
            log.exception(
                "payment webhook failed unexpectedly: event=%s",
                _short(event.id) if event else "-",
            )
            return _error(503, INTERNAL_FAILURE, "payment not accepted; retry later")
        log.info(
            "payment webhook accepted: event=%s booking=%s reference=%s",
            _short(event.id),
            _short(event.booking_id),
            _short(event.payment_reference),
        )
        return JSONResponse(
            {"status": "accepted", "eventId": event.id, "bookingId": event.booking_id},
            status_code=202,
        )

    async def _deliver(self, event: PaymentEvent) -> None:
        if event.id in self._seen:
            raise WebhookRejected(409, "duplicate_event", "event already received")
        lock, users = self._locks.get(event.id, (asyncio.Lock(), 0))
        self._locks[event.id] = (lock, users + 1)
        try:
            async with lock:
                if event.id in self._seen:
                    raise WebhookRejected(409, "duplicate_event", "event already received")
                client = await self._client()
                workflow_id = workflow_id_for(event.booking_id)
                await self._check_open(client, workflow_id)
                if await self._in_history(client, workflow_id, event.id):
                    self._seen.add(event.id)
                    raise WebhookRejected(409, "duplicate_event", "event already received")
                await self._signal(client, workflow_id, event)
                self._seen.add(event.id)
        finally:
            lock, users = self._locks[event.id]
            if users <= 1:
                del self._locks[event.id]
            else:
                self._locks[event.id] = (lock, users - 1)

    async def _client(self) -> Client:
        try:
            return self._client_source()
        except Exception as exc:
            log.exception("payment webhook: Temporal is not reachable")
            raise WebhookRejected(
                503, "temporal_unavailable", "payments cannot be accepted right now; retry"
            ) from exc

    async def _check_open(self, client: Client, workflow_id: str) -> None:
        try:
            description = await client.get_workflow_handle(workflow_id).describe(
                rpc_timeout=_RPC_TIMEOUT
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                raise WebhookRejected(404, "unknown_booking", "no such booking") from exc
            if exc.status == RPCStatusCode.INVALID_ARGUMENT:
                raise WebhookRejected(422, "invalid_event", "bookingId is not valid") from exc
            raise _unavailable(exc) from exc
        if description.raw_description.workflow_execution_info.status != (
            WorkflowExecutionStatus.WORKFLOW_EXECUTION_STATUS_RUNNING
        ):
            raise WebhookRejected(
                409, "booking_closed", "booking is closed; the payment was not taken"
            )

    async def _in_history(self, client: Client, workflow_id: str, event_id: str) -> bool:
        converter = client.data_converter.payload_converter
        try:
            async for history_event in client.get_workflow_handle(workflow_id).fetch_history_events(
                rpc_timeout=_RPC_TIMEOUT
            ):
                if history_event.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                    continue
                attributes = history_event.workflow_execution_signaled_event_attributes
                if attributes.signal_name != SIGNAL_NAME:
                    continue
                payload = attributes.header.fields.get(EVENT_HEADER)
                if payload is None:
                    continue
                try:
                    seen = converter.from_payload(payload, str)
                except Exception:
                    # A header of that name that we did not write: it names no event.
                    log.debug("payment webhook: unreadable event header in %s", workflow_id)
                    continue
                if seen == event_id:
                    return True
        except RPCError as exc:
            raise _unavailable(exc) from exc
        return False

    async def _signal(self, client: Client, workflow_id: str, event: PaymentEvent) -> None:
        payment = PaymentInput(
            amount=event.amount,
            currency=event.currency,
            payment_reference=event.payment_reference,
            received_at=event.received_at,
            invoice_id=event.invoice_id,
        )
        request = SignalWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=workflow_id),
            signal_name=SIGNAL_NAME,
            identity=client.identity,
            request_id=request_id_for(event.id),
        )
        request.input.payloads.extend(await client.data_converter.encode([payment]))
        request.header.fields[EVENT_HEADER].CopyFrom(
            client.data_converter.payload_converter.to_payloads([event.id])[0]
        )
        try:
            await client.workflow_service.signal_workflow_execution(
                request, retry=True, timeout=_RPC_TIMEOUT
            )
        except RPCError as exc:
            if exc.status == RPCStatusCode.NOT_FOUND:
                # Closed between the describe and the signal: the hold ended.
                raise WebhookRejected(
                    409, "booking_closed", "booking is closed; the payment was not taken"
                ) from exc
            raise _unavailable(exc) from exc


_ERROR_TYPES = {
    "missing_signature": "SignatureMissing",
    "malformed_signature": "SignatureMalformed",
    "bad_signature": "SignatureInvalid",
    "stale_signature": "SignatureExpired",
    "too_large": "PayloadTooLarge",
    "bad_content_length": ValidationError.error_type,
    "client_disconnected": ValidationError.error_type,
    "malformed_json": ValidationError.error_type,
    "invalid_event": ValidationError.error_type,
    "unknown_booking": BookingNotFound.error_type,
    "booking_closed": "BookingClosed",
    "duplicate_event": "DuplicateEvent",
    "temporal_unavailable": ServiceUnavailable.error_type,
}


def _unavailable(exc: RPCError) -> WebhookRejected:
    log.warning("payment webhook: Temporal call failed: %s", exc.status.name)
    return WebhookRejected(
        503, "temporal_unavailable", "payments cannot be accepted right now; retry"
    )


def _short(value: str) -> str:
    # Ids come from the caller; keep log lines bounded and on one line.
    return repr(value[:80])


def _error(status: int, error_type: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"errorType": error_type, "message": message}]}, status_code=status
    )


def route(settings: Settings, client_source: ClientSource) -> Route:
    """``POST /webhooks/payments``, signalling through the client ``client_source`` gives.

    Without ``BOOKING_WEBHOOK_SECRET`` the route still exists and answers 503, so a
    misconfigured deployment is visible instead of silently 404.
    """
    handler = PaymentWebhook(settings, client_source)
    return Route(PATH, handler.handle, methods=["POST"], name="payment_webhook")
