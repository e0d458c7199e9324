"""The GraphQL endpoint: Strawberry's ASGI view with AppSync's authentication and error shapes.

HTTP (``GET`` and ``POST /graphql``), in this order, each step cheap before the next:

1. a body larger than :data:`MAX_BODY_BYTES` is refused (413), counted while reading;
2. the caller is authenticated (401 otherwise): an anonymous request costs no parsing;
3. the request is read and checked (``api.graphql_http``: 4xx for anything malformed,
   persisted queries resolved);
4. the operation runs (depth, token, alias and cost limits in ``api.schema``).

WebSocket ``/graphql``: ``graphql-transport-ws`` and, for older Apollo clients, the legacy
``graphql-ws`` protocol (``subscriptions-transport-ws``); credentials in the
``connection_init`` payload (top level or under ``headers``) or on the upgrade request. Every
message is read with the same guarded JSON parser as HTTP bodies and its shape checked before
Strawberry reads it; errors are AppSync-shaped in both. An ``Origin`` not on
``BOOKING_CORS_ORIGINS`` (when set) is refused with 403 before the upgrade. AppSync's own
real-time protocol lives on ``/graphql/realtime`` (``api.realtime``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import timedelta
from typing import Any, cast

from cross_web import HTTPException
from graphql import GraphQLError, GraphQLSyntaxError, parse
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Message as ASGIMessage
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.async_base_view import AsyncWebSocketAdapter
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import CompleteMessage, Message
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import (
    CompleteMessage as WSCompleteMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.types import ErrorMessage, OperationMessage
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.unset import UNSET

from api.context import RequestContext
from api.cors import websocket_origin_refused
from api.errors import appsync_error, request_error_body, unauthorized_body
from api.fanout import SharedStream, SharedStreams, stream_key
from api.graphql_http import (
    BAD_REQUEST,
    GraphQLRequest,
    RequestRefused,
    is_subscription,
    loads,
    read_request,
    register_persisted,
)
from api.http_cache import REQUEST_STATE
from api.ide import offline_graphiql_html
from api.loaders import Loaders, Reader
from api.schema import build_schema
from api.services import Services
from api.ws_support import (
    CLOSE_INIT_TIMEOUT,
    CLOSE_TOO_MANY_INITS,
    CONNECTION_INIT_TIMEOUT_SECONDS,
    close_when_expired,
    deny,
    stop_expiry_timer,
)
from booking.errors import UnauthorizedException
from booking.settings import DEV_API_KEY

# GraphQL documents are small (the token limit caps them); variables carry a few ids.
MAX_BODY_BYTES = 1024 * 1024
UNSUPPORTED_OPERATION = "UnsupportedOperation"
SUBSCRIPTION_OVER_HTTP = (
    "subscriptions are served over WebSocket: graphql-transport-ws or graphql-ws on /graphql, "
    "AppSync's real-time protocol on /graphql/realtime (or ask for multipart/mixed)"
)
# What the view read: for the caching middleware around it (scope state, REQUEST_STATE) and
# for ``parse_http_body`` (the same task, further down Strawberry's call).
_READ: ContextVar[GraphQLRequest] = ContextVar("graphql_request")


def transport_ws_problem(message: object) -> str | None:
    """Why a graphql-transport-ws message is not one the protocol defines, or None.

    Strawberry's handler trusts a message's shape (a ``subscribe`` without a payload, a
    message that is a list, an id that is a number): checked here before it reads one.
    """
    return _message_problem(message, ("subscribe", "complete"), "subscribe")


def graphql_ws_problem(message: object) -> str | None:
    """The same for the legacy Apollo ``graphql-ws`` protocol (``start`` / ``stop``)."""
    return _message_problem(message, ("start", "stop"), "start")


def syntax_problem(query: str) -> str | None:
    """The syntax error of a document that does not parse (a close reason: at most 123
    bytes), or None."""
    try:
        parse(query)
    except GraphQLSyntaxError as error:
        return error.message.encode()[:120].decode(errors="ignore")
    return None


def _message_problem(message: object, with_id: tuple[str, ...], carries_query: str) -> str | None:
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "a message must be a JSON object with a string `type`"
    kind = message["type"]
    if kind in with_id and not isinstance(message.get("id"), str):
        return f"a {kind} message needs a string `id`"
    if kind == carries_query:
        payload = message.get("payload")
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            return f"a {kind} message needs a payload with a string `query`"
        for field in ("variables", "extensions"):
            if payload.get(field) is not None and not isinstance(payload[field], dict):
                return f"`payload.{field}` must be an object"
        name = payload.get("operationName")
        if name is not None and not isinstance(name, str):
            return "`payload.operationName` must be a string"
    return None


class _AppSyncTransportWSHandler(BaseGraphQLTransportWSHandler[RequestContext, None]):
    """graphql-transport-ws with AppSync-shaped errors in ``next`` and ``error`` messages,
    every message's shape checked before Strawberry reads it (4400 otherwise), and
    subscriptions shared by the callers asking the same (``api.fanout``)."""

    view: BookingGraphQL

    async def run_operation(self, operation: Operation[RequestContext, None]) -> None:
        key = stream_key(
            GRAPHQL_TRANSPORT_WS_PROTOCOL,
            operation.query,
            operation.operation_name,
            operation.variables,
            self.context.principal,
        )
        if key is None:
            await super().run_operation(operation)
            return

        async def open_stream(_stream: SharedStream) -> Any:
            return await self.schema.stream(
                operation.query,
                variable_values=operation.variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation.operation_name,
            )

        prefix = '{"id":' + json.dumps(operation.id) + ',"type":"next","payload":'
        try:
            async with self.view.shared_streams.join(key, open_stream) as stream:
                async for link in stream.results():
                    if isinstance(link.result, PreExecutionError):
                        # Not valid, not allowed: every joiner is told, as it would be alone.
                        await self._refuse(operation, link.result)
                        return
                    if operation.completed:
                        return
                    await send_text(self.websocket, prefix + link.payload_json + "}")
            await operation.send_operation_message(
                CompleteMessage(id=operation.id, type="complete")
            )
        except (WebSocketDisconnect, OSError):
            return  # the connection went away while we sent: nobody to tell
        except RuntimeError as err:
            # Starlette's "send once a close message has been sent": closed under us.
            if not websocket_closed(self.websocket):
                await self._failed(operation, err)
        except Exception as err:
            await self._failed(operation, err)

    async def _refuse(
        self, operation: Operation[RequestContext, None], result: PreExecutionError
    ) -> None:
        """A subscription that cannot run, as the protocol says: a document that does not
        parse, or names no operation to run, closes the connection (4400); any other error
        (invalid, not allowed) is an ``error`` message for this operation alone."""
        errors = result.errors or []
        first = errors[0] if errors else None
        reason = None
        if isinstance(first, GraphQLSyntaxError):
            reason = first.message
        elif first is not None and isinstance(first.original_error, CannotGetOperationTypeError):
            reason = first.original_error.as_http_error_reason()
        if reason is not None:
            self.operations.pop(operation.id, None)
            await self.websocket.close(code=4400, reason=reason)
            return
        await operation.send_initial_errors(errors)

    async def _failed(self, operation: Operation[RequestContext, None], err: Exception) -> None:
        """As Strawberry's own handler: logged, then ``complete``."""
        await self.handle_task_exception(err)
        with contextlib.suppress(Exception):
            await operation.send_operation_message(
                CompleteMessage(id=operation.id, type="complete")
            )

    async def handle_message(self, message: Message) -> None:
        problem = transport_ws_problem(message)
        if problem is None and message["type"] == "subscribe":
            # Strawberry's stream raises on a document that does not parse, and its handler
            # then answers a bare `complete`, as if the operation had ended well.
            problem = syntax_problem(message["payload"]["query"])
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)

    async def send_message(self, message: Message) -> None:
        raw: dict[str, Any] = dict(message)
        payload = raw.get("payload")
        if raw["type"] == "next" and isinstance(payload, dict) and payload.get("errors"):
            raw["payload"] = {**payload, "errors": [appsync_error(e) for e in payload["errors"]]}
        elif raw["type"] == "error" and isinstance(payload, list):
            raw["payload"] = [appsync_error(e) for e in payload]
        await super().send_message(cast("Message", raw))


