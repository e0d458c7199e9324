"""AppSync's real-time protocol on ``/graphql/realtime``, for clients written for AppSync.

Amplify JS and Flutter, Apollo Kotlin's ``AppSyncWsProtocol`` and gql's
``AppSyncWebsocketsTransport`` subscribe with it; for any endpoint other than AWS's own hosts,
Amplify dials ``wss://<host>/graphql/realtime``. One connection::

    client                                   server
    upgrade, subprotocol graphql-ws    ->    credentials checked: 401 and nothing else if bad
    connection_init                    ->
                                       <-    connection_ack {connectionTimeoutMs}, then ka
                                             every BOOKING_WS_KEEPALIVE_SECONDS
    start {id, payload: {data, extensions: {authorization}}}
                                       <-    start_ack once the subscription listens
                                       <-    data {id, payload: {data}} ... per change
                                       <-    or error {id, payload: {errors}} (never data)
    stop {id}                          ->
                                       <-    complete {id}

Credentials come as query parameters ``header=<base64 JSON>&payload=<base64 "{}">`` (older
Amplify, gql) or as a second subprotocol ``header-<base64url JSON>`` (Amplify v6); the JSON
holds ``host`` and ``x-api-key`` or ``Authorization``, checked by the same
:class:`~api.auth.Authenticator` as every HTTP request. Each ``start`` carries them again; a
subscription runs as the caller they name, so a tenant subscribing to another tenant's
booking gets ``error`` with ``Unauthorized``. ``host`` is not checked: the TLS certificate
and the API's own address already say which service this is. Errors are AppSync-shaped
(``errorType``, ``message``); a connection whose credential expires is closed with 4401,
and a subscription whose ``start`` credential expires ends with ``error``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import GraphQLError
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.schema.base import BaseSchema

from api.auth import Principal
from api.context import RequestContext
from api.cors import websocket_origin_refused
from api.errors import INTERNAL_FAILURE, appsync_error, unauthorized_body
from api.fanout import SharedStream, SharedStreams, stream_key
from api.graphql_http import RequestRefused, loads
from api.loaders import Loaders, Reader
from api.services import Services
from api.ws_support import (
    CLOSE_INIT_TIMEOUT,
    CONNECTION_INIT_TIMEOUT_SECONDS,
    close_when_expired,
    deny,
    seconds_until,
    stop_expiry_timer,
)
from booking.errors import UnauthorizedException

log = logging.getLogger(__name__)

SUBPROTOCOL = "graphql-ws"
# Its streams' own kind in api.fanout: the legacy Apollo protocol shares the subprotocol's name.
STREAM_KIND = "appsync-realtime"
HEADER_SUBPROTOCOL_PREFIX = "header-"
# AppSync's own value: a client that hears nothing (not even `ka`) this long closes.
CONNECTION_TIMEOUT_MS = 300_000
# AppSync's limit of subscriptions on one connection.
MAX_SUBSCRIPTIONS_PER_CONNECTION = 100
MAX_ID_LENGTH = 128
# An authorization object is a few headers; a JWT is a few kilobytes. (The upgrade's request
# line and each header are at most 8 KiB anyway: api/server.py.)
MAX_CREDENTIALS_CHARS = 8 * 1024

BAD_REQUEST = "BadRequestException"
UNSUPPORTED = "UnsupportedOperation"
LIMIT_EXCEEDED = "LimitExceededException"
INIT_TIMEOUT = "ConnectionInitTimeout"
# Close codes: a message that is not JSON; no connection_init in time.
CLOSE_BAD_MESSAGE = 4400


class _Refused(Exception):
    """A message the protocol does not allow; answered with ``error``, the connection kept."""

    def __init__(self, error_type: str, message: str, operation_id: str | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.operation_id = operation_id


def error_body(error_type: str, message: str, code: int | None = None) -> dict[str, Any]:
    """AppSync's ``{"errors": [...]}``; ``errorCode`` is what Amplify reads to stop retrying."""
    error: dict[str, Any] = {"errorType": error_type, "message": message}
    if code is not None:
        error["errorCode"] = code
    return {"errors": [error]}


