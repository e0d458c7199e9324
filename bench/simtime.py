"""pytest plugin (``-p bench.simtime``): how much simulated time a test suite covers.

Every workflow the tests start through a Temporal client (plain start or
update-with-start) is remembered with the test that started it. When the
``env`` fixture of a test module is about to shut down, the plugin fetches each of
those workflows' histories from the server and adds up:

- the durable timers that *fired* (a hold that ran out, a refund window, a
  lease): time the time-skipping server skipped for that workflow; timers that
  were cancelled (a payment arrived first) count nothing;
- the span from each history's first to its last event.

It also reads the server clock before and after each test that uses ``env``;
that delta includes skips to timers of workflows left running by earlier
tests, so it overstates what one test covers and is reported for reference only.

The time spent fetching histories is measured so the caller can take it out of
the suite's wall time. Results go to the JSON file named by ``BENCH_SIMTIME_OUT``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

_started: dict[str, str] = {}  # workflow id -> nodeid of the test that started it
_current = {"nodeid": ""}
_tests: dict[str, dict[str, Any]] = {}
_fetched: set[str] = set()
_workflows: dict[str, Any] = {"count": 0, "unreadable": 0, "fetch_seconds": 0.0}
_session_started = time.perf_counter()


def _patch_client() -> None:
    from temporalio.client import _impl

    impl = _impl._ClientImpl
    original_start = impl.start_workflow
    original_with_start = impl.start_update_with_start_workflow

    async def start_workflow(self: Any, input: Any) -> Any:
        _started.setdefault(input.id, _current["nodeid"])
        return await original_start(self, input)

    async def start_update_with_start_workflow(self: Any, input: Any) -> Any:
        _started.setdefault(input.start_workflow_input.id, _current["nodeid"])
        return await original_with_start(self, input)

    impl.start_workflow = start_workflow  # type: ignore[method-assign]
    impl.start_update_with_start_workflow = start_update_with_start_workflow  # type: ignore[method-assign]


def pytest_configure(config: pytest.Config) -> None:
    _patch_client()


def pytest_runtest_setup(item: pytest.Item) -> None:
    _current["nodeid"] = item.nodeid


def timer_seconds(events: list[HistoryEvent]) -> tuple[float, float]:
    """(seconds of timers that fired, seconds from first to last event) of one history."""
    durations: dict[str, float] = {}
    fired = 0.0
    for event in events:
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED:
            attrs = event.timer_started_event_attributes
            durations[attrs.timer_id] = attrs.start_to_fire_timeout.ToTimedelta().total_seconds()
        elif event.event_type == EventType.EVENT_TYPE_TIMER_FIRED:
            fired += durations.get(event.timer_fired_event_attributes.timer_id, 0.0)
    span = 0.0
    if events:
        first = events[0].event_time.ToDatetime()
        last = events[-1].event_time.ToDatetime()
        span = (last - first).total_seconds()
    return fired, span


@pytest.fixture(scope="module", autouse=True)
async def _bench_workflow_histories(env: Any) -> AsyncIterator[None]:
    # Module scope: works whether ``env`` is one server per module or per session, and
    # reads each module's workflows before its server stops.
    yield
    started = time.perf_counter()
    for workflow_id, nodeid in list(_started.items()):
        if workflow_id in _fetched:
            continue
        _fetched.add(workflow_id)
        try:
            history = await env.client.get_workflow_handle(workflow_id).fetch_history()
        except Exception:  # a test may have used another server; count, do not fail
            _workflows["unreadable"] += 1
            continue
        fired, span = timer_seconds(list(history.events))
        record = _tests.setdefault(nodeid, {})
        record["workflows"] = record.get("workflows", 0) + 1
        record["timers_fired_s"] = round(record.get("timers_fired_s", 0.0) + fired, 3)
        record["history_span_s"] = round(record.get("history_span_s", 0.0) + span, 3)
        _workflows["count"] += 1
    _workflows["fetch_seconds"] = round(
        _workflows["fetch_seconds"] + time.perf_counter() - started, 3
    )


@pytest.fixture(autouse=True)
async def _bench_server_clock(request: pytest.FixtureRequest, env: Any) -> AsyncIterator[None]:
    before = await env.get_current_time()
    wall = time.perf_counter()
    yield
    after = await env.get_current_time()
    record = _tests.setdefault(request.node.nodeid, {})
    record["clock_advanced_s"] = round((after - before).total_seconds(), 3)
    record["wall_s"] = round(time.perf_counter() - wall, 3)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    record = _tests.setdefault(report.nodeid, {})
    if report.when == "call" or report.outcome != "passed":
        record["outcome"] = report.outcome


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    target = os.environ.get("BENCH_SIMTIME_OUT")
    if not target:
        return
    Path(target).write_text(
        json.dumps(
            {
                "exit_status": int(exitstatus),
                "session_wall_s": round(time.perf_counter() - _session_started, 3),
                "workflows": _workflows,
                "tests": [{"nodeid": nodeid, **values} for nodeid, values in _tests.items()],
            },
            indent=2,
        )
    )
