"""The worker's own Prometheus metrics, read around a scenario to say where time went.

Histogram means (``_sum`` / ``_count`` deltas) of the Temporal SDK's task
latencies tell queueing (schedule-to-start: a task waited for a worker slot or
poller) apart from work (execution latency), and the sticky-cache counters show
how often a workflow had to be replayed from its history.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence

import httpx

HISTOGRAMS = (
    "workflow_task_schedule_to_start_latency",
    "workflow_task_execution_latency",
    "workflow_task_replay_latency",
    "activity_schedule_to_start_latency",
    "activity_execution_latency",
    "local_activity_execution_latency",
    "local_activity_total_execution_latency",
)
COUNTERS = ("sticky_cache_hit", "sticky_cache_miss", "workflow_task_execution_failed")
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([-+0-9.eE]+|NaN|[+-]Inf)$")

Snapshot = dict[str, float]


async def scrape_text(url: str) -> str | None:
    """One exposition as text (None when it does not answer)."""
    async with httpx.AsyncClient(timeout=5) as http:
        try:
            response = await http.get(url)
        except httpx.HTTPError:
            return None
    return response.text if response.status_code == 200 else None


async def scrape(urls: Sequence[str]) -> Snapshot | None:
    """The metrics of every worker, added up (None when any of them does not answer)."""
    if not urls:
        return None
    totals: dict[str, float] = defaultdict(float)
    for url in urls:
        text = await scrape_text(url)
        if text is None:
            return None
        _add(totals, text)
    return dict(totals)


def _add(totals: dict[str, float], text: str) -> None:
    for line in text.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        name, value = match.group(1), match.group(3)
        short = name.removeprefix("temporal_")
        try:
            totals[short] += float(value)
        except ValueError:
            continue


# The API's: its GraphQL requests' time, and of it the time spent waiting on Temporal.
_GRAPHQL = 'booking_api_request_seconds_{}{{method="POST",route="/graphql"}}'
_TEMPORAL = re.compile(r'^booking_api_temporal_call_seconds_(sum|count)\{update="[^"]*"\} (\S+)$')


def _api_totals(text: str) -> dict[str, float]:
    totals = {"requests": 0.0, "request_seconds": 0.0, "calls": 0.0, "call_seconds": 0.0}
    for line in text.splitlines():
        line = line.strip()
        name, _, value = line.rpartition(" ")
        if name == _GRAPHQL.format("count"):
            totals["requests"] = float(value)
        elif name == _GRAPHQL.format("sum"):
            totals["request_seconds"] = float(value)
        elif match := _TEMPORAL.match(line):
            key = "calls" if match.group(1) == "count" else "call_seconds"
            totals[key] += float(match.group(2))
    return totals


def api_split(before: str | None, after: str | None) -> dict[str, float] | None:
    """Per GraphQL request between two scrapes of the API's metrics: its mean time, the mean
    time of it spent in Temporal calls, and the rest, the API's own (HTTP, GraphQL, its reads).
    None when either scrape is missing or no GraphQL request was served."""
    if before is None or after is None:
        return None
    old, new = _api_totals(before), _api_totals(after)
    requests = new["requests"] - old["requests"]
    if requests <= 0:
        return None
    request_ms = (new["request_seconds"] - old["request_seconds"]) * 1000 / requests
    temporal_ms = (new["call_seconds"] - old["call_seconds"]) * 1000 / requests
    return {
        "graphql_requests": requests,
        "temporal_calls": new["calls"] - old["calls"],
        "request_mean_ms": round(request_ms, 2),
        "temporal_mean_ms_per_request": round(temporal_ms, 2),
        "api_own_mean_ms_per_request": round(request_ms - temporal_ms, 2),
    }


def summarize(before: Snapshot | None, after: Snapshot | None) -> dict[str, float] | None:
    """Mean latency (ms) of each task kind and counter deltas between two scrapes."""
    if before is None or after is None:
        return None
    result: dict[str, float] = {}
    for name in HISTOGRAMS:
        count = after.get(f"{name}_count", 0.0) - before.get(f"{name}_count", 0.0)
        total = after.get(f"{name}_sum", 0.0) - before.get(f"{name}_sum", 0.0)
        if count > 0:
            result[f"{name}_mean_ms"] = round(total / count, 2)
            result[f"{name}_count"] = count
    for name in COUNTERS:
        for key in (name, f"{name}_total"):
            if key in after:
                result[name] = after[key] - before.get(key, 0.0)
    return result
