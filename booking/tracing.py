"""Traces over OpenTelemetry, by the standard ``OTEL_*`` variables; off (and free) otherwise.

:func:`configure` is called once at the start of ``booking api`` and ``booking worker``. When
no variable asks for traces it returns None and imports nothing of the SDK: no provider, no
exporter, no instrumentation, no interceptor, so a request costs what it cost before. When
one does (``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, or
``OTEL_TRACES_EXPORTER=otlp``), it sets a tracer provider whose resource names the process
(``service.name``: ``booking-api`` / ``booking-worker`` unless ``OTEL_SERVICE_NAME`` says
otherwise; ``OTEL_RESOURCE_ATTRIBUTES`` adds), exporting in batches over OTLP ``http/protobuf``
(``OTEL_EXPORTER_OTLP_*``: endpoint, headers, timeout; ``OTEL_BSP_*``: batching), sampled
as ``OTEL_TRACES_SAMPLER`` / ``_ARG`` say (default: every trace, or as the parent decided).
asyncpg is instrumented with ``capture_parameters`` off: statements are in the spans, the
values bound to them (names, emails, payment references) never are.

The caller adds what is its own: the API the ASGI middleware, Strawberry's extension and the
Temporal tracing interceptor on its client; the worker the interceptor on its client (which
the worker takes for workflows and activities). The interceptor carries the trace in the
headers of every start, signal, update and query, so one reserve or one payment is one trace
across both processes, down to the activity's SQL.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import temporalio.client
import temporalio.converter
import temporalio.worker
import temporalio.workflow

from booking.contract import CONFIRM_BOOKING
from booking.errors import ConfigurationError

log = logging.getLogger(__name__)

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# The header Temporal's tracing interceptor carries the trace in, and the update that pays.
TRACE_HEADER = "_tracer-data"
PAY_UPDATE = "pay"
_SUPPORTED_PROTOCOL = "http/protobuf"


@dataclass(frozen=True)
class Tracing:
    """What :func:`configure` set up: the provider (to flush at exit) and its service name."""

    provider: Any  # opentelemetry.sdk.trace.TracerProvider (imported only when on)
    service_name: str

    def interceptors(self) -> list[Any]:
        """For ``Client.connect(interceptors=...)``: Temporal's tracing interceptor, then (for
        a worker) :class:`PaymentTraces`."""
        from temporalio.contrib.opentelemetry import TracingInterceptor

        return [TracingInterceptor(), PaymentTraces()]

    def shutdown(self) -> None:
        """Export what is left (a process that stops loses no span it made)."""
        self.provider.shutdown()


def wanted(env: Mapping[str, str] | None = None) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces."""
    env = os.environ if env is None else env
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none" or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return exporter == "otlp" or any(env.get(name) for name in _ENDPOINTS)


def configure(default_service_name: str, env: Mapping[str, str] | None = None) -> Tracing | None:
    """Set up traces for this process when the environment asks for them (see above)."""
    env = os.environ if env is None else env
    if not wanted(env):
        return None
    exporter = env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter != "otlp":
        raise ConfigurationError(
            f"OTEL_TRACES_EXPORTER={exporter}: only otlp (or none) is supported"
        )
    protocol = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or _SUPPORTED_PROTOCOL
    ).strip()
    if protocol != _SUPPORTED_PROTOCOL:
        raise ConfigurationError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: the service exports traces over "
            f"{_SUPPORTED_PROTOCOL} (the OTLP/HTTP port of a collector, usually 4318)"
        )
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    name = env.get("OTEL_SERVICE_NAME") or default_service_name
    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES; the service name given here wins.
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    # Statements only: the parameters hold personal data and payment references.
    instrumentor = AsyncPGInstrumentor(capture_parameters=False)  # type: ignore[no-untyped-call]
    instrumentor.instrument(tracer_provider=provider)
    log.info("traces on: service.name %s, OTLP %s", name, protocol)
    return Tracing(provider, name)


class PaymentTraces(temporalio.client.Interceptor, temporalio.worker.Interceptor):
    """A payment's trace reaches the step that confirms it, and that step's SQL.

    Temporal's tracing interceptor handles an update in the workflow's own trace (the one
    its start began), with a link to the caller's. The booking workflow confirms a payment
    from its run loop, after the ``pay`` update accepted it, so the confirm step would be in
    the booking's trace too and the payment's trace would stop at the API. This interceptor,
    inside Temporal's, remembers the context the ``pay`` update arrived with and starts the
    next confirm step under it: the payment's trace then runs from the GraphQL request
    through the update call to the confirm step and its SQL. It adds no command and reads
    nothing but headers, so histories and replay are as without it.
    """

    def workflow_interceptor_class(
        self, input: temporalio.worker.WorkflowInterceptorClassInput
    ) -> type[temporalio.worker.WorkflowInboundInterceptor] | None:
        return _PaymentTracesInbound


class _PaymentTracesInbound(temporalio.worker.WorkflowInboundInterceptor):
    def init(self, outbound: temporalio.worker.WorkflowOutboundInterceptor) -> None:
        # The update's context, waiting for the step that confirms what it accepted.
        self.payment_context: Any = None
        super().init(_PaymentTracesOutbound(outbound, self))

    async def handle_update_handler(self, input: temporalio.worker.HandleUpdateInput) -> Any:
        if input.update == PAY_UPDATE:
            self.payment_context = _context_from(input.headers)
        return await super().handle_update_handler(input)


class _PaymentTracesOutbound(temporalio.worker.WorkflowOutboundInterceptor):
    def __init__(
        self, next: temporalio.worker.WorkflowOutboundInterceptor, root: _PaymentTracesInbound
    ) -> None:
        super().__init__(next)
        self._root = root

    def start_local_activity(
        self, input: temporalio.worker.StartLocalActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        with self._payment_context_for(input.activity):
            return super().start_local_activity(input)

    def start_activity(
        self, input: temporalio.worker.StartActivityInput
    ) -> temporalio.workflow.ActivityHandle[Any]:
        with self._payment_context_for(input.activity):
            return super().start_activity(input)

    @contextlib.contextmanager
    def _payment_context_for(self, activity_name: str) -> Iterator[None]:
        context = self._root.payment_context
        if activity_name != CONFIRM_BOOKING or context is None:
            yield
            return
        from opentelemetry import context as otel_context

        self._root.payment_context = None
        token = otel_context.attach(context)
        try:
            yield
        finally:
            otel_context.detach(token)


def _context_from(headers: Mapping[str, Any]) -> Any:
    """The trace context Temporal's interceptor put in these headers, or None."""
    # W3C trace context: what Temporal's interceptor writes into the carrier.
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    header = headers.get(TRACE_HEADER)
    if header is None:
        return None
    carrier = temporalio.converter.PayloadConverter.default.from_payloads([header])[0]
    return TraceContextTextMapPropagator().extract(carrier)
