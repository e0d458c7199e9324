"""The ASGI application: GraphQL over HTTP and WebSocket, health, readiness and metrics.

``create_app(settings)`` builds it; its lifespan opens the asyncpg pool, the
Temporal client (with the production data converter) and the one LISTEN
connection that feeds subscriptions. Run it with ``booking api`` (uvicorn).

Routes:

- ``POST /graphql``, ``GET /graphql`` (queries only; in dev mode a browser gets GraphiQL,
  served offline by ``api.ide``), WebSocket ``/graphql`` (graphql-transport-ws and the
  legacy Apollo graphql-ws, ``api.graphql_view``);
- WebSocket ``/graphql/realtime``: AppSync's real-time protocol (``api.realtime``);
- ``GET /healthz``: the process answers; ``GET /readyz``: the database, Temporal
  and the LISTEN connection answer; ``GET /metrics``: Prometheus;
- ``POST /webhooks/payments`` (``api.webhooks``);
- the tenant page at ``/`` and its assets (``api.web``), and HTTP caching of
  ``/graphql`` reads (``api.http_cache``);
- CORS for the origins in ``BOOKING_CORS_ORIGINS`` (``api.cors``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from temporalio.client import Client

from api import ide, mailbox, web, webhooks
from api.auth import Authenticator
from api.cors import add_cors
from api.graphql_view import BookingGraphQL
from api.http_cache import CachingMiddleware
from api.loaders import within
from api.metrics import ObservabilityMiddleware
from api.realtime import AppSyncRealtime
from api.services import Services, open_services
from booking import tracing
from booking.settings import Settings
from booking.store import mail as mail_store

log = logging.getLogger(__name__)

READY_TIMEOUT_SECONDS = 2.0


async def _readiness(services: Services) -> dict[str, str]:
    """Each dependency answers within READY_TIMEOUT_SECONDS, or is reported unavailable.

    The probes run concurrently and are bounded by ``within`` (abandoned at the deadline),
    so /readyz answers within its budget even when a dependency hangs.
    """

    async def database() -> None:
        async with services.require_pool().acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def temporal() -> None:
        await services.require_client().service_client.check_health()

    async def check(name: str, probe: Callable[[], Awaitable[None]]) -> str:
        try:
            await within(READY_TIMEOUT_SECONDS, probe())
        except Exception as err:
            log.warning("readiness check %s failed: %s", name, type(err).__name__)
            return "unavailable"
        return "ok"

    names = ("database", "temporal")
    results = await asyncio.gather(check("database", database), check("temporal", temporal))
    checks = dict(zip(names, results, strict=True))
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
    services = Services(
        settings=settings,
        authenticator=Authenticator(settings),
        tracing=tracing.configure("booking-api"),
    )
    graphql = BookingGraphQL(
        services,
        graphql_ide="graphiql" if settings.dev_mode else None,
        keep_alive=True,
        keep_alive_interval=settings.ws_keepalive_seconds,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        try:
            async with open_services(services, pool=pool, client=client):
                yield
        finally:
            if services.tracing is not None:
                services.tracing.shutdown()

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
        if services.pool is not None:
            try:
                async with services.pool.acquire(timeout=2) as conn:
                    services.metrics.set_notifications(await mail_store.counts(conn))
            except (OSError, asyncpg.PostgresError, TimeoutError) as err:
                # The request metrics are still worth serving with the database away.
                log.warning("notification counts not read for /metrics: %s", err)
        return PlainTextResponse(
            generate_latest(services.metrics.registry).decode(), media_type=CONTENT_TYPE_LATEST
        )

    routes: list[BaseRoute] = [
        webhooks.route(settings, services.require_client),
        *web.routes(settings),
        Route("/graphql", graphql, methods=["GET", "POST"]),
        WebSocketRoute("/graphql", graphql),
        WebSocketRoute(
            "/graphql/realtime", AppSyncRealtime(services, graphql.schema, graphql.shared_streams)
        ),
        *(ide.routes() if settings.dev_mode else []),
        *mailbox.routes(settings),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.services = services
    app.add_middleware(CachingMiddleware, settings=settings)
    app.add_middleware(ObservabilityMiddleware, metrics=services.metrics)
    add_cors(app, settings.cors_origins, loopback=settings.dev_mode)
    if services.tracing is not None:
        from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

        # Outermost: the request's span is the trace's root, CORS and caching inside it.
        app.add_middleware(OpenTelemetryMiddleware)
    return app
