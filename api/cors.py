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

Under ``booking dev`` (``BOOKING_DEV_MODE``) any loopback origin (``localhost``, ``127.0.0.1``,
``[::1]``, any port, http or https) is allowed too, so that a web app on a dev server of its
own talks to the API without a setting. A refused preflight is logged with the setting that
would allow it, instead of the bare 405/400 a browser developer would otherwise see.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import Scope
from strawberry.http.websocket_origin import is_same_origin, normalize_origin

log = logging.getLogger(__name__)

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
# Loopback origins, any port: allowed in dev mode.
LOOPBACK_ORIGIN = r"https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?"
_LOOPBACK = re.compile(LOOPBACK_ORIGIN)


class _LoggingCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, saying in the log which setting would allow a refused preflight."""

    def preflight_response(self, request_headers: Headers) -> Response:
        origin = request_headers.get("origin", "")
        if not self.is_allowed_origin(origin):
            log.warning(
                "refused a CORS preflight from origin %r: add it to BOOKING_CORS_ORIGINS "
                "(comma-separated exact origins) to let that page call the API",
                origin[:200],
            )
        return super().preflight_response(request_headers)


def add_cors(app: Starlette, origins: Iterable[str], *, loopback: bool = False) -> None:
    """Put CORSMiddleware for ``origins`` (and, with ``loopback``, every loopback origin)
    outermost on ``app``.

    Outermost, so that a preflight is answered before authentication or caching sees it. With
    no origin allowed at all it is there still, to answer and log refused preflights.
    """
    app.add_middleware(
        _LoggingCORSMiddleware,
        allow_origins=list(origins),
        allow_origin_regex=LOOPBACK_ORIGIN if loopback else None,
        allow_methods=ALLOWED_METHODS,
        allow_headers=ALLOWED_HEADERS,
        expose_headers=("x-request-id",),
        max_age=PREFLIGHT_MAX_AGE_SECONDS,
    )


def websocket_origin_refused(
    scope: Scope, origins: Iterable[str], *, loopback: bool = False
) -> str | None:
    """The upgrade's ``Origin`` when it may not connect (see above), else None."""
    found: dict[bytes, str] = {
        name: value.decode("latin-1") for name, value in scope.get("headers", ())
    }
    origin = found.get(b"origin")
    if origin is None or is_same_origin(origin, found.get(b"host")):
        return None
    normal = normalize_origin(origin)
    if normal is None:
        return origin
    if normal in set(origins) or (loopback and _LOOPBACK.fullmatch(normal)):
        return None
    return origin
