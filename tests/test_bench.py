"""Smoke test of `booking bench`: the whole harness at tiny sizes, so it cannot rot.

It starts the real embedded stack (Postgres, Temporal dev server, worker, API
and the floor worker as processes), runs every scenario at ``--quick`` size
(the test-suite scenario against a one-test suite that sleeps two simulated
hours on the time-skipping server) and checks that the report files have the
expected structure and plausible numbers. No timing target is asserted: those
are benchmarks, not tests.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.machine import git_info
from bench.metrics import api_split
from bench.report import update_readme
from bench.stats import percentile, summarize

REPO = Path(__file__).resolve().parent.parent

SUITE_INI = """[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
"""

SUITE_CONFTEST = """
import pytest
from temporalio.testing import WorkflowEnvironment

from booking.devstack.binaries import find_binary


@pytest.fixture(scope="session")
async def env():
    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=find_binary("temporal-test-server")
    )
    yield environment
    await environment.shutdown()
"""

SUITE_TEST = """
import uuid
from datetime import timedelta

from temporalio import workflow
from temporalio.worker import UnsandboxedWorkflowRunner, Worker


@workflow.defn
class Sleeper:
    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(timedelta(hours=2))
        # Cancelled before it fires: covers no simulated time.
        try:
            await workflow.wait_condition(lambda: True, timeout=timedelta(days=1))
        except TimeoutError:
            pass


async def test_two_simulated_hours(env):
    queue = str(uuid.uuid4())
    async with Worker(
        env.client, task_queue=queue, workflows=[Sleeper],
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        await env.client.execute_workflow(Sleeper.run, id=queue, task_queue=queue)


def test_without_temporal():
    assert 1 + 1 == 2
"""

README = """# Project

Intro.

## Benchmarks

placeholder

## Next section

Kept as it was.
"""


def test_api_split_takes_temporal_calls_out_of_graphql_requests() -> None:
    """Only POST /graphql requests count, every update's calls are added up, and samples
    other than a histogram's sum and count (its buckets, its creation time) are left out."""
    before = "\n".join(
        [
            'booking_api_request_seconds_count{method="POST",route="/graphql"} 10.0',
            'booking_api_request_seconds_sum{method="POST",route="/graphql"} 0.2',
            'booking_api_temporal_call_seconds_count{update="pay"} 3.0',
            'booking_api_temporal_call_seconds_sum{update="pay"} 0.05',
        ]
    )
    after = "\n".join(
        [
            'booking_api_request_seconds_count{method="POST",route="/graphql"} 14.0',
            'booking_api_request_seconds_sum{method="POST",route="/graphql"} 0.3',
            'booking_api_request_seconds_sum{method="GET",route="/metrics"} 9.0',
            'booking_api_temporal_call_seconds_count{update="pay"} 5.0',
            'booking_api_temporal_call_seconds_sum{update="pay"} 0.1',
            'booking_api_temporal_call_seconds_created{update="pay"} 1.7e9',
            'booking_api_temporal_call_seconds_bucket{le="0.1",update="pay"} 5.0',
            'booking_api_temporal_call_seconds_count{update="wait_for_hold"} 2.0',
            'booking_api_temporal_call_seconds_sum{update="wait_for_hold"} 0.03',
        ]
    )
    assert api_split(before, after) == {
        "graphql_requests": 4.0,
        "temporal_calls": 4.0,
        "request_mean_ms": 25.0,
        "temporal_mean_ms_per_request": 20.0,
        "api_own_mean_ms_per_request": 5.0,
    }
    assert api_split(before, before) is None  # no request between the two
    assert api_split(None, after) is None


def test_percentile_interpolates_between_ranks() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([3.0], 99) == 3.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)
    assert summarize([])["count"] == 0
    assert summarize([1.0, 2.0, 3.0])["p50"] == 2.0


def test_update_readme_replaces_only_its_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert update_readme(readme, "## Benchmarks\n\nnew table\n")
    text = readme.read_text()
    assert "new table" in text and "placeholder" not in text
    assert text.index("## Benchmarks") < text.index("## Next section")
    assert "Kept as it was." in text
    other = tmp_path / "OTHER.md"
    other.write_text("# Nothing here\n")
    assert not update_readme(other, "## Benchmarks\n")


def _latency_ok(summary: dict[str, Any], count: int, *, at_least_ms: float = 0.1) -> None:
    assert summary["count"] == count
    # Plausible: a real round trip takes some time, and less than the client's timeout.
    assert at_least_ms < summary["p50"] <= summary["p99"] <= summary["max"] < 60_000