class _AppSyncGraphQLWSHandler(BaseGraphQLWSHandler[RequestContext, None]):
    """The legacy Apollo ``graphql-ws`` protocol, checked, AppSync-shaped and shared like the
    above, with graphql-transport-ws's rules for ``connection_init``: within
    CONNECTION_INIT_TIMEOUT_SECONDS (4408), and once (4429). A second one would replace the
    credential whose expiry ends the subscriptions the first one authorized."""

    view: BookingGraphQL
    _init_received = False

    async def handle(self) -> None:
        deadline = asyncio.create_task(self._close_unless_initialised())
        try:
            await super().handle()
        finally:
            deadline.cancel()

    async def _close_unless_initialised(self) -> None:
        await asyncio.sleep(CONNECTION_INIT_TIMEOUT_SECONDS)
        if not self._init_received:
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                await self.websocket.close(CLOSE_INIT_TIMEOUT, "Connection initialisation timeout")

    async def handle_message(self, message: OperationMessage) -> None:
        problem = graphql_ws_problem(message)
        if problem is not None:
            await self.websocket.close(code=4400, reason=problem)
            return
        if message["type"] == "start":
            syntax = syntax_problem(message["payload"]["query"])
            if syntax is not None:
                # As for graphql-transport-ws: never a silent end for a document that does
                # not parse; this protocol answers an operation's failure with `error`.
                error = GraphQLError(syntax, extensions={"errorType": BAD_REQUEST}).formatted
                await self.send_message(ErrorMessage(type="error", id=message["id"], payload=error))
                return
        if message["type"] == "connection_init":
            if self._init_received:
                await self.websocket.close(CLOSE_TOO_MANY_INITS, "Too many initialisation requests")
                return
            self._init_received = True
        await super().handle_message(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        key = stream_key(
            GRAPHQL_WS_PROTOCOL, query, operation_name, variables, self.context.principal
        )
        if key is None:
            await super().handle_async_results(operation_id, query, operation_name, variables)
            return

        async def open_stream(_stream: SharedStream) -> Any:
            return await self.schema.subscribe(
                query=query,
                variable_values=variables,
                operation_name=operation_name,
                context_value=self.context,
                root_value=self.root_value,
            )

        prefix = '{"type":"data","id":' + json.dumps(operation_id) + ',"payload":'
        try:
            async with self.view.shared_streams.join(key, open_stream) as stream:
                async for link in stream.results():
                    if isinstance(link.result, PreExecutionError) and link.result.errors:
                        error = link.result.errors[0].formatted
                        await self.send_message(
                            ErrorMessage(type="error", id=operation_id, payload=error)
                        )
                        return
                    await send_text(self.websocket, prefix + link.payload_json + "}")
            await self.send_message(WSCompleteMessage(type="complete", id=operation_id))
        except asyncio.CancelledError:
            # A `stop`: the protocol answers `complete` (as Strawberry's own handler does).
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                await self.send_message(WSCompleteMessage(type="complete", id=operation_id))
        except (WebSocketDisconnect, OSError):
            pass  # the connection went away while we sent: nobody to tell
        except RuntimeError:
            if not websocket_closed(self.websocket):
                raise
        finally:
            self.tasks.pop(operation_id, None)

    async def send_message(self, message: OperationMessage) -> None:
        raw: dict[str, Any] = dict(message)
        payload = raw.get("payload")
        if raw["type"] == "data" and isinstance(payload, dict) and payload.get("errors"):
            raw["payload"] = {**payload, "errors": [appsync_error(e) for e in payload["errors"]]}
        elif raw["type"] == "error" and isinstance(payload, dict) and "message" in payload:
            raw["payload"] = appsync_error(payload)
        await super().send_message(cast("OperationMessage", raw))


async def send_text(websocket: AsyncWebSocketAdapter, text: str) -> None:
    """A message already encoded (a shared result's, ``api.fanout``): no encoding per send."""
    await cast(ASGIWebSocketAdapter, websocket).ws.send_text(text)


def websocket_closed(websocket: AsyncWebSocketAdapter) -> bool:
    ws = cast(ASGIWebSocketAdapter, websocket).ws
    return WebSocketState.DISCONNECTED in (ws.client_state, ws.application_state)


class BookingGraphQL(GraphQL[RequestContext, None]):
    """Strawberry's ASGI view with AppSync's authentication and error shapes."""

    graphql_transport_ws_handler_class = _AppSyncTransportWSHandler
    graphql_ws_handler_class = _AppSyncGraphQLWSHandler

    def __init__(self, services: Services, **kwargs: Any) -> None:
        super().__init__(
            build_schema(services.settings, traced=services.tracing is not None),
            subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL),
            connection_init_wait_timeout=timedelta(seconds=CONNECTION_INIT_TIMEOUT_SECONDS),
            **kwargs,
        )
        self.services = services
        self.shared_streams = SharedStreams(services.metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            settings = self.services.settings
            origin = websocket_origin_refused(
                scope, settings.cors_origins, loopback=settings.dev_mode
            )
            if origin is not None:
                body = unauthorized_body(f"origin {origin} is not allowed (BOOKING_CORS_ORIGINS)")
                await deny(WebSocket(scope, receive, send), 403, body)
                return
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        response = await self._http(scope, receive)
        await response(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive) -> Response:
        declared = _declared_length(scope)
        if declared is not None and declared > MAX_BODY_BYTES:
            return _too_large()
        request = Request(scope, _limited(receive))
        if self._wants_ide(request):
            return cast("Response", await self.run(request))
        try:
            principal = await self.services.authenticator.authenticate(request.headers)
        except UnauthorizedException as err:
            return JSONResponse(unauthorized_body(err.message), status_code=401)
        state = scope.setdefault("state", {})
        state["principal"] = principal
        try:
            body = await request.body() if request.method == "POST" else b""
            read = read_request(
                request.method,
                request.query_params,
                request.headers.get("content-type", ""),
                body,
                self.services.persisted_queries,
            )
        except _BodyTooLarge:
            return _too_large()
        except RequestRefused as refused:
            return JSONResponse(refused.body, status_code=refused.status)
        if self._get_stream_transport_from_headers(request.headers) is None and is_subscription(
            read.query, read.operation_name
        ):
            # Plain HTTP cannot carry a stream: running it would answer `data: null` as if
            # there were nothing to say.
            return JSONResponse(
                request_error_body(SUBSCRIPTION_OVER_HTTP, UNSUPPORTED_OPERATION), status_code=400
            )
        state[REQUEST_STATE] = read
        _READ.set(read)
        try:
            return cast("Response", await self.run(request))
        except HTTPException as err:
            # Requests GraphQL will not run as sent (a mutation over GET, ...).
            return JSONResponse(request_error_body(err.reason), status_code=err.status_code)

    async def parse_http_body(self, request: Any) -> GraphQLRequestData:
        """What ``_http`` read and checked: the body is never parsed a second time."""
        read = _READ.get()
        transport = self._get_stream_transport_from_headers(request.headers)
        return GraphQLRequestData(
            query=read.query,
            variables=read.variables,
            operation_name=read.operation_name,
            extensions=read.extensions,
            protocol=transport.protocol if transport else "http",
        )

    def decode_json(self, data: str | bytes) -> object:
        # WebSocket messages: the same guard as HTTP bodies. Strawberry answers a
        # JSONDecodeError by closing the connection with 4400 (a bad message).
        try:
            return loads(data, "message")
        except RequestRefused as refused:
            raise json.JSONDecodeError(str(refused), "", 0) from None

    def is_websocket_origin_allowed(self, request: Any, origin: str) -> bool:
        # Decided by api.cors in __call__ (403 before the upgrade): one rule for every path.
        return True

    @property
    def graphql_ide_html(self) -> str:
        # React and GraphiQL from this API, never from a CDN (api/ide.py); under booking dev
        # with its documented key, the page sends that key by itself.
        settings = self.services.settings
        dev_key = DEV_API_KEY if settings.dev_mode and DEV_API_KEY in settings.api_keys else None
        return offline_graphiql_html(dev_key)

    def should_render_graphql_ide(self, request: Any) -> bool:
        # A GET that carries only a persisted query's hash is a query, not the IDE.
        return _READ.get(None) is None and super().should_render_graphql_ide(request)

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
        close_when_expired(context.request, context.principal.expires_at)
        return None

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        try:
            return await super().run(request, context, root_value)
        finally:
            if isinstance(request, WebSocket):
                stop_expiry_timer(request)

    async def process_result(self, request: Any, result: ExecutionResult) -> GraphQLHTTPResponse:
        read = _READ.get(None)
        # A new persisted query that parsed and validated (a PreExecutionError did not).
        if read is not None and read.register and not isinstance(result, PreExecutionError):
            principal = request.scope["state"]["principal"]
            register_persisted(self.services.persisted_queries, read, principal.actor)
        body: dict[str, Any] = {"data": result.data}
        if result.errors:
            body["errors"] = [appsync_error(dict(e.formatted)) for e in result.errors]
        return body  # type: ignore[return-value]


class _BodyTooLarge(Exception):
    pass


def _too_large() -> Response:
    return JSONResponse(
        request_error_body(f"request body larger than {MAX_BODY_BYTES} bytes"), status_code=413
    )


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
