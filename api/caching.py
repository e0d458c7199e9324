"""HTTP caching of GraphQL reads for a CDN or reverse proxy, and the tenant page.

``install(app, settings)`` is the one entry point ``api.app.create_app`` calls. It adds:

- ``CachingMiddleware`` around ``/graphql``: automatic persisted queries (Apollo's
  APQ protocol), a ``Cache-Control`` chosen per operation, ``Vary`` on the auth
  headers, ``ETag`` and ``304 Not Modified``;
- ``/`` (the tenant page) and ``/static/<name>.<hash>.<ext>`` (its assets, named by
  content hash at startup and served ``immutable``);
- ``POST /dev/token`` (a demo tenant token), only when ``settings.dev_mode``.

The policy is an allowlist: a GET query is ``public`` only when every field it
selects is a public catalogue field (buildings, apartments, their status and
rent). Anything else (bookings, users, the Step Functions list, introspection,
any error, any non-200 status, any POST) is ``private, no-store``, so an unknown or
new field can never leak into a shared cache.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode

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
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from booking.demo import DEMO_BUILDING_ID, DEMO_TENANT_ID
from booking.settings import Settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

STATIC_DIR: Final = Path(__file__).parent / "static"
ASSET_SOURCES: Final = ("app.js", "app.css")
IMMUTABLE: Final = "public, max-age=31536000, immutable"
NO_STORE: Final = "private, no-store"
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

APQ_VERSION: Final = 1
APQ_MAX_ENTRIES: Final = 2000
APQ_MAX_QUERY_CHARS: Final = 20_000
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


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


# ---------------------------------------------------------------- persisted queries


class PersistedQueryStore:
    """Bounded LRU of hash -> query text, per process.

    A miss is cheap and self-healing (the client re-sends the query with its
    hash), so several API processes need no shared store.
    """

    def __init__(self, max_entries: int = APQ_MAX_ENTRIES) -> None:
        self._entries: OrderedDict[str, str] = OrderedDict()
        self._max = max_entries

    def get(self, sha256_hash: str) -> str | None:
        query = self._entries.get(sha256_hash)
        if query is not None:
            self._entries.move_to_end(sha256_hash)
        return query

    def put(self, sha256_hash: str, query: str) -> None:
        self._entries[sha256_hash] = query
        self._entries.move_to_end(sha256_hash)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


@dataclass(frozen=True)
class APQError(Exception):
    status: int
    error_type: str
    message: str
    code: str

    def body(self) -> bytes:
        error = {
            "message": self.message,
            "errorType": self.error_type,
            "errorInfo": None,
            "path": None,
            "locations": None,
            "data": None,
            # Apollo clients look at extensions.code to decide to re-send the query.
            "extensions": {"code": self.code},
        }
        return json.dumps({"data": None, "errors": [error]}).encode()


def resolve_persisted_query(
    store: PersistedQueryStore, query: object, extensions: object
) -> str | None:
    """Apply APQ: return the query text to execute (None when the request uses no
    persisted query and has none), registering a verified query on the way.

    Raises APQError for an unknown hash (PersistedQueryNotFound), a hash that
    does not match the query, or an unsupported protocol version.
    """
    persisted = extensions.get("persistedQuery") if isinstance(extensions, dict) else None
    if persisted is None:
        return query if isinstance(query, str) else None
    if not isinstance(persisted, dict) or persisted.get("version") != APQ_VERSION:
        raise APQError(400, "ValidationError", "Unsupported persisted query version", "BAD_REQUEST")
    sha = persisted.get("sha256Hash")
    if not isinstance(sha, str) or not _SHA256_HEX.match(sha):
        raise APQError(
            400, "ValidationError", "persistedQuery.sha256Hash must be 64 hex digits", "BAD_REQUEST"
        )
    if isinstance(query, str) and query:
        if hashlib.sha256(query.encode()).hexdigest() != sha:
            raise APQError(
                400, "ValidationError", "provided sha does not match query", "BAD_REQUEST"
            )
        if len(query) <= APQ_MAX_QUERY_CHARS:
            store.put(sha, query)
        return query
    stored = store.get(sha)
    if stored is None:
        raise APQError(
            200, "PersistedQueryNotFound", "PersistedQueryNotFound", "PERSISTED_QUERY_NOT_FOUND"
        )
    return stored


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
    """ASGI middleware for the GraphQL path; every other path and WebSockets pass through."""

    def __init__(
        self,
        app: ASGIApp,
        settings: Settings,
        path: str = "/graphql",
        store: PersistedQueryStore | None = None,
    ) -> None:
        self.app = app
        self.path = path
        self.public = public_cache_control(settings).encode()
        self.store = store if store is not None else PersistedQueryStore()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].rstrip("/") != self.path:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "GET":
            await self._get(scope, receive, send)
        elif scope["method"] == "POST":
            await self._post(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _get(self, scope: Scope, receive: Receive, send: Send) -> None:
        params = parse_qsl(
            bytes(scope.get("query_string", b"")).decode("latin-1"), keep_blank_values=True
        )
        values = dict(params)
        extensions: object = None
        if values.get("extensions"):
            try:
                extensions = json.loads(values["extensions"])
            except ValueError:
                extensions = None  # the GraphQL view reports the malformed parameter
        try:
            query = resolve_persisted_query(self.store, values.get("query"), extensions)
        except APQError as error:
            await _send_error(send, error)
            return
        if query is not None and not values.get("query"):
            params = [(k, v) for k, v in params if k != "query"] + [("query", query)]
            scope = dict(scope)
            scope["query_string"] = urlencode(params).encode("latin-1")
        policy = classify(query, values.get("operationName") or None)
        if_none_match = _header(scope, b"if-none-match")

        def decide(status: int, body: bytes) -> bytes:
            if policy == "public" and status == 200 and not _has_errors(body):
                return self.public
            return NO_STORE.encode()

        await _buffered(self.app, scope, receive, send, decide, if_none_match, with_etag=True)

    async def _post(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                payload = json.loads(body)
            except ValueError:
                payload = None
            if isinstance(payload, dict) and isinstance(payload.get("extensions"), dict):
                try:
                    query = resolve_persisted_query(
                        self.store, payload.get("query"), payload["extensions"]
                    )
                except APQError as error:
                    await _send_error(send, error)
                    return
                if query is not None and not payload.get("query"):
                    payload["query"] = query
                    body = json.dumps(payload).encode()
                    scope = dict(scope)
                    scope["headers"] = _set_headers(
                        scope["headers"], {b"content-length": str(len(body)).encode()}
                    )

        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        def decide(status: int, body: bytes) -> bytes:
            # POST is how mutations travel; no cache may store any of it.
            return NO_STORE.encode()

        await _buffered(self.app, scope, replay, send, decide, None, with_etag=False)


def _has_errors(body: bytes) -> bool:
    try:
        payload = json.loads(body)
    except ValueError:
        return True
    return not isinstance(payload, dict) or bool(payload.get("errors"))


async def _send_error(send: Send, error: APQError) -> None:
    body = error.body()
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", NO_STORE.encode()),
                (b"vary", VARY.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


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


# ---------------------------------------------------------------- static page and assets


@dataclass(frozen=True)
class Asset:
    url_name: str
    content: bytes
    media_type: str


_MEDIA_TYPES: Final = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}


def build_assets(static_dir: Path = STATIC_DIR) -> dict[str, Asset]:
    """The manifest: source name -> asset served under ``name.<hash>.ext``.

    Computed at startup from the files' bytes, so a changed file gets a new URL
    and the old one can stay cached forever.
    """
    manifest: dict[str, Asset] = {}
    for source in ASSET_SOURCES:
        path = static_dir / source
        content = path.read_bytes()
        digest = hashlib.sha256(content).hexdigest()[:12]
        url_name = f"{path.stem}.{digest}{path.suffix}"
        manifest[source] = Asset(url_name, content, _MEDIA_TYPES[path.suffix])
    return manifest


def render_index(
    manifest: dict[str, Asset], settings: Settings, static_dir: Path = STATIC_DIR
) -> bytes:
    html = (static_dir / "index.html").read_text(encoding="utf-8")
    for source, asset in manifest.items():
        html = html.replace("{{asset:" + source + "}}", "/static/" + asset.url_name)
    html = html.replace("{{dev_mode}}", "true" if settings.dev_mode else "false")
    return html.encode("utf-8")


def _not_modified_or(
    request: Request, content: bytes, media_type: str, cache_control: str
) -> Response:
    etag = etag_for(content)
    headers = {"ETag": etag, "Cache-Control": cache_control}
    if etag_matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=304, headers=headers)
    return Response(content, media_type=media_type, headers=headers)


def _static_routes(settings: Settings) -> list[Route]:
    manifest = build_assets()
    by_url = {asset.url_name: asset for asset in manifest.values()}
    index = render_index(manifest, settings)

    async def page(request: Request) -> Response:
        # The page itself always revalidates (cheap 304) so a deploy is seen at once.
        return _not_modified_or(request, index, "text/html; charset=utf-8", "no-cache")

    async def asset(request: Request) -> Response:
        found = by_url.get(request.path_params["name"])
        if found is None:
            return Response(
                "not found",
                status_code=404,
                media_type="text/plain",
                headers={"Cache-Control": "no-store"},
            )
        return _not_modified_or(request, found.content, found.media_type, IMMUTABLE)

    return [
        Route("/", page, methods=["GET", "HEAD"], name="tenant_page"),
        Route("/static/{name}", asset, methods=["GET", "HEAD"], name="static_asset"),
    ]


def _dev_routes(settings: Settings) -> list[Route]:
    if not settings.dev_mode:
        return []
    from booking.tokens import mint_token

    async def dev_token(request: Request) -> Response:
        if not settings.jwt_secret:
            return JSONResponse(
                {
                    "errors": [
                        {"errorType": "ValidationError", "message": "BOOKING_JWT_SECRET is not set"}
                    ]
                },
                status_code=400,
            )
        user_id = request.query_params.get("userId") or DEMO_TENANT_ID
        token = mint_token(
            settings.jwt_secret,
            user_id,
            ["Tenants"],
            ttl_seconds=8 * 3600,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
        return JSONResponse(
            {"token": token, "userId": user_id, "buildingId": DEMO_BUILDING_ID},
            headers={"Cache-Control": NO_STORE},
        )

    return [Route("/dev/token", dev_token, methods=["POST"], name="dev_token")]


def install(app: Starlette, settings: Settings) -> None:
    """Add the caching middleware, the tenant page, its assets and (dev only) /dev/token.

    Our routes go first so that they win over any other "/" route.
    """
    routes = _static_routes(settings) + _dev_routes(settings)
    for route in reversed(routes):
        app.router.routes.insert(0, route)
    app.add_middleware(CachingMiddleware, settings=settings)
