"""Scenario 6: wall time of the time-skipping test suite against the time it simulates.

Simulated time = the durable timers that fired in the workflows the suite ran,
read from their histories by the :mod:`bench.simtime` pytest plugin (see its
docstring). Cross-check: the same sum over the committed replay histories
(``tests/**/*.json`` in Temporal's JSON history format).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

DEFAULT_SUITE = (
    "tests/test_workflow.py",
    "tests/test_workflow_race.py",
    "tests/test_replay.py",
    "tests/test_activities.py",
)


def default_paths(repo: Path) -> list[str]:
    return [p for p in DEFAULT_SUITE if (repo / p).exists()]


def run_suite(
    repo: Path, paths: list[str], extra_args: list[str], timeout: float = 600.0
) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-suite-") as tmp:
        out = Path(tmp) / "simtime.json"
        env = dict(os.environ, BENCH_SIMTIME_OUT=str(out))
        command = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "bench.simtime",
            "-p",
            "no:cacheprovider",
            *extra_args,
            *paths,
        ]
        started = time.perf_counter()
        completed = subprocess.run(
            command,
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        wall = time.perf_counter() - started
        report = json.loads(out.read_text()) if out.exists() else {"tests": []}
    return _suite_result(paths, command, completed, wall, report)


def _suite_result(
    paths: list[str],
    command: list[str],
    completed: subprocess.CompletedProcess[str],
    wall: float,
    report: dict[str, Any],
) -> dict[str, Any]:
    """What the run says: wall time against the simulated time its workflows' timers span."""
    tests = report.get("tests", [])
    workflows = report.get("workflows", {})
    fetch = float(workflows.get("fetch_seconds", 0.0))
    fired = sum(t.get("timers_fired_s", 0.0) for t in tests)
    span = sum(t.get("history_span_s", 0.0) for t in tests)
    clock = sum(t.get("clock_advanced_s", 0.0) for t in tests)
    outcomes: dict[str, int] = {}
    for t in tests:
        key = t.get("outcome", "unknown")
        outcomes[key] = outcomes.get(key, 0) + 1
    top = sorted(tests, key=lambda t: -t.get("timers_fired_s", 0.0))[:5]
    tail = completed.stdout.strip().splitlines()[-1:] if completed.stdout.strip() else []
    # The plugin's own history fetching is measurement, not suite: take it out.
    suite_wall = max(wall - fetch, 0.0)
    return {
        "paths": paths,
        "command": " ".join(["pytest", *command[3:]]),
        "exit_status": completed.returncode,
        "summary_line": tail[0] if tail else "",
        "wall_seconds": round(suite_wall, 2),
        "wall_seconds_with_measurement": round(wall, 2),
        "history_fetch_seconds": round(fetch, 2),
        "session_wall_seconds": report.get("session_wall_s"),
        "tests": len(tests),
        "outcomes": outcomes,
        "workflows": workflows.get("count", 0),
        "workflows_unreadable": workflows.get("unreadable", 0),
        "simulated_seconds": round(fired, 1),
        "history_span_seconds": round(span, 1),
        "server_clock_advanced_seconds": round(clock, 1),
        "speedup": round(fired / suite_wall, 1) if suite_wall > 0 else None,
        "top_tests": [
            {
                "nodeid": t["nodeid"],
                "simulated_s": t.get("timers_fired_s", 0.0),
                "workflows": t.get("workflows", 0),
                "wall_s": t.get("wall_s"),
            }
            for t in top
        ],
        "stderr_tail": completed.stderr.strip().splitlines()[-5:] if completed.returncode else [],
    }


def _parse_duration(value: str) -> float:
    # Protobuf JSON durations: "900s", "0.5s".
    return float(value.rstrip("s")) if value else 0.0


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def history_coverage(repo: Path) -> dict[str, Any]:
    """Simulated time in the committed replay histories (Temporal's JSON history format)."""
    files = 0
    span = 0.0
    fired = 0.0
    for path in sorted((repo / "tests").rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(events, list) or not events or "eventType" not in events[0]:
            continue
        files += 1
        started: dict[str, float] = {}
        for event in events:
            kind = event.get("eventType", "")
            if kind in ("EVENT_TYPE_TIMER_STARTED", "TimerStarted"):
                attrs = event.get("timerStartedEventAttributes", {})
                started[attrs.get("timerId", "")] = _parse_duration(
                    attrs.get("startToFireTimeout", "0s")
                )
            elif kind in ("EVENT_TYPE_TIMER_FIRED", "TimerFired"):
                attrs = event.get("timerFiredEventAttributes", {})
                fired += started.get(attrs.get("timerId", ""), 0.0)
        times = [_parse_time(e["eventTime"]) for e in events if e.get("eventTime")]
        if times:
            span += (max(times) - min(times)).total_seconds()
    return {
        "histories": files,
        "history_span_seconds": round(span, 1),
        "timers_fired_seconds": round(fired, 1),
    }
