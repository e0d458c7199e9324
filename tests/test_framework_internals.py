"""The few non-public framework names the API builds on, held to the pinned versions.

``pyproject.toml`` pins Strawberry and uvicorn to the minor ranges these were read from; a
new version that moves one of them fails here, naming it, before anything fails at run time.
Everything else the API uses of both is public.
"""

from __future__ import annotations

import inspect

from strawberry.http.async_base_view import AsyncBaseHTTPView
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


def _parameters(function: object) -> list[str]:
    return list(inspect.signature(function).parameters)  # type: ignore[arg-type]


def test_strawberry_names_the_view_relies_on() -> None:
    # api/graphql_view.py: whether an HTTP request asked for a streamed (multipart) answer.
    assert _parameters(AsyncBaseHTTPView._get_stream_transport_from_headers) == [
        "self",
        "headers",
    ]
    # graphql-transport-ws: refusing an operation as the protocol says (``_refuse``).
    assert "send_initial_errors" in dir(Operation)
    source = inspect.getsource(BaseGraphQLTransportWSHandler.__init__)
    assert "self.operations" in source
    # The legacy protocol: its operation tasks and whether connection_init was answered.
    legacy = inspect.getsource(BaseGraphQLWSHandler.__init__)
    assert "self.tasks" in legacy and "self.connection_acknowledged" in legacy


def test_uvicorn_names_the_bounded_protocol_relies_on() -> None:
    # api/server.py: BoundedHTTPProtocol reads the parsed request line and headers, swaps the
    # application for a 431 answer, and asks whether a request is a WebSocket upgrade.
    assert _parameters(HttpToolsProtocol._should_upgrade) == ["self"]
    begin = inspect.getsource(HttpToolsProtocol.on_message_begin)
    assert "self.url" in begin and "self.headers" in begin
    complete = inspect.getsource(HttpToolsProtocol.on_headers_complete)
    assert "app = self.app" in complete and "self.parser.should_upgrade()" in complete
    for hook in ("data_received", "on_headers_complete", "on_message_complete", "connection_lost"):
        assert hook in vars(HttpToolsProtocol), hook
