"""Prometheus metrics of the API: requests, latency, GraphQL operations and errors by type.

Each app gets its own registry, so several apps in one process (tests) never
clash, and ``/metrics`` shows exactly this app's numbers.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator

from graphql import FieldNode, OperationDefinitionNode
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from booking.store.mail import MailCounts

access_log = logging.getLogger("api.access")

_KNOWN_ROUTES = ("/graphql", "/healthz", "/readyz", "/metrics", "/webhooks/payments")


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "booking_api_requests",
            "HTTP requests and WebSocket connections served",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "booking_api_request_seconds",
            "Time to serve an HTTP request",
            ["method", "route"],
            registry=self.registry,
        )
        self.graphql_operations = Counter(
            "booking_api_graphql_operations",
            "GraphQL operations executed, by root field",
            ["operation_type", "field"],
            registry=self.registry,
        )
        self.graphql_errors = Counter(
            "booking_api_graphql_errors",
            "Errors returned to clients, by errorType",
            ["error_type"],
            registry=self.registry,
        )
        self.temporal_calls = Histogram(
            "booking_api_temporal_call_seconds",
            "Time a request waited on one Temporal call (an update, an update-with-start), "
            "by the workflow update it ran; the rest of a request's time is the API's own",
            ["update"],
            registry=self.registry,
        )
        self.db_queries = Histogram(
            "booking_api_db_queries_per_request",
            "Database round trips per GraphQL request",
            buckets=(0, 1, 2, 3, 5, 8, 13, 21, 50),
            registry=self.registry,
        )
        self.subscriptions = Gauge(
            "booking_api_active_subscriptions",
            "Open subscriptions (each subscriber's, every protocol)",
            registry=self.registry,
        )
        self.subscription_streams = Gauge(
            "booking_api_subscription_streams",
            "Subscriptions executing for them: subscribers asking the same share one (api.fanout)",
            registry=self.registry,
        )
        # Read from the outbox at each scrape (every API process reports the same numbers).
        self.notifications = Gauge(
            "booking_notifications",
            "Tenants' notifications (mail), by status: PENDING, SENT, FAILED",
            ["status"],
            registry=self.registry,
        )
        self.oldest_pending_notification = Gauge(
            "booking_notifications_oldest_pending_seconds",
            "How long the oldest PENDING notification has waited (0: none waits)",
            registry=self.registry,
        )

    def observe_temporal_call(self, update: str, seconds: float) -> None:
        self.temporal_calls.labels(update).observe(seconds)

    def set_notifications(self, counts: MailCounts) -> None:
        for status, value in (
            ("PENDING", counts.pending),
            ("SENT", counts.sent),
            ("FAILED", counts.failed),
        ):
            self.notifications.labels(status=status).set(value)
        self.oldest_pending_notification.set(counts.oldest_pending_seconds)


def route_label(path: str) -> str:
    # Fixed labels only: a label per raw path would let clients grow the series.
    return path if path in _KNOWN_ROUTES else ("/" if path == "/" else "other")


class ObservabilityMiddleware:
    """Request id, request counter and latency for every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        method = scope.get("method", "WS")
        route = route_label(scope.get("path", ""))
        started = time.perf_counter()
        status = {"code": 0}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                MutableHeaders(scope=message)["x-request-id"] = request_id
            elif message["type"] == "websocket.accept":
                status["code"] = 101
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        except Exception:
            status["code"] = status["code"] or 500
            raise
        finally:
            elapsed = time.perf_counter() - started
            if scope["type"] == "http":
                self.metrics.latency.labels(method, route).observe(elapsed)
            self.metrics.requests.labels(method, route, str(status["code"])).inc()
            # The path only: query strings may carry GraphQL variables.
            access_log.info(
                "%s %s %s %.1fms request_id=%s",
                method,
                scope.get("path", ""),
                status["code"],
                elapsed * 1000,
                request_id,
            )


class OperationMetrics(SchemaExtension):
    """Counts operations by type and root field, and database round trips per operation."""

    def on_execute(self) -> Iterator[None]:
        yield
        context = self.execution_context.context
        services = getattr(context, "services", None)
        if services is None:
            return
        metrics: ApiMetrics = services.metrics
        document = self.execution_context.graphql_document
        operation_type = "unknown"
        fields: list[str] = []
        for definition in document.definitions if document else ():
            if isinstance(definition, OperationDefinitionNode):
                operation_type = definition.operation.value
                fields += [
                    s.name.value
                    for s in definition.selection_set.selections
                    if isinstance(s, FieldNode)
                ]
        for field in fields or ["-"]:
            metrics.graphql_operations.labels(operation_type, field).inc()
        if operation_type != "subscription":
            loaders = getattr(context, "loaders", None)
            if loaders is not None:
                metrics.db_queries.observe(loaders.reader.queries)
