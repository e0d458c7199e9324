"""Subscribers that ask the same question as the same caller share one execution.

Without this, one change of a booking watched by N subscribers costs N database reads, N
GraphQL executions and N JSON encodings on the API's one event loop: 2,000 subscribers of one
booking got the change 0.8 s after it, 10,000 never (``booking bench``, scenario ``live``).
With it, each change costs one read, one execution and one encoding, then N sends::

    subscriber 1 ──┐                              ┌── upstream: the subscription run once
    subscriber 2 ──┼─ join(key) ── SharedStream ──┤   (schema.stream), as the first joiner's
    subscriber N ──┘                              └── caller; each result linked to the next

    key: (document, operationName, variables, caller): equal keys get equal answers, and a
    caller's credential (expiry included) is part of it, so nobody sees through another's.

Results form a chain of links, each holding a future of the next: a subscriber holds only
its place in the chain, a slow one keeps the links it has not sent yet alive and nothing
else, and no subscriber can lose a result to a faster one. A subscriber that joins a running
stream starts at its latest result: the subscription's own contract ("the booking now, then
each change"). The stream stops when its last subscriber leaves, and a new joiner of an
ended stream starts a new one.

Only subscriptions are shared (``shareable_document``): a query or mutation sent over a
WebSocket runs for its own caller, once, as always.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import Any

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from strawberry.types import ExecutionResult

from api.errors import appsync_error
from api.metrics import ApiMetrics

# Distinct subscription documents are few (the apps' own); parsing each once is enough.
_DOCUMENTS_REMEMBERED = 256


@functools.lru_cache(maxsize=_DOCUMENTS_REMEMBERED)
def shareable_document(query: str, operation_name: str | None) -> bool:
    """Whether the document's chosen operation is a subscription (unparsable ones are not:
    the ordinary path reports their errors)."""
    try:
        operation = get_operation_ast(parse(query), operation_name)
    except (GraphQLError, RecursionError):
        return False
    return operation is not None and operation.operation == OperationType.SUBSCRIPTION


def stream_key(
    protocol: str, query: str, operation_name: str | None, variables: object, caller: Hashable
) -> Hashable | None:
    """Who may share a stream: the same protocol, subscription, variables and caller.

    None for what is never shared (not a subscription, variables that are not JSON).
    """
    if not shareable_document(query, operation_name):
        return None
    try:
        canonical = json.dumps(variables, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return None
    return (protocol, query, operation_name, canonical, caller)


def next_payload_json(result: ExecutionResult) -> str:
    """A ``next`` / ``data`` payload as JSON, errors AppSync-shaped: made once per result."""
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [appsync_error(dict(e.formatted)) for e in result.errors]
    if result.extensions:
        payload["extensions"] = result.extensions
    return json.dumps(payload, separators=(",", ":"))


class Link:
    """One result of a shared stream, and a future of the one after it (None: the end).

    ``result`` None marks the moment the subscription went live (its resolver called
    ``RequestContext.subscribed``): AppSync's protocol answers ``start_ack`` then.
    """

    __slots__ = ("_payload", "next", "result")

    def __init__(self, result: ExecutionResult | None, loop: asyncio.AbstractEventLoop) -> None:
        self.result = result
        self.next: asyncio.Future[Link | None] = loop.create_future()
        self._payload: str | None = None

    @property
    def payload_json(self) -> str:
        if self._payload is None:
            assert self.result is not None
            self._payload = next_payload_json(self.result)
        return self._payload


# Starts the upstream: Strawberry's subscribe/stream, given the stream (for mark_live).
Opener = Callable[["SharedStream"], Awaitable[Any]]


class SharedStream:
    """One upstream subscription and the subscribers following its results."""

    def __init__(self, streams: SharedStreams, key: Hashable) -> None:
        loop = asyncio.get_running_loop()
        self._streams = streams
        self.key = key
        self.subscribers = 0
        self.first: asyncio.Future[Link | None] = loop.create_future()
        self.last: Link | None = None
        self.live = False
        self.error: Exception | None = None
        self.task: asyncio.Task[None] | None = None

    def start(self, open_stream: Opener) -> None:
        self.task = asyncio.create_task(self._pump(open_stream), name="shared-subscription")

    async def _pump(self, open_stream: Opener) -> None:
        loop = asyncio.get_running_loop()
        try:
            source = await open_stream(self)
            # Strawberry's stream may be a single result (an error before execution).
            if isinstance(source, ExecutionResult):
                self._append(Link(source, loop))
                return
            async with contextlib.aclosing(source):
                async for result in source:
                    self._append(Link(result, loop))
        except Exception as err:
            # Every follower raises it, and reports it as it would alone (a document
            # that does not parse, a failure logged with its request id).
            self.error = err
        finally:
            self._streams.forget(self)
            pending = self.first if self.last is None else self.last.next
            if not pending.done():
                pending.set_result(None)

    async def mark_live(self) -> None:
        """The upstream listens and its caller was checked (a ``RequestContext.on_subscribed``)."""
        if not self.live:
            self.live = True
            self._append(Link(None, asyncio.get_running_loop()))

    def _append(self, link: Link) -> None:
        pending = self.first if self.last is None else self.last.next
        self.last = link
        pending.set_result(link)

    async def follow(self) -> AsyncIterator[Link]:
        """The latest result (if any), then every later one, until the stream ends."""
        # shield: a subscriber cancelled while it waits must not cancel the future
        # every other subscriber waits on.
        link = self.last if self.last is not None else await asyncio.shield(self.first)
        while link is not None:
            yield link
            link = await asyncio.shield(link.next)
        if self.error is not None:
            raise self.error

    async def results(self) -> AsyncIterator[Link]:
        """:meth:`follow` without the live marks (Strawberry's PreExecutionError, a refusal
        before execution, can only come first, and alone)."""
        async for link in self.follow():
            if link.result is not None:
                yield link


class SharedStreams:
    """The process's shared subscriptions, by key."""

    def __init__(self, metrics: ApiMetrics) -> None:
        self._streams: dict[Hashable, SharedStream] = {}
        self._metrics = metrics

    def __len__(self) -> int:
        return len(self._streams)

    @contextlib.asynccontextmanager
    async def join(self, key: Hashable, open_stream: Opener) -> AsyncIterator[SharedStream]:
        """The stream for ``key`` (started with ``open_stream`` if none runs), while inside."""
        stream = self._streams.get(key)
        if stream is None:
            stream = SharedStream(self, key)
            self._streams[key] = stream
            self._metrics.subscription_streams.set(len(self._streams))
            stream.start(open_stream)
        stream.subscribers += 1
        self._metrics.subscriptions.inc()
        try:
            yield stream
        finally:
            self._metrics.subscriptions.dec()
            stream.subscribers -= 1
            if stream.subscribers == 0 and stream.task is not None:
                # Nobody follows it any more: stop listening (its finally forgets it).
                self.forget(stream)
                stream.task.cancel()

    def forget(self, stream: SharedStream) -> None:
        if self._streams.get(stream.key) is stream:
            del self._streams[stream.key]
            self._metrics.subscription_streams.set(len(self._streams))
