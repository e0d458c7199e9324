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


async def scrape(urls: Sequence[str]) -> Snapshot | None:
    """The metrics of every worker, added up (None when any of them does not answer)."""
    if not urls:
        return None
    totals: dict[str, float] = defaultdict(float)
    async with httpx.AsyncClient(timeout=5) as http:
        for url in urls:
            try:
                text = (await http.get(url)).text
            except httpx.HTTPError:
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
