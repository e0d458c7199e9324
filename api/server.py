"""Serving the API with uvicorn, with the limits a server facing the internet needs.

Each limit is a setting with a default (see docs/configuration.md):

- ``BOOKING_HTTP_HEADER_TIMEOUT_SECONDS``: a connection must finish sending a request's
  headers within this long (a client that trickles them, slowloris-style, is cut off);
- ``BOOKING_HTTP_BODY_TIMEOUT_SECONDS``: and its body within this long once the headers are
  in, whether or not the application reads it yet (the payment webhook reads its body before
  it can check the signature: an anonymous slow body must not hold a connection slot);
- a request's head (request line and headers) is at most :data:`MAX_HEAD_BYTES`; a larger
  one is answered 431 as soon as it passes the bound, never read whole (WebSocket upgrades
  are bound the same way, plus the 8 KiB per line their own parser allows);
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
import json
import logging
from typing import Any

from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS

from api.errors import request_error_body
from booking.settings import Settings

log = logging.getLogger("api.server")

MAX_WS_MESSAGE_BYTES = 1024 * 1024
# A request's line and headers together; a JWT is a few KiB, the rest a few hundred bytes.
# The same bound as Node.js' default --max-http-header-size.
MAX_HEAD_BYTES = 16 * 1024
_HEAD_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)


class BoundedHTTPProtocol(HttpToolsProtocol):
    """uvicorn's HTTP/1.1 protocol with deadlines and a size bound for what a peer sends
    before anyone knows who it is: headers in time, a body in time, a head of bounded size."""

    header_timeout: float = 10.0
    body_timeout: float = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        # Bytes received since the current request's head began; None once it is complete.
        self._head_bytes: int | None = 0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._start_header_timer()

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            self._head_bytes += len(data)
        super().data_received(data)
        # Still in the head after this much: the parser would buffer whatever comes next.
        if (
            self._head_bytes is not None
            and self._head_bytes > MAX_HEAD_BYTES
            and not self.transport.is_closing()
        ):
            self._refuse_large_head()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()  # the next request on a kept-alive connection

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        self._head_bytes = None
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            self._body_timer = self.loop.call_later(self.body_timeout, self._body_too_slow)
        # A head that arrived whole in one read: measured from what was parsed. Answered by
        # uvicorn's own request cycle (as it answers 503), so the body is consumed in order.
        size = len(self.url) + 16 + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEAD_BYTES:
            log.info("refused a request whose head passed %d bytes (431)", MAX_HEAD_BYTES)
            app, self.app = self.app, _head_too_large
            try:
                super().on_headers_complete()
            finally:
                self.app = app
            return
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._stop_body_timer()
        self._head_bytes = 0  # what follows on a kept-alive connection is the next head
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        # The WebSocket implementation parses the request again with its own limits and, past
        # them, neither answers nor closes: the client would wait for its own timeout. Answer
        # 400 here instead (a long ?header= of credentials is the usual way to get there).
        headers = list(self.scope["headers"])
        too_long = len(self.url) + len(self.scope["method"]) + 10 > MAX_LINE_LENGTH or any(
            len(name) + len(value) + 2 > MAX_LINE_LENGTH for name, value in headers
        )
        self._stop_body_timer()
        if too_long or len(headers) > MAX_NUM_HEADERS:
            self.send_400_response(
                f"WebSocket upgrade refused: a request line or header over {MAX_LINE_LENGTH} "
                f"bytes, or over {MAX_NUM_HEADERS} headers"
            )
            return
        super().handle_websocket_upgrade()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        self._stop_body_timer()
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

    def _stop_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_too_slow(self) -> None:
        # The application, if it is reading the body, sees a disconnect and answers nobody.
        self._body_timer = None
        log.info("closed a connection whose request body took over %.0f s", self.body_timeout)
        self.transport.close()

    def _refuse_large_head(self) -> None:
        self._stop_header_timer()
        log.info("refused a request whose head passed %d bytes (431)", MAX_HEAD_BYTES)
        body = _head_too_large_body()
        self.transport.write(_HEAD_TOO_LARGE % (len(body), body))
        self.transport.close()


def _head_too_large_body() -> bytes:
    message = f"request line and headers larger than {MAX_HEAD_BYTES} bytes"
    return json.dumps(request_error_body(message)).encode()


async def _head_too_large(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI answer to a head over the bound (no application sees the request)."""
    body = _head_too_large_body()
    await send(
        {
            "type": "http.response.start",
            "status": 431,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.run`` / ``uvicorn.Config`` for these settings."""
    protocol = type(
        "BookingHTTPProtocol",
        (BoundedHTTPProtocol,),
        {
            "header_timeout": settings.http_header_timeout_seconds,
            "body_timeout": settings.http_body_timeout_seconds,
        },
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
        # Decline permessage-deflate (every browser offers it). A compression context per
        # connection cost 76.3 KB of RSS per subscriber against 35 KB without, and compressing
        # one pre-encoded frame for each of 10,000 subscribers undoes the fan-out's
        # encode-once; the messages are small JSON (BENCHMARKS.md, "Live updates").
        "ws_per_message_deflate": False,
    }
    if settings.tls_certfile is not None and settings.tls_keyfile is not None:
        options["ssl_certfile"] = str(settings.tls_certfile)
        options["ssl_keyfile"] = str(settings.tls_keyfile)
    return options
