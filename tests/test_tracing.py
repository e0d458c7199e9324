"""One trace from request to SQL, across the API and the worker, into a real OTLP receiver.

The receiver is an HTTP server in this process that decodes OTLP/HTTP protobuf export
requests (``/v1/traces``) as a collector does. A ``booking api`` and a ``booking worker``
process export to it by the standard variables only (``OTEL_EXPORTER_OTLP_ENDPOINT``); a
reserve and a payment through the API must each be one trace holding the GraphQL request,
the Temporal call, the workflow's handling, the activity and its SQL, with spans from both
processes, and no SQL span may carry the statement's parameters.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from booking import tracing
from booking.db import migrate
from booking.devstack.stack import Stack
from booking.errors import ConfigurationError
from tests.e2e.helpers import ServedApp
from tests.helpers import eventually, pay_through_api, reserve_through_api

pytestmark = pytest.mark.e2e

API_KEY = "traces-api-key-0123456789"


@dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    attributes: dict[str, Any]
    links: tuple[str, ...] = ()  # the trace ids this span links to


@dataclass
class Receiver:
    """What the OTLP receiver got, span by span."""

    spans: list[Span] = field(default_factory=list)
    requests: int = 0

    async def export(self, request: Request) -> Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.body())
        self.requests += 1
        for resource_spans in message.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Span(
                            service=resource.get("service.name", ""),
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            links=tuple(link.trace_id.hex() for link in span.links),
                        )
                    )
        answer = ExportTraceServiceResponse().SerializeToString()
        return Response(answer, media_type="application/x-protobuf")

    def traces(self) -> dict[str, list[Span]]:
        by_trace: dict[str, list[Span]] = defaultdict(list)
        for span in self.spans:
            by_trace[span.trace_id].append(span)
        return by_trace


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@dataclass
class Traced:
    api_url: str
    receiver: Receiver


@pytest.fixture(scope="module")
async def traced(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Traced]:
    receiver = Receiver()
    app = Starlette(routes=[Route("/v1/traces", receiver.export, methods=["POST"])])
    root = tmp_path_factory.mktemp("traces")
    stack = Stack(root)
    async with ServedApp(app) as collector:
        try:
            dsn = await stack.start_postgres(durable=False)
            await migrate(dsn)
            await stack.start_temporal(db_file=None)
            stack.task_queue = f"traces-{uuid.uuid4().hex[:6]}"
            env = stack.child_env(
                {
                    "BOOKING_API_KEYS": API_KEY,
                    "BOOKING_JWT_SECRET": "traces-jwt-secret-0123456789-0123456789-ab",
                    "BOOKING_WEBHOOK_SECRET": "traces-webhook-secret-0123456789-012345",
                    # The standard variables only: where, and export every 200 ms.
                    "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
                    "OTEL_BSP_SCHEDULE_DELAY": "200",
                }
            )
            stack.spawn_worker(env, log_file=root / "worker.log")
            api = stack.spawn_api(env, log_file=root / "api.log")
            await stack.wait_ready(["worker", "api"])
            yield Traced(api.url, receiver)
        finally:
            stack.stop()


# The API's span for its Temporal call: update-with-start (reserve), an update (payment).
TEMPORAL_CALLS = ("StartUpdateWithStartWorkflow:", "StartWorkflowUpdate:")


def _one_trace_with(receiver: Receiver, needed: str) -> list[Span] | None:
    """The trace holding a worker span named ``needed``, once every span it must hold has
    arrived (each process exports in its own batches): the request and its Temporal call in
    the API, SQL in the worker."""
    for spans in receiver.traces().values():
        names = {s.name for s in spans}
        api = [s for s in spans if s.service == "booking-api"]
        worker_sql = [s for s in spans if s.service == "booking-worker" and _is_sql(s)]
        if (
            needed in names
            and any(s.name.startswith(TEMPORAL_CALLS) for s in api)
            and any(s.name == "POST /graphql" for s in api)
            and worker_sql
        ):
            return spans
    return None


def _is_sql(span: Span) -> bool:
    return span.attributes.get("db.system") == "postgresql" or (
        span.attributes.get("db.system.name") == "postgresql"
    )


async def test_a_reserve_and_a_payment_are_each_one_trace_from_request_to_sql(
    traced: Traced,
) -> None:
    async with httpx.AsyncClient(
        base_url=traced.api_url, headers={"x-api-key": API_KEY}, timeout=30
    ) as http:
        booking = await reserve_through_api(http, "traced")
        reserve = await eventually(
            lambda: _found(traced.receiver, "RunActivity:reserve_apartment"),
            lambda spans: spans is not None,
            what="the reserve's trace",
        )
        assert await pay_through_api(http, booking) == "APPROVED"
        payment = await eventually(
            lambda: _found(traced.receiver, "RunActivity:confirm_booking"),
            lambda spans: spans is not None,
            what="the payment's trace",
        )
        handled = await eventually(
            lambda: _update_handled(traced.receiver),
            lambda spans: spans is not None,
            what="the update handled in the booking's trace",
        )
    assert reserve is not None and payment is not None and handled is not None
    # The reserve: the GraphQL request (ASGI and Strawberry's spans) and its Temporal call in
    # the API, the workflow's run, the reserve step and its SQL in the worker: one trace.
    names = {s.name for s in reserve}
    assert {"GraphQL Resolving: reserveApartment", "RunWorkflow:ApartmentBookingWorkflow"} <= names
    # The payment: its request and update call in the API, the step that confirms it and its
    # SQL in the worker: a trace of its own.
    assert payment[0].trace_id != reserve[0].trace_id
    paid_names = {s.name for s in payment}
    assert {
        "GraphQL Resolving: payBooking",
        "StartWorkflowUpdate:pay",
        "StartActivity:confirm_booking",
        "RunActivity:confirm_booking",
    } <= paid_names, paid_names
    # The update's handling is in the booking's trace, linked to the payment's.
    assert handled[0].trace_id == reserve[0].trace_id
    update = [s for s in handled if s.name == "HandleUpdate:pay"]
    assert update and payment[0].trace_id in update[0].links, update
    # No SQL span carries what was bound to the statement.
    sql = [s for s in traced.receiver.spans if _is_sql(s)]
    assert sql, "no SQL span at all"
    for span in sql:
        assert not any("parameter" in key for key in span.attributes), span


async def _update_handled(receiver: Receiver) -> list[Span] | None:
    for spans in receiver.traces().values():
        if any(s.name == "HandleUpdate:pay" for s in spans):
            return spans
    return None


async def _found(receiver: Receiver, needed: str) -> list[Span] | None:
    return _one_trace_with(receiver, needed)


def test_tracing_is_off_and_imports_nothing_without_an_otel_variable() -> None:
    assert tracing.configure("booking-api", env={}) is None
    assert tracing.configure("booking-api", env={"OTEL_SERVICE_NAME": "x"}) is None
    assert not tracing.wanted(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_SDK_DISABLED": "true"}
    )
    assert not tracing.wanted(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_TRACES_EXPORTER": "none"}
    )
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c/v1/traces"})


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc"},
        {"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"},
    ],
)
def test_what_the_service_cannot_export_is_refused_at_start(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        tracing.configure("booking-worker", env=env)
