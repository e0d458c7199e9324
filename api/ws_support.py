"""What both WebSocket endpoints (``/graphql`` and ``/graphql/realtime``) need alike.

- :func:`deny`: refuse an upgrade with an HTTP status and an AppSync-shaped body, before
  anything else is sent (uvicorn's ``websocket.http.response`` extension);
- :func:`close_when_expired`: no subscription outlives the credential that opened it;
- :data:`CONNECTION_INIT_TIMEOUT_SECONDS`: how long any of the three protocols waits for a
  peer that has not said who it is (``connection_init``) before it closes the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime
from typing import Any

from starlette.responses import JSONResponse
from starlette.websockets import WebSocket

# Every protocol's deadline for connection_init: an anonymous peer holds a connection slot
# this long at most (the graphql-ws library's own server allows 3 s; browsers on a slow
# link still make it in 10).
CONNECTION_INIT_TIMEOUT_SECONDS = 10.0
# The close codes graphql-transport-ws defines; the legacy protocol defines none, so it
# closes with the same ones.
CLOSE_INIT_TIMEOUT = 4408
CLOSE_TOO_MANY_INITS = 4429
# A connection whose credential expired is closed with this code (graphql-transport-ws's
# "Unauthorized"; Amplify reconnects with a fresh token when its socket closes).
EXPIRED_CLOSE_CODE = 4401
_EXPIRY_TIMER = "credential_expiry_timer"
# Close codes for an upgrade refused where the server cannot answer with an HTTP status.
_CLOSE_CODES = {400: 4400, 401: 4401, 403: 4403}


async def deny(websocket: WebSocket, status: int, body: dict[str, Any]) -> None:
    """Refuse the upgrade with ``status`` and ``body`` (a JSON error), sending nothing else."""
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse(body, status_code=status))
    else:
        # Without the extension, closing before accept is all ASGI allows (an HTTP 403).
        await websocket.close(_CLOSE_CODES.get(status, 4400))


def close_when_expired(websocket: WebSocket, expires_at: datetime | None) -> None:
    """Close ``websocket`` with 4401 the moment its credential expires (API keys: never)."""
    if expires_at is None:
        return
    stop_expiry_timer(websocket)

    def expire() -> None:
        task = asyncio.ensure_future(_close(websocket))
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    timer = asyncio.get_running_loop().call_later(seconds_until(expires_at), expire)
    setattr(websocket.state, _EXPIRY_TIMER, timer)


def stop_expiry_timer(websocket: WebSocket) -> None:
    handle = getattr(websocket.state, _EXPIRY_TIMER, None)
    if handle is not None:
        handle.cancel()


def seconds_until(moment: datetime) -> float:
    return max(0.0, (moment - datetime.now(UTC)).total_seconds())


_CLOSING: set[asyncio.Future[None]] = set()


async def _close(websocket: WebSocket) -> None:
    with contextlib.suppress(RuntimeError, OSError):
        await websocket.close(EXPIRED_CLOSE_CODE, "Unauthorized: the credential has expired")
