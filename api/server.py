"""Serving the API with uvicorn, with the limits a server facing the internet needs.

Each limit is a setting with a default (see docs/configuration.md):

- ``BOOKING_HTTP_HEADER_TIMEOUT_SECONDS``: a connection must finish sending a request's
  headers within this long (a client that trickles them, slowloris-style, is cut off);
- ``BOOKING_HTTP_KEEPALIVE_SECONDS``: an idle keep-alive connection is closed after this
  long. It is longer than the idle timeout of common load balancers (60 s), so that the
  balancer, not the API, closes idle connections (the other way round, the balancer
  sometimes sends a request on a connection the API is closing: a sporadic 502);
- ``BOOKING_HTTP_MAX_CONNECTIONS``: connections (WebSockets included) served at once;
  beyond, new requests get 503 at once instead of queueing without bound.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from booking.settings import Settings

log = logging.getLogger("api.server")


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
    }
    return options