def decode_credentials(encoded: str) -> dict[str, str]:
    """The authorization object from base64 (standard or URL-safe, padded or not) JSON.

    Keys are lower-cased (HTTP header names); values must be strings. Raises
    UnauthorizedException for anything else.
    """
    if not encoded or len(encoded) > MAX_CREDENTIALS_CHARS:
        raise UnauthorizedException("the credentials are missing or too long")
    text = encoded.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text, validate=True)
        decoded = loads(raw, "authorization header")
    except (binascii.Error, ValueError, RequestRefused):
        raise UnauthorizedException("the authorization header is not base64-encoded JSON") from None
    return authorization_headers(decoded)


def authorization_headers(value: object) -> dict[str, str]:
    """An authorization object (``{"host": ..., "x-api-key": ...}``) as header names -> values."""
    if not isinstance(value, Mapping):
        raise UnauthorizedException("the authorization must be a JSON object")
    return {str(k).lower(): v for k, v in value.items() if isinstance(v, str)}


def upgrade_credentials(websocket: WebSocket) -> dict[str, str]:
    """Credentials of the upgrade: a ``header-...`` subprotocol, else ``?header=...``."""
    for protocol in websocket.scope.get("subprotocols", ()):
        if protocol.startswith(HEADER_SUBPROTOCOL_PREFIX):
            return decode_credentials(protocol[len(HEADER_SUBPROTOCOL_PREFIX) :])
    header = websocket.query_params.get("header")
    if header is None:
        raise UnauthorizedException(
            "no credentials: send a header-<base64url JSON> subprotocol or ?header=<base64 JSON>"
        )
    return decode_credentials(header)


class AppSyncRealtime:
    """The ASGI endpoint of ``/graphql/realtime``."""

    def __init__(self, services: Services, schema: BaseSchema, shared: SharedStreams) -> None:
        self.services = services
        self.schema = schema
        self.shared_streams = shared

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        settings = self.services.settings
        origin = websocket_origin_refused(scope, settings.cors_origins, loopback=settings.dev_mode)
        if origin is not None:
            message = f"origin {origin} is not allowed (BOOKING_CORS_ORIGINS)"
            await deny(websocket, 403, unauthorized_body(message))
            return
        if SUBPROTOCOL not in scope.get("subprotocols", ()):
            message = f"the WebSocket subprotocol must be {SUBPROTOCOL} (AppSync's real-time)"
            await deny(websocket, 400, error_body(BAD_REQUEST, message, 400))
            return
        try:
            principal = await self.services.authenticator.authenticate(
                upgrade_credentials(websocket)
            )
        except UnauthorizedException as err:
            await deny(websocket, 401, error_body(err.error_type, err.message, 401))
            return
        await websocket.accept(subprotocol=SUBPROTOCOL)
        connection = _Connection(
            websocket,
            self.services,
            self.schema,
            self.shared_streams,
            principal,
            keepalive_seconds=settings.ws_keepalive_seconds,
        )
        close_when_expired(websocket, principal.expires_at)
        try:
            await connection.serve()
        finally:
            stop_expiry_timer(websocket)