def test_bench_quick_run_writes_reports(tmp_path: Path) -> None:
    suite_dir = tmp_path / "suite"
    suite_dir.mkdir()
    (suite_dir / "pytest.ini").write_text(SUITE_INI)
    (suite_dir / "conftest.py").write_text(SUITE_CONFTEST)
    (suite_dir / "test_sim.py").write_text(SUITE_TEST)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    out_md, out_json = tmp_path / "BENCHMARKS.md", tmp_path / "results" / "latest.json"

    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--suite",
            str(suite_dir / "test_sim.py"),
            "--output-md",
            str(out_md),
            "--output-json",
            str(out_json),
            "--readme",
            str(readme),
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    results = json.loads(out_json.read_text())
    assert results["errors"] == {}
    machine = results["machine"]
    assert machine["cores"] >= 1 and machine["memory_bytes"] > 0
    assert machine["python"].startswith("3.")
    assert machine["packages"]["temporalio"]
    # What git says of the checkout (nothing, for a copy of the sources that is not one).
    assert machine["git"] == git_info(REPO)
    assert machine["git"]["commit"] is None or len(machine["git"]["commit"]) == 40
    assert len(results["load"]["before"]) == 3 and len(results["load"]["after"]) == 3
    s = results["scenarios"]
    assert set(s) == {
        "reserve",
        "payment",
        "throughput",
        "contention",
        "live",
        "scale",
        "calendar",
        "rent",
        "suite",
    }

    _latency_ok(s["reserve"]["latency_ms"], s["reserve"]["count"])
    assert s["reserve"]["errors"] == {}
    # Where a step's time goes: the booking worker's and the floor worker's workflow tasks,
    # each counted over the scenario that drove it (one reserve: one task each, and warm-up).
    reserve = s["reserve"]
    placed = reserve["count"] + reserve["warmup"]
    for key in ("worker_metrics", "floor_worker_metrics"):
        assert reserve[key]["workflow_task_execution_latency_count"] >= placed, reserve[key]
        assert reserve[key]["workflow_task_execution_latency_mean_ms"] > 0
    assert "floor_worker_metrics" not in s["payment"]  # it drives no floor
    # The API's own part of each reserve: its request time less its one Temporal call's.
    api_time = reserve["api_time"]
    assert api_time["graphql_requests"] == placed == api_time["temporal_calls"], api_time
    assert 0 < api_time["temporal_mean_ms_per_request"] < api_time["request_mean_ms"]
    assert api_time["api_own_mean_ms_per_request"] == pytest.approx(
        api_time["request_mean_ms"] - api_time["temporal_mean_ms_per_request"], abs=0.02
    )
    payment = s["payment"]
    _latency_ok(payment["sync"]["latency_ms"], payment["count"])
    for path in ("webhook", "signal"):
        assert payment[path]["errors"] == {}
        _latency_ok(payment[path]["latency_to_db_ms"], payment["count"])

    throughput = s["throughput"]
    for key in ("bookings", "floor", "floor_update_protocol"):
        assert throughput[key]["completed"] > 0, throughput[key]
        assert throughput[key]["errors"] == {}
    assert throughput["ratio"] == pytest.approx(
        throughput["bookings"]["per_second"] / throughput["floor"]["per_second"], rel=0.01
    )

    contention = s["contention"]
    assert contention["rounds_with_exactly_one_winner"] == contention["rounds"]
    assert contention["booking_rows_per_apartment"] == {"1": contention["rounds"]}
    assert contention["unexpected_errors"] == {}
    _latency_ok(contention["loser_latency_ms"], contention["rounds"] * (contention["clients"] - 1))
    assert results["double_booked_apartments"] == []

    live = s["live"]
    # Every subscriber got the booking, then the change; each had its own connection.
    assert live["subscribed"] == live["delivered"] == live["subscribers"] > 1
    assert live["subscribe_failures"] == live["delivery_failures"] == {}
    # Subscribers that offer permessage-deflate as browsers do; the API declines it.
    assert live["deflate_offered"] is True and live["deflate_accepted"] == 0
    # Measured from the moment the bench's own LISTEN connection hears the commit: the API's
    # may hear it first, so a few subscribers can be a millisecond or two "early".
    _latency_ok(live["delivery_ms"], live["subscribers"], at_least_ms=-50)
    assert live["api_rss_mb_subscribed"] >= live["api_rss_mb_before"] > 20

    scale = s["scale"]
    assert scale["all_expired_correctly"] is True
    assert scale["open_after_placing"] == scale["holds"] == scale["expired"]
    assert scale["apartments"] == {"VACANT": scale["holds"]}
    # A hold is released after its deadline, never before it.
    assert scale["expiry_lag_ms"]["count"] == scale["holds"]
    assert scale["expiry_lag_ms"]["min"] >= 0
    for name in ("worker", "api"):
        assert 20 * 2**20 < scale["peak_rss_bytes_sampled"][name] < 4 * 2**30
    # Placing holds is work for the server and the worker; the expiry phase was seen.
    assert scale["cpu_cores_used_placing"]["worker"] > 0
    assert scale["cpu_cores_used_placing"]["temporal"] > 0
    assert set(scale["cpu_cores_used_expiring"]) >= {"worker", "temporal"}
    assert scale["expiring_seconds"] >= 0
    # Starts are paced below the calibrated placing rate.
    assert 0 < scale["start_rate_per_second"] < scale["calibrated_per_second"]

    calendar = s["calendar"]
    assert calendar["errors"] == {"search": {}, "calendar": {}, "reserve": {}}
    assert calendar["stays_seeded"] > 0
    _latency_ok(calendar["search_latency_ms"], calendar["queries"])
    _latency_ok(calendar["calendar_latency_ms"], calendar["queries"])
    assert calendar["reserve_latency_ms"]["count"] > 0
    # The plans Postgres ran, as the scenario writes them into BENCHMARKS.md.
    for plan in calendar["plans"].values():
        assert any("Query Text" in line for line in plan), plan

    suite = s["suite"]
    assert suite["exit_status"] == 0
    assert suite["outcomes"] == {"passed": 2}
    # Two simulated hours (the fired timer; the satisfied wait's timer never fires).
    assert suite["workflows"] == 1
    assert suite["simulated_seconds"] == 7200
    assert suite["top_tests"][0]["nodeid"].endswith("test_two_simulated_hours")
    assert 0 < suite["wall_seconds"] < 120

    targets = {t["id"]: t for t in results["targets"]}
    assert set(targets) == {
        "reserve_p50",
        "reserve_p50_vs_floor",
        "reserve_p99",
        "payment_p50",
        "payment_p50_vs_floor",
        "throughput_ratio",
        "cpu_per_booking_ratio",
        "api_cpu_per_request",
        "worker_cpu_per_booking",
        "double_bookings",
        "live_delivered",
        "live_kb_per_subscriber",
        "live_delivery_p99",
        "scale_open",
        "scale_expired",
        "scale_worker_rss",
        "scale_expiry_lag_p99",
        "search_p99",
        "calendar_p99",
        "rent_issue_seconds",
        "rent_worker_rss",
        "rent_worker_waiting",
    }
    # The leases' invoices: every one issued, none twice.
    rent = s["rent"]
    assert rent["issued"] == rent["leases"] == rent["issue_events"]
    assert rent["none_twice"] is True and targets["rent_issue_seconds"]["met"] is True
    assert targets["double_bookings"]["met"] is True
    assert targets["live_delivered"]["met"] is True
    assert targets["scale_expired"]["met"] is True
    assert targets["scale_open"]["measured"] == s["scale"]["open_after_placing"]
    assert targets["reserve_p50"]["measured"] == s["reserve"]["latency_ms"]["p50"]
    # Against the engine's own update-with-start and update, one client each.
    floor_hold = s["reserve"]["floor_hold_latency_ms"]["p50"]
    assert targets["reserve_p50_vs_floor"]["measured"] == round(
        s["reserve"]["latency_ms"]["p50"] / floor_hold, 2
    )
    floor_pay = s["reserve"]["floor_pay_latency_ms"]["p50"]
    assert targets["payment_p50_vs_floor"]["measured"] == round(
        s["payment"]["sync"]["latency_ms"]["p50"] / floor_pay, 2
    )
    # CPU per booking: every process of the service, and the floor's, measured (not zero).
    cpu = s["throughput"]["cpu_ms_per_booking"]
    assert cpu["service"] > 0 and cpu["floor"] > 0
    assert cpu["ratio"] == targets["cpu_per_booking_ratio"]["measured"]
    assert s["throughput"]["bookings"]["cpu_ms_per_completed"]["api"] > 0
    assert "CPU ms per completed booking" in out_md.read_text()

    markdown = out_md.read_text()
    assert "## Results against the targets" in markdown
    assert "| reserve latency p50 | <= 40 ms |" in markdown
    assert "### Test-suite speed" in markdown
    assert "### Live updates" in markdown
    section = readme.read_text()
    # The README lists the targets not met, each with its row, and counts the rest.
    open_targets = [t for t in results["targets"] if t["met"] is not True]
    for t in open_targets:
        assert f"| {t['label']} | {t['goal']} |" in section
    met = len(results["targets"]) - len(open_targets)
    if open_targets:
        assert f"{met} of {len(results['targets'])} targets met; the others:" in section
    else:
        assert f"All {met} targets met." in section
    assert "| double bookings | 0 |" not in section  # met in every run: counted, not listed
    assert "placeholder" not in section and "Kept as it was." in section


def _cache_memory(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.cache_memory", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_cache_memory_measures_cached_workflows() -> None:
    completed = _cache_memory("--holds", "20", timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (result["holds"], result["sandbox"]) == (20, True)
    # Every hold was placed and cached (a refused one exits non-zero); each holds Python
    # objects of its own.
    assert result["python_heap_bytes_per_cached_workflow"] > 1000
    assert "KB of worker RSS each" in completed.stderr


def test_cache_memory_refuses_no_holds() -> None:
    completed = _cache_memory("--holds", "0", timeout=30)
    assert completed.returncode == 2
    assert "--holds must be at least 1" in completed.stderr
