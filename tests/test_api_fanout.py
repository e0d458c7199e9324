"""api.fanout: subscribers asking the same share one upstream, and each still gets its own
answer in full and in order (unit tests; the upstream is a plain async generator)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from strawberry.types import ExecutionResult

from api.auth import Principal
from api.fanout import SharedStream, SharedStreams, stream_key
from api.metrics import ApiMetrics

SUBSCRIPTION = "subscription S($id: ID!) { onBookingStatusChanged(id: $id) { id } }"
TENANT = Principal(user_id="u-1", groups=frozenset({"Tenants"}), trusted=False)


class Upstream:
    """An upstream whose results the test hands out one by one."""

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.results: asyncio.Queue[ExecutionResult | BaseException | None] = asyncio.Queue()

    async def open(self, stream: SharedStream) -> AsyncIterator[ExecutionResult]:
        self.opened += 1
        return self._results(stream)

    async def _results(self, stream: SharedStream) -> AsyncIterator[ExecutionResult]:
        try:
            await stream.mark_live()
            while (item := await self.results.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.closed += 1

    def send(self, value: object) -> None:
        self.results.put_nowait(ExecutionResult(data={"value": value}, errors=None))


async def _collect(stream: SharedStream, into: list[Any], *, delay: float = 0) -> None:
    async for link in stream.follow():
        if link.result is not None:
            into.append(link.result.data["value"] if link.result.data else None)
            await asyncio.sleep(delay)


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def _metric(metrics: ApiMetrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


async def test_joiners_of_one_key_share_one_upstream_and_each_gets_every_result() -> None:
    metrics = ApiMetrics()
    streams, upstream = SharedStreams(metrics), Upstream()
    seen: list[list[Any]] = [[], [], []]
    async with streams.join("k", upstream.open) as a, streams.join("k", upstream.open) as b:
        # One slow subscriber: it must still see every result, in order.
        tasks = [
            asyncio.create_task(_collect(a, seen[0])),
            asyncio.create_task(_collect(b, seen[1])),
            asyncio.create_task(_collect(a, seen[2], delay=0.01)),
        ]
        await _settle()
        assert _metric(metrics, "booking_api_active_subscriptions") == 2
        assert _metric(metrics, "booking_api_subscription_streams") == 1
        for value in range(5):
            upstream.send(value)
        upstream.results.put_nowait(None)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert upstream.opened == 1
    assert seen == [[0, 1, 2, 3, 4]] * 3
    assert len(streams) == 0
    assert _metric(metrics, "booking_api_active_subscriptions") == 0
    assert _metric(metrics, "booking_api_subscription_streams") == 0


async def test_a_late_joiner_starts_at_the_latest_result() -> None:
    streams, upstream = SharedStreams(ApiMetrics()), Upstream()
    early: list[Any] = []
    late: list[Any] = []
    async with streams.join("k", upstream.open) as first:
        follower = asyncio.create_task(_collect(first, early))
        await _settle()  # following before the first result
        upstream.send("PENDING")
        upstream.send("PENDING, extended")
        await _settle()
        async with streams.join("k", upstream.open) as second:
            assert second is first and second.live
            joiner = asyncio.create_task(_collect(second, late))
            await _settle()
            upstream.send("APPROVED")
            upstream.results.put_nowait(None)
            await asyncio.wait_for(asyncio.gather(follower, joiner), 5)
    assert early == ["PENDING", "PENDING, extended", "APPROVED"]
    assert late == ["PENDING, extended", "APPROVED"]
    assert upstream.opened == 1


async def test_the_last_to_leave_stops_the_upstream_and_the_next_starts_anew() -> None:
    streams, upstream = SharedStreams(ApiMetrics()), Upstream()
    async with streams.join("k", upstream.open) as stream:
        upstream.send(1)
        await _settle()
        assert stream.last is not None
    await _settle()
    assert upstream.closed == 1 and len(streams) == 0
    async with streams.join("k", upstream.open):
        await _settle()
        assert upstream.opened == 2


async def test_a_cancelled_subscriber_does_not_end_the_others() -> None:
    streams, upstream = SharedStreams(ApiMetrics()), Upstream()
    kept: list[Any] = []

    async def leaves() -> None:
        async with streams.join("k", upstream.open) as stream:
            await _collect(stream, [])

    async with streams.join("k", upstream.open) as stream:
        follower = asyncio.create_task(_collect(stream, kept))
        leaver = asyncio.create_task(leaves())
        await _settle()
        # Cancelled while it waits on the future every follower waits on.
        leaver.cancel()
        await asyncio.gather(leaver, return_exceptions=True)
        upstream.send("after")
        upstream.results.put_nowait(None)
        await asyncio.wait_for(follower, 5)
    assert kept == ["after"]
    assert upstream.closed == 1


async def test_an_upstream_failure_reaches_every_follower() -> None:
    streams, upstream = SharedStreams(ApiMetrics()), Upstream()
    async with streams.join("k", upstream.open) as a, streams.join("k", upstream.open) as b:
        tasks = [asyncio.create_task(_collect(s, [])) for s in (a, b)]
        await _settle()
        upstream.results.put_nowait(RuntimeError("database gone"))
        outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
    assert [type(o) for o in outcomes] == [RuntimeError, RuntimeError]
    assert len(streams) == 0


async def test_the_live_mark_comes_before_the_first_result() -> None:
    streams, upstream = SharedStreams(ApiMetrics()), Upstream()
    async with streams.join("k", upstream.open) as stream:
        upstream.send("now")
        upstream.results.put_nowait(None)
        kinds = [link.result is None async for link in stream.follow()]
    assert kinds == [True, False]


@pytest.mark.parametrize(
    "document",
    [
        "query { getAllBuildings { items { id } } }",
        "mutation M { cancelBooking(id: 1) { id } }",
        "subscription {",  # does not parse: the ordinary path reports it
        "query Q { a } subscription S { b }",  # operationName None: ambiguous
    ],
)
def test_only_subscriptions_are_shared(document: str) -> None:
    assert stream_key("p", document, None, {}, TENANT) is None


def test_keys_differ_by_caller_and_variables_but_not_by_their_order() -> None:
    def key(variables: dict[str, Any], caller: Principal = TENANT) -> object:
        return stream_key("p", SUBSCRIPTION, "S", variables, caller)

    other = Principal(user_id="u-2", groups=frozenset({"Tenants"}), trusted=False)
    assert key({"id": "1", "x": 2}) == key({"x": 2, "id": "1"})
    assert key({"id": "1"}) != key({"id": "2"})
    assert key({"id": "1"}) != key({"id": "1"}, other)
    assert stream_key("other-protocol", SUBSCRIPTION, "S", {"id": "1"}, TENANT) != key({"id": "1"})
