"""The ASGI application: GraphQL over HTTP and WebSocket, health, readiness and metrics.

``create_app(settings)`` builds it; its lifespan opens the asyncpg pool, the
Temporal client (with the production data converter) and the one LISTEN
connection that feeds subscriptions. Run it with ``booking api`` (uvicorn).

Routes:

- ``POST /graphql``, ``GET /graphql`` (queries only), WebSocket ``/graphql``
  (``graphql-transport-ws``; credentials in the ``connection_init`` payload or
  the upgrade request's headers);
- ``GET /healthz``: the process answers; ``GET /readyz``: the database, Temporal
  and the LISTEN connection answer; ``GET /metrics``: Prometheus;
- ``POST /webhooks/payments`` (``api.webhooks``);
- the tenant page at ``/`` and its assets (``api.web``), and HTTP caching of
  ``/graphql`` reads (``api.http_cache``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import asyncpg
from cross_web import HTTPException
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import Message as ASGIMessage
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import Message
from strawberry.types import ExecutionResult
from temporalio.client import Client

from api import web, webhooks
from api.auth import Authenticator
from api.context import RequestContext
from api.errors import appsync_error, request_error_body, unauthorized_body
from api.http_cache import CachingMiddleware
from api.loaders import Loaders, Reader
from api.metrics import ObservabilityMiddleware
from api.schema import build_schema
from api.services import Services, open_services
from booking.errors import UnauthorizedException
from booking.settings import Settings

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 2.0
# GraphQL documents are small (the token limit caps them); variables carry a few ids.
MAX_BODY_BYTES = 1024 * 1024


class _AppSyncTransportWSHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """graphql-transport-ws with AppSync-shaped errors in ``next`` and ``error`` messages."""

    async def send_message(self, message: Message) -> None:
        raw: dict[str, Any] = dict(message)
        payload = raw.get("payload")
        if raw["type"] == "next" and isinstance(payload, dict) and payload.get("errors"):
            raw["payload"] = {**payload, "errors": [appsync_error(e) for e in payload["errors"]]}
        elif raw["type"] == "error" and isinstance(payload, list):
            raw["payload"] = [appsync_error(e) for e in payload]
        await super().send_message(cast("Message", raw))


class BookingGraphQL(GraphQL[RequestContext, None]):
    """Strawberry's ASGI view with AppSync's authentication and error shapes."""

    graphql_transport_ws_handler_class = _AppSyncTransportWSHandler

    def __init__(self, services: Services, **kwargs: Any) -> None:
        super().__init__(
            build_schema(services.settings),
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
            **kwargs,
        )
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        declared = _declared_length(scope)
        if declared is not None and declared > MAX_BODY_BYTES:
            too_large = JSONResponse(
                request_error_body(f"request body larger than {MAX_BODY_BYTES} bytes"),
                status_code=413,
            )
            await too_large(scope, receive, send)
            return
        receive = _limited(receive)
        request = Request(scope, receive)
        if not self._wants_ide(request):
            try:
                principal = await self.services.authenticator.authenticate(request.headers)
            except UnauthorizedException as err:
                response: Response = JSONResponse(unauthorized_body(err.message), status_code=401)
                await response(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
        try:
            response = await self.run(request)
        except HTTPException as err:
            # Requests GraphQL could not even read (bad JSON, a mutation over GET, ...).
            response = JSONResponse(request_error_body(err.reason), status_code=err.status_code)
        except _BodyTooLarge:
            response = JSONResponse(
                request_error_body(f"request body larger than {MAX_BODY_BYTES} bytes"),
                status_code=413,
            )
        await response(scope, receive, send)

    def _wants_ide(self, request: Request) -> bool:
        return (
            self.graphql_ide is not None
            and request.method == "GET"
            and "query" not in request.query_params
            and "text/html" in request.headers.get("accept", "")
        )

    async def get_context(self, request: Any, response: Any) -> RequestContext:
        state = request.scope.get("state", {})
        services = self.services
        return RequestContext(
            services=services,
            loaders=Loaders(Reader(services.require_pool(), services.settings.db_timeout_seconds)),
            request_id=state.get("request_id", "-"),
            principal=state.get("principal"),
            request=request,
            response=response,
        )

    async def on_ws_connect(self, context: RequestContext) -> dict[str, object] | None:
        headers = _connection_headers(context.request, context.connection_params)
        try:
            context.principal = await self.services.authenticator.authenticate(headers)
        except UnauthorizedException as err:
            raise ConnectionRejectionError(unauthorized_body(err.message)) from None
        return None

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [appsync_error(dict(e.formatted)) for e in result.errors]
        return body  # type: ignore[return-value]


class _BodyTooLarge(Exception):
    pass


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _limited(receive: Receive) -> Receive:
    """``receive`` that gives up once the body passes MAX_BODY_BYTES (whatever it declared)."""
    seen = 0

    async def limited() -> ASGIMessage:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise _BodyTooLarge
        return message

    return limited


def _connection_headers(websocket: WebSocket, params: Mapping[str, object]) -> dict[str, str]:
    """Credentials for a WebSocket: the upgrade's headers, overridden by ``connection_init``.

    Browsers cannot set headers on a WebSocket, so the payload may carry
    ``Authorization`` / ``x-api-key`` at its top level or under ``headers``.
    """
    found = {k.lower(): v for k, v in websocket.headers.items()}
    nested = params.get("headers")
    for source in (params, nested if isinstance(nested, Mapping) else {}):
        for key, value in source.items():
            if isinstance(key, str) and isinstance(value, str):
                found[key.lower()] = value
    return found


async def _readiness(services: Services) -> dict[str, str]:
    checks: dict[str, str] = {}

    async def database() -> None:
        pool = services.require_pool()
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def temporal() -> None:
        client = services.require_client()
        await client.service_client.check_health()

    for name, probe in (("database", database), ("temporal", temporal)):
        try:
            await asyncio.wait_for(probe(), READY_TIMEOUT_SECONDS)
            checks[name] = "ok"
        except Exception as err:
            log.warning("readiness check %s failed: %s", name, type(err).__name__)
            checks[name] = "unavailable"
    broadcaster = services.broadcaster
    checks["listener"] = (
        "ok" if broadcaster is not None and broadcaster.listening else "unavailable"
    )
    return checks


def create_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    client: Client | None = None,
) -> Starlette:
    """The API; ``pool`` and ``client`` may be injected, else the lifespan opens them."""
    settings.refuse_unsafe_secrets("API")
    services = Services(settings=settings, authenticator=Authenticator(settings))
    graphql = BookingGraphQL(
        services,
        graphql_ide="graphiql" if settings.dev_mode else None,
        keep_alive=True,
        keep_alive_interval=15,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with open_services(services, pool=pool, client=client):
            yield

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> Response:
        checks = await _readiness(services)
        ready = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if ready else "unavailable", "checks": checks},
            status_code=200 if ready else 503,
        )

    async def metrics_endpoint(_request: Request) -> Response:
        return PlainTextResponse(
            generate_latest(services.metrics.registry).decode(), media_type=CONTENT_TYPE_LATEST
        )

    routes: list[BaseRoute] = [
        webhooks.route(settings, services.require_client),
        *web.routes(settings),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    app.add_middleware(CachingMiddleware, settings=settings)
    app.add_middleware(ObservabilityMiddleware, metrics=services.metrics)
    return app
