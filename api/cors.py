"""Which browser origins may call the API: ``BOOKING_CORS_ORIGINS``, for HTTP and WebSockets.

HTTP goes through Starlette's ``CORSMiddleware`` (:func:`add_cors`): preflights allow the
methods and headers AppSync clients send, and an origin not on the list gets no
``Access-Control-Allow-Origin``, so the browser refuses the answer. Credentials travel in
headers (``x-api-key``, ``Authorization``), never in cookies, so no
``Access-Control-Allow-Credentials``.

Browsers do not apply CORS to WebSockets; they send ``Origin`` on the upgrade instead.
:func:`websocket_origin_refused` applies the same rule to it on every WebSocket path: no
``Origin`` (a client outside a browser) and the API's own origin are accepted, any other origin
only when it is on the list, so "unset" means "same origin only" for HTTP and WebSockets alike.
Refused upgrades get 403 before anything else is sent.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Scope
from strawberry.http.websocket_origin import is_same_origin, normalize_origin

ALLOWED_METHODS = ("GET", "POST", "OPTIONS")
# What Amplify, the AppSync SDKs and plain fetch() send with a GraphQL request.
ALLOWED_HEADERS = (
    "content-type",
    "x-api-key",
    "authorization",
    "x-amz-date",
    "x-amz-user-agent",
    "x-amz-security-token",
)
# How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE_SECONDS = 600


def add_cors(app: Starlette, origins: Iterable[str]) -> None:
    """Put CORSMiddleware for ``origins`` outermost on ``app`` (nothing when there are none).

    Outermost, so that a preflight is answered before authentication or caching sees it.
    """
    allowed = list(origins)
    if not allowed:
        return
    app.add_middleware(
        CORSMiddleware,
        allow_origins=allowed,
        allow_methods=ALLOWED_METHODS,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=("x-request-id",),
        max_age=PREFLIGHT_MAX_AGE_SECONDS,
    )


def websocket_origin_refused(scope: Scope, origins: Iterable[str]) -> str | None:
    """The upgrade's ``Origin`` when it may not connect (see above), else None."""
    found: dict[bytes, str] = {
        name: value.decode("latin-1") for name, value in scope.get("headers", ())
    }
    origin = found.get(b"origin")
    if origin is None or is_same_origin(origin, found.get(b"host")):
        return None
    if normalize_origin(origin) in set(origins):
        return None
    return origin
