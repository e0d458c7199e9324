"""Reading one GraphQL request over HTTP, refusing anything malformed before it is parsed deeply.

The view (``api.app.BookingGraphQL``) authenticates first, then calls :func:`read_request`,
which turns the GET parameters or the POST body into one :class:`GraphQLRequest`:

- the body must be UTF-8 JSON (``application/json``), an object, with ``query`` a string
  (or absent, for a persisted query), ``variables`` and ``extensions`` objects and
  ``operationName`` a string;
- before any JSON is parsed, its nesting depth is measured on the raw text (strings
  skipped) and refused beyond :data:`MAX_JSON_DEPTH`; numbers Python will not convert
  (over 4,300 digits) and invalid UTF-8 are refused too;
- a persisted query (Apollo APQ) is resolved here (``api.persisted_queries``).

Every refusal is a :class:`RequestRefused`: HTTP 4xx with an AppSync-shaped body whose
``errorType`` is ``BadRequestException`` (or the APQ protocol's own). Nothing here can raise
anything else for any input: that is the class of defect ``tests/e2e/test_fuzz_http.py``
tries with random bytes, shapes and nesting.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse

from api.errors import request_error_body
from api.persisted_queries import APQError, PersistedQueryStore, resolve_persisted_query

BAD_REQUEST: Final = "BadRequestException"
# GraphQL variables are a few ids and inputs; 32 levels is far beyond any real request.
MAX_JSON_DEPTH: Final = 32

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")


class RequestRefused(Exception):
    """A request that is not a GraphQL request we can read: ``status`` and the body to send."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or request_error_body(message, BAD_REQUEST)


@dataclass(frozen=True)
class GraphQLRequest:
    query: str | None
    variables: dict[str, Any] | None
    operation_name: str | None
    extensions: dict[str, Any] | None
    # A new persisted query's hash: registered by ``register_persisted`` once the query ran
    # (parsed and validated), never before.
    register: str | None = None


def is_subscription(query: str | None, operation_name: str | None) -> bool:
    """Whether the operation ``query`` would run (by ``operation_name``) is a subscription.

    Documents are parsed only when they mention the keyword at all: the common request pays
    one substring search. A document that does not parse is not a subscription here; GraphQL
    reports its syntax error as usual.
    """
    if query is None or "subscription" not in query:
        return False
    try:
        document = parse(query)
    except GraphQLError:
        return False
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name and o.name.value == operation_name]
    return len(operations) == 1 and operations[0].operation == OperationType.SUBSCRIPTION


def register_persisted(store: PersistedQueryStore, request: GraphQLRequest, owner: str) -> None:
    """Keep a newly sent persisted query, now that it has parsed and validated, for ``owner``."""
    if request.register is not None and request.query is not None:
        store.put(request.register, request.query, owner)


def json_depth_ok(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text ``data`` nests arrays and objects at most ``limit`` deep.

    Measured on the text (string literals skipped) so that a hostile document is refused
    before a parser recurses into it; one pass, stopping at the first level too deep.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return True
    depth = 0
    for bracket in _BRACKET.finditer(_STRING.sub(b'""', data)):
        if bracket.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return False
        else:
            depth -= 1
    return True


def loads(data: bytes | str, what: str = "body") -> Any:
    """``json.loads`` for untrusted input: RequestRefused (400) instead of any exception."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestRefused(400, f"the {what} is not valid UTF-8") from None
    if not json_depth_ok(raw):
        raise RequestRefused(400, f"the {what} nests deeper than {MAX_JSON_DEPTH} levels")
    try:
        return json.loads(text)
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise RequestRefused(400, f"the {what} nests too deep") from None
    except ValueError as exc:
        # JSONDecodeError, and integers longer than Python converts (4,300 digits).
        reason = (
            "is not JSON" if isinstance(exc, json.JSONDecodeError) else "holds a number too large"
        )
        raise RequestRefused(400, f"the {what} {reason}") from None


def _object_or_none(value: object, name: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RequestRefused(400, f"`{name}` must be a JSON object or null")
    return value


def _request_from(payload: object) -> GraphQLRequest:
    if not isinstance(payload, dict):
        raise RequestRefused(400, "the request must be a JSON object (batches are not accepted)")
    query = payload.get("query")
    if query is not None and not isinstance(query, str):
        raise RequestRefused(400, "`query` must be a string")
    name = payload.get("operationName")
    if name is not None and not isinstance(name, str):
        raise RequestRefused(400, "`operationName` must be a string or null")
    return GraphQLRequest(
        query=query,
        variables=_object_or_none(payload.get("variables"), "variables"),
        operation_name=name or None,
        extensions=_object_or_none(payload.get("extensions"), "extensions"),
    )


def _from_query_string(params: Mapping[str, str]) -> GraphQLRequest:
    payload: dict[str, Any] = {
        "query": params.get("query"),
        "operationName": params.get("operationName"),
    }
    for name in ("variables", "extensions"):
        value = params.get(name)
        if value:
            payload[name] = loads(value, f"`{name}` parameter")
    return _request_from(payload)


def read_request(
    method: str,
    params: Mapping[str, str],
    content_type: str,
    body: bytes,
    store: PersistedQueryStore,
) -> GraphQLRequest:
    """The GraphQL request in an HTTP request, or RequestRefused."""
    if method == "GET":
        request = _from_query_string(params)
    elif method == "POST":
        media_type = content_type.split(";", 1)[0].strip().lower()
        if media_type != "application/json":
            raise RequestRefused(415, "send the request as application/json")
        request = _request_from(loads(body))
    else:
        raise RequestRefused(405, "GraphQL answers GET and POST only")
    try:
        resolved = resolve_persisted_query(store, request.query, request.extensions)
    except APQError as error:
        raise RequestRefused(error.status, error.message, json.loads(error.body())) from None
    if resolved.query is None:
        raise RequestRefused(400, "no GraphQL query was sent (`query` is missing)")
    return GraphQLRequest(
        resolved.query,
        request.variables,
        request.operation_name,
        request.extensions,
        resolved.register,
    )
