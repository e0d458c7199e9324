"""HTTP caching of GraphQL reads, for a CDN or reverse proxy in front of the API.

:class:`CachingMiddleware` wraps ``/graphql``: it chooses a ``Cache-Control`` per operation,
sets ``Vary`` on the auth headers, and adds ``ETag`` / ``304 Not Modified`` to GET answers.

The policy is an allowlist: a GET query is ``public`` only when every field it selects is a
public catalogue field (buildings, apartments, their status and rent). Anything else
(bookings, users, the Step Functions list, introspection, any error, any non-200 status, any
POST) is ``private, no-store``, so an unknown or new field can never leak into a shared cache.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Final

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    parse,
)

from booking.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

NO_STORE: Final = "private, no-store"
# The scope-state key under which the GraphQL view leaves the request it read.
REQUEST_STATE: Final = "graphql_request"
VARY: Final = "x-api-key, Authorization"

# Public catalogue fields: type -> field -> type of its value when it is an object
# (None for leaves). Everything not listed makes the response private.
_ADDRESS: Final[dict[str, str | None]] = {
    "streetAddress": None,
    "postalCode": None,
    "city": None,
    "country": None,
}
PUBLIC_FIELDS: Final[dict[str, dict[str, str | None]]] = {
    "Query": {
        "getApartment": "Apartment",
        "getAllApartmentsPerBuilding": "Apartment",
        "getBuilding": "Building",
        "getAllBuildings": "BuildingsResult",
    },
    "BuildingsResult": {"items": "Building", "nextToken": None},
    "Building": {
        "id": None,
        "name": None,
        "address": "Address",
        "numberOfApartments": None,
        "apartments": "Apartment",
        "updateOn": None,
        "createdOn": None,
    },
    "Address": _ADDRESS,
    "Apartment": {
        "id": None,
        "apartmentNumber": None,
        "building": "Building",
        "apartmentType": None,
        "apartmentStatus": None,
        "kitchen": None,
        "numberOfRooms": None,
        "createdOn": None,
        "monthlyRent": None,
        "currency": None,
    },
}


# ---------------------------------------------------------------- policy


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode | None:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        named = [op for op in operations if op.name is not None and op.name.value == name]
        return named[0] if len(named) == 1 else None
    return operations[0] if len(operations) == 1 else None


def _selection_is_public(
    selection_set: SelectionSetNode | None,
    type_name: str,
    fragments: dict[str, FragmentDefinitionNode],
    seen: frozenset[str],
) -> bool:
    if selection_set is None:
        return True
    allowed = PUBLIC_FIELDS.get(type_name)
    if allowed is None:
        return False
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            field = selection.name.value
            if field == "__typename":
                continue
            if field not in allowed:
                return False
            child = allowed[field]
            if child is None:
                if selection.selection_set is not None:
                    return False
            elif selection.selection_set is None or not _selection_is_public(
                selection.selection_set, child, fragments, seen
            ):
                return False
        elif isinstance(selection, InlineFragmentNode):
            condition = selection.type_condition
            if condition is not None and condition.name.value != type_name:
                return False
            if not _selection_is_public(selection.selection_set, type_name, fragments, seen):
                return False
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            fragment = fragments.get(name)
            if fragment is None or name in seen:
                return False
            if fragment.type_condition.name.value != type_name:
                return False
            if not _selection_is_public(
                fragment.selection_set, type_name, fragments, seen | {name}
            ):
                return False
        else:  # pragma: no cover - graphql-core has no other selection kinds
            return False
    return True


def classify(query: str | None, operation_name: str | None) -> str:
    """``"public"`` for a catalogue-only query, ``"mutation"`` for a mutation or
    subscription, ``"private"`` for everything else (including unparsable input)."""
    if not query:
        return "private"
    try:
        document = parse(query, no_location=True, max_tokens=5000)
    except GraphQLError:
        return "private"
    operation = _operation(document, operation_name)
    if operation is None:
        return "private"
    if operation.operation is not OperationType.QUERY:
        return "mutation"
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    if _selection_is_public(operation.selection_set, "Query", fragments, frozenset()):
        return "public"
    return "private"


def public_cache_control(settings: Settings) -> str:
    return (
        f"public, max-age={settings.cache_max_age}, "
        f"stale-while-revalidate={settings.cache_stale_while_revalidate}"
    )


# ---------------------------------------------------------------- ETags


def etag_for(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:40] + '"'


def etag_matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    # Weak comparison (RFC 9110 13.1.2): W/"x" matches "x".
    return any(
        candidate.strip().removeprefix("W/") == etag for candidate in if_none_match.split(",")
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _set_headers(
    headers: Iterable[tuple[bytes, bytes]], updates: dict[bytes, bytes | None]
) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() not in updates]
    kept.extend((k, v) for k, v in updates.items() if v is not None)
    return kept


# ---------------------------------------------------------------- middleware


class CachingMiddleware:
    """ASGI middleware for the GraphQL path; every other path and WebSockets pass through.

    It reads nothing of the request itself: the GraphQL view leaves the request it read
    (persisted queries resolved) in the scope's state under :data:`REQUEST_STATE`, which
    the policy is decided from once the view has answered.
    """

    def __init__(self, app: ASGIApp, settings: Settings, path: str = "/graphql") -> None:
        self.app = app
        self.path = path
        self.public = public_cache_control(settings).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            await self._get(scope, receive, send)
        else:
            await self._other(scope, receive, send)

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        if_none_match = _header(scope, b"if-none-match")

        def decide(status: int, body: bytes) -> bytes:
            read = scope.get("state", {}).get(REQUEST_STATE)
            query = getattr(read, "query", None)
            name = getattr(read, "operation_name", None)
            if status == 200 and classify(query, name) == "public" and not _has_errors(body):
                return self.public
            return NO_STORE.encode()

        await _buffered(self.app, scope, receive, send, decide, if_none_match, with_etag=True)

    async def _other(self, scope: Scope, receive: Receive, send: Send) -> None:
        # POST is how mutations travel; no cache may store any of it. Nothing to buffer.
        async def headed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {
                    **message,
                    "headers": _set_headers(
                        message.get("headers", []),
                        {b"cache-control": NO_STORE.encode(), b"vary": VARY.encode()},
                    ),
                }
            await send(message)

        await self.app(scope, receive, headed)


def _has_errors(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return True
    return not isinstance(payload, dict) or bool(payload.get("errors"))


async def _buffered(
    app: ASGIApp,
    scope: Scope,
    receive: Receive,
    send: Send,
    decide: Callable[[int, bytes], bytes],
    if_none_match: str | None,
    *,
    with_etag: bool,
) -> None:
    """Run the app, hold its (small, JSON) response, then send it with our headers.

    A streamed response (multipart subscriptions over HTTP) is passed through
    untouched except for ``no-store``.
    """
    start: Message | None = None
    chunks: list[bytes] = []
    streaming = False

    async def capture(message: Message) -> None:
        nonlocal start, streaming
        if message["type"] == "http.response.start":
            start = message
            content_type = ""
            for key, value in message.get("headers", []):
                if key.lower() == b"content-type":
                    content_type = bytes(value).decode("latin-1").lower()
            if "multipart" in content_type or "event-stream" in content_type:
                streaming = True
                headers = _set_headers(
                    message.get("headers", []), {b"cache-control": NO_STORE.encode()}
                )
                await send({**message, "headers": headers})
        elif message["type"] == "http.response.body":
            if streaming:
                await send(message)
            else:
                chunks.append(message.get("body", b""))
        else:
            await send(message)

    await app(scope, receive, capture)
    if streaming or start is None:
        return
    status = int(start["status"])
    body = b"".join(chunks)
    updates: dict[bytes, bytes | None] = {
        b"cache-control": decide(status, body),
        b"vary": VARY.encode(),
        b"content-length": str(len(body)).encode(),
    }
    if with_etag and status == 200:
        etag = etag_for(body)
        updates[b"etag"] = etag.encode()
        if etag_matches(if_none_match, etag):
            headers = _set_headers(start.get("headers", []), {**updates, b"content-length": None})
            headers = [(k, v) for k, v in headers if k.lower() != b"content-type"]
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
    headers = _set_headers(start.get("headers", []), updates)
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": body})
