"""Serving the API with uvicorn, with the limits a server facing the internet needs.

Each limit is a setting with a default (see docs/configuration.md):

- ``BOOKING_HTTP_HEADER_TIMEOUT_SECONDS``: a connection must finish sending a request's
  headers within this long (a client that trickles them, slowloris-style, is cut off);
- ``BOOKING_HTTP_KEEPALIVE_SECONDS``: an idle keep-alive connection is closed after this
  long. It is longer than the idle timeout of common load balancers (60 s), so that the
  balancer, not the API, closes idle connections (the other way round, the balancer
  sometimes sends a request on a connection the API is closing: a sporadic 502);
- ``BOOKING_HTTP_MAX_CONNECTIONS``: connections (WebSockets included) served at once;
  beyond, new requests get 503 at once instead of queueing without bound;
- a WebSocket message is at most :data:`MAX_WS_MESSAGE_BYTES` (a GraphQL document is small;
  the token limit caps it), so one frame cannot make the process buffer megabytes.

With ``BOOKING_TLS_CERTFILE`` and ``BOOKING_TLS_KEYFILE`` it serves HTTPS and WSS on the same
port (AppSync clients such as Amplify always dial ``wss://``).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS

from booking.settings import Settings

log = logging.getLogger("api.server")

MAX_WS_MESSAGE_BYTES = 1024 * 1024


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol, closing connections whose headers do not arrive in time."""

    header_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket implementation parses the request again with its own limits and, past
        # them, neither answers nor closes: the client would wait for its own timeout. Answer
        # 400 here instead (a long ?header= of credentials is the usual way to get there).
        headers = list(self.scope["headers"])
        too_long = len(self.url) + len(self.scope["method"]) + 10 > MAX_LINE_LENGTH or any(
            len(name) + len(value) + 2 > MAX_LINE_LENGTH for name, value in headers
        )
        if too_long or len(headers) > MAX_NUM_HEADERS:
            self.send_400_response(
                f"WebSocket upgrade refused: a request line or header over {MAX_LINE_LENGTH} "
                f"bytes, or over {MAX_NUM_HEADERS} headers"
            )
            return
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        log.info("closed a connection whose request headers took over %.0f s", self.header_timeout)
        self.transport.close()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` for these settings."""
    protocol = type(
        "BookingHTTPProtocol",
        (HeaderTimeoutProtocol,),
        {"header_timeout": settings.http_header_timeout_seconds},
    )
    options: dict[str, Any] = {
        "host": settings.api_host,
        "port": settings.api_port,
        "http": protocol,
        "timeout_keep_alive": settings.http_keepalive_seconds,
        "limit_concurrency": settings.http_max_connections,
        "log_level": settings.log_level.lower(),
        "lifespan": "on",
        # The app logs each request with its request id; uvicorn's line would double it.
        "access_log": False,
        "ws_max_size": MAX_WS_MESSAGE_BYTES,
    }
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        options["ssl_certfile"] = str(settings.tls_certfile)
        options["ssl_keyfile"] = str(settings.tls_keyfile)
    return options