@dataclass
class _Connection:
    websocket: WebSocket
    services: Services
    schema: BaseSchema
    shared_streams: SharedStreams
    principal: Principal
    keepalive_seconds: float
    operations: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    initialised: bool = False
    _keepalive: asyncio.Task[None] | None = None
    _send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def send(self, message: dict[str, Any]) -> None:
        await self.send_text(json.dumps(message, separators=(",", ":")))

    async def send_text(self, text: str) -> None:
        # Subscriptions and the keep-alive send from their own tasks; one frame at a time.
        async with self._send_lock:
            await self.websocket.send_text(text)

    async def serve(self) -> None:
        try:
            await self._until_closed()
        except (WebSocketDisconnect, OSError):
            pass
        finally:
            if self._keepalive is not None:
                self._keepalive.cancel()
            for task in list(self.operations.values()):
                task.cancel()
            await asyncio.gather(
                *self.operations.values(),
                *([self._keepalive] if self._keepalive else []),
                return_exceptions=True,
            )

    async def _until_closed(self) -> None:
        loop = asyncio.get_running_loop()
        init_deadline = loop.time() + CONNECTION_INIT_TIMEOUT_SECONDS
        while True:
            timeout = None if self.initialised else max(0.0, init_deadline - loop.time())
            try:
                received = await asyncio.wait_for(self.websocket.receive(), timeout)
            except TimeoutError:
                await self._connection_error(
                    INIT_TIMEOUT,
                    f"no connection_init within {CONNECTION_INIT_TIMEOUT_SECONDS:g} s",
                    CLOSE_INIT_TIMEOUT,
                )
                return
            if received["type"] == "websocket.disconnect":
                return
            data = received.get("text")
            if data is None:
                data = received.get("bytes") or b""
            try:
                message = loads(data, "message")
            except RequestRefused as refused:
                await self._connection_error(BAD_REQUEST, str(refused), CLOSE_BAD_MESSAGE)
                return
            try:
                await self._handle(message)
            except _Refused as refused:
                error: dict[str, Any] = {
                    "type": "error",
                    "payload": error_body(refused.error_type, refused.message),
                }
                if refused.operation_id is not None:
                    error["id"] = refused.operation_id
                await self.send(error)
            if self.websocket.application_state == WebSocketState.DISCONNECTED:
                return

    async def _connection_error(self, error_type: str, message: str, close_code: int) -> None:
        await self.send({"type": "connection_error", "payload": error_body(error_type, message)})
        # A close frame's reason is at most 123 bytes of UTF-8.
        await self.websocket.close(close_code, message.encode()[:120].decode(errors="ignore"))

    async def _handle(self, message: object) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("type"), str):
            raise _Refused(BAD_REQUEST, "a message must be a JSON object with a string `type`")
        kind = message["type"]
        if kind == "connection_init":
            if self.initialised:
                raise _Refused(BAD_REQUEST, "connection_init was already received")
            self.initialised = True
            await self.send(
                {
                    "type": "connection_ack",
                    "payload": {"connectionTimeoutMs": CONNECTION_TIMEOUT_MS},
                }
            )
            self._keepalive = asyncio.create_task(self._keep_alive())
        elif kind == "start":
            await self._start(message)
        elif kind == "stop":
            operation_id = _operation_id(message)
            task = self.operations.pop(operation_id, None)
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await self.send({"id": operation_id, "type": "complete"})
        elif kind == "connection_terminate":
            await self.websocket.close(1000)
        else:
            raise _Refused(UNSUPPORTED, f"{kind} is not supported through the realtime channel")

    async def _keep_alive(self) -> None:
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            while True:
                await self.send({"type": "ka"})
                await asyncio.sleep(self.keepalive_seconds)

    async def _start(self, message: dict[str, Any]) -> None:
        operation_id = _operation_id(message)
        if not self.initialised:
            raise _Refused(BAD_REQUEST, "send connection_init before start", operation_id)
        payload = message.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), str):
            raise _Refused(
                BAD_REQUEST, "a start message needs payload.data, a JSON string", operation_id
            )
        request = _subscription_request(payload["data"], operation_id)
        if operation_id in self.operations:
            raise _Refused(
                BAD_REQUEST, f"a subscription with id {operation_id} is running", operation_id
            )
        if len(self.operations) >= MAX_SUBSCRIPTIONS_PER_CONNECTION:
            raise _Refused(
                LIMIT_EXCEEDED,
                f"at most {MAX_SUBSCRIPTIONS_PER_CONNECTION} subscriptions per connection",
                operation_id,
            )
        principal = await self._start_principal(payload, operation_id)
        task = asyncio.create_task(self._run(operation_id, request, principal))
        self.operations[operation_id] = task
        task.add_done_callback(
            lambda done: (
                self.operations.pop(operation_id, None)
                if self.operations.get(operation_id) is done
                else None
            )
        )

    async def _start_principal(self, payload: dict[str, Any], operation_id: str) -> Principal:
        """Whom ``start`` names (``extensions.authorization``), else the connection's caller."""
        extensions = payload.get("extensions")
        authorization = extensions.get("authorization") if isinstance(extensions, dict) else None
        if authorization is None:
            return self.principal
        try:
            return await self.services.authenticator.authenticate(
                authorization_headers(authorization)
            )
        except UnauthorizedException as err:
            raise _Refused(err.error_type, err.message, operation_id) from None

    async def _run(self, operation_id: str, request: _Request, principal: Principal) -> None:
        acknowledged = False

        async def acknowledge() -> None:
            nonlocal acknowledged
            acknowledged = True
            await self.send({"id": operation_id, "type": "start_ack"})

        services = self.services
        connection_id = self.websocket.scope.get("state", {}).get("request_id", "-")
        request_id = f"{connection_id}:{operation_id}"

        async def open_stream(stream: SharedStream) -> Any:
            # The stream's own context: it outlives this subscriber if others follow it.
            context = RequestContext(
                services=services,
                loaders=Loaders(
                    Reader(services.require_pool(), services.settings.db_timeout_seconds)
                ),
                request_id=request_id,
                principal=principal,
                request=self.websocket,
                on_subscribed=stream.mark_live,
            )
            return await self.schema.subscribe(
                request.query,
                variable_values=request.variables,
                context_value=context,
                operation_name=request.operation_name,
            )

        # The start's own principal is part of the key: only callers with the same
        # credential share (api.fanout). What is not shared runs alone, the same way.
        key = (
            stream_key(
                STREAM_KIND, request.query, request.operation_name, request.variables, principal
            )
            or object()
        )
        # A credential of its own (the start's) that expires ends this subscription then; the
        # connection's own credential (also when the start repeats it, as Amplify's does)
        # closes the whole connection (close_when_expired), and only that.
        expires = principal.expires_at if principal != self.principal else None
        deadline = asyncio.timeout(seconds_until(expires) if expires is not None else None)
        prefix = '{"id":' + json.dumps(operation_id) + ',"type":"data","payload":'
        try:
            async with deadline, self.shared_streams.join(key, open_stream) as shared:
                if shared.live:
                    await acknowledge()
                async for link in shared.follow():
                    result = link.result
                    if result is None:
                        if not acknowledged:
                            await acknowledge()
                        continue
                    if not acknowledged and result.errors and result.data is None:
                        # Refused before it listened (not allowed, not valid): never data.
                        await self._send_errors(operation_id, result.errors)
                        return
                    if not acknowledged:
                        await acknowledge()
                    await self.send_text(prefix + link.payload_json + "}")
            await self.send({"id": operation_id, "type": "complete"})
        except TimeoutError:
            if not deadline.expired():
                raise
            expired = error_body(UnauthorizedException.error_type, "Token has expired.")
            await self.send({"id": operation_id, "type": "error", "payload": expired})
        except GraphQLError as err:
            # A document that does not parse: Strawberry raises it instead of yielding it.
            await self._send_errors(operation_id, [err])
        except (WebSocketDisconnect, OSError):
            pass  # the connection went away while we sent
        except Exception:
            if WebSocketState.DISCONNECTED in (
                self.websocket.client_state,
                self.websocket.application_state,
            ):
                return  # sending failed because the connection is gone: nothing to report
            log.exception("subscription %s failed (request id %s)", operation_id, request_id)
            failed = error_body(
                INTERNAL_FAILURE, f"An internal error occurred. Request id: {request_id}"
            )
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.send({"id": operation_id, "type": "error", "payload": failed})

    async def _send_errors(self, operation_id: str, errors: Sequence[GraphQLError]) -> None:
        shaped = [appsync_error(dict(e.formatted)) for e in errors]
        await self.send({"id": operation_id, "type": "error", "payload": {"errors": shaped}})


@dataclass(frozen=True)
class _Request:
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None


def _operation_id(message: dict[str, Any]) -> str:
    operation_id = message.get("id")
    if not isinstance(operation_id, str) or not 0 < len(operation_id) <= MAX_ID_LENGTH:
        raise _Refused(
            BAD_REQUEST, f"a {message['type']} message needs an `id` of 1 to {MAX_ID_LENGTH} chars"
        )
    return operation_id


def _subscription_request(data: str, operation_id: str) -> _Request:
    """``payload.data``: a JSON string of ``{query, variables, operationName}``."""
    try:
        request = loads(data, "payload.data")
    except RequestRefused as refused:
        raise _Refused(BAD_REQUEST, str(refused), operation_id) from None
    if not isinstance(request, dict) or not isinstance(request.get("query"), str):
        raise _Refused(BAD_REQUEST, "payload.data must hold a string `query`", operation_id)
    variables = request.get("variables")
    name = request.get("operationName")
    if variables is not None and not isinstance(variables, dict):
        raise _Refused(BAD_REQUEST, "`variables` must be an object", operation_id)
    if name is not None and not isinstance(name, str):
        raise _Refused(BAD_REQUEST, "`operationName` must be a string", operation_id)
    return _Request(request["query"], variables, name)
