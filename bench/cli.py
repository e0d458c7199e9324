"""`booking bench` / `python -m bench`: options, the run, and where the results go."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import metrics, report, scenarios, suite
from bench.graphql import ApiClient
from bench.machine import load_average, machine_info, tool_version
from bench.procs import cpu_seconds
from bench.progress import Progress
from bench.stack import Stack, StackError, StackOptions
from booking.errors import ConfigurationError

SCENARIOS = (
    "reserve",
    "payment",
    "throughput",
    "contention",
    "live",
    "scale",
    "calendar",
    "rent",
    "suite",
)
REPO = Path(__file__).resolve().parent.parent


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="booking bench",
        description="Benchmark the booking service: latency, throughput against the Temporal "
        "floor, contention, 10,000 open holds, test-suite speed. Starts a fresh embedded stack "
        "unless --api-url is given. Writes BENCHMARKS.md and a JSON file.",
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test, ~15 s)")
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)",
    )
    _system_arguments(p)
    _size_arguments(p)
    _output_arguments(p)
    return p


def _system_arguments(parser: argparse.ArgumentParser) -> None:
    """Which system is measured: a running one, or a fresh embedded stack and how."""
    g = parser.add_argument_group("system under test (default: a fresh embedded stack)")
    g.add_argument("--api-url", help="base URL of a running API, e.g. http://127.0.0.1:8000")
    g.add_argument("--temporal-address", help="host:port of its Temporal server")
    g.add_argument("--database-url", help="its Postgres DSN (read for checks; test rows added)")
    g.add_argument("--api-key", help="an x-api-key the running API accepts")
    g.add_argument("--webhook-secret", help="its BOOKING_WEBHOOK_SECRET (enables the webhook path)")
    g.add_argument("--namespace", default="default", help="Temporal namespace (default)")
    g.add_argument("--task-queue", default="apartment-booking", help="the worker's task queue")
    g.add_argument("--worker-pid", type=int, help="pid of the running worker (for its RSS)")
    g.add_argument("--api-pid", type=int, help="pid of the running API (for its RSS)")
    g.add_argument(
        "--temporal-persistence",
        choices=("file", "memory"),
        default="file",
        help="embedded dev server state: a SQLite file like `booking dev` (default) or memory",
    )
    g.add_argument(
        "--postgres-fsync-off",
        action="store_true",
        help="embedded Postgres without fsync (default: durable, like `booking dev`)",
    )
    g.add_argument("--log-level", default="INFO", help="log level of the worker and API (INFO)")
    g.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for the embedded worker and API (repeatable)",
    )
    g.add_argument(
        "--temporal-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for the embedded `temporal server start-dev` (repeatable), "
        "e.g. --temporal-arg=--sqlite-pragma=journal_mode=wal",
    )
    g.add_argument(
        "--worker-command",
        help="command line that replaces `booking worker` in the embedded stack (it gets the "
        "same environment); for trying worker tuning",
    )
    g.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of the embedded stack, on one task queue (1)",
    )
    g.add_argument("--keep", action="store_true", help="keep the stack's directory and logs")


def _size_arguments(parser: argparse.ArgumentParser) -> None:
    """How much each scenario does."""
    s = parser.add_argument_group("sizes (defaults: the issue's; --quick shrinks them)")
    s.add_argument("--reserve-count", type=int)
    s.add_argument("--payment-count", type=int)
    s.add_argument("--clients", type=int, help="throughput clients (32)")
    s.add_argument("--throughput-seconds", type=float)
    s.add_argument("--contention-clients", type=int)
    s.add_argument("--contention-rounds", type=int)
    s.add_argument("--holds", type=int, help="open holds in the scale scenario (10000)")
    s.add_argument("--hold-seconds", type=int, help="minimum hold in the scale scenario (60)")
    s.add_argument("--subscribers", type=int, help="subscribers of one booking in live (10000)")
    s.add_argument(
        "--live-protocol",
        choices=("graphql-transport-ws", "graphql-ws", "appsync"),
        help="the live subscribers' protocol (graphql-transport-ws)",
    )
    s.add_argument(
        "--live-no-deflate",
        action="store_true",
        help="live subscribers that do not offer permessage-deflate (browsers do)",
    )
    s.add_argument("--suite", action="append", help="test paths for the suite scenario")
    s.add_argument("--suite-arg", action="append", default=[], help="extra pytest argument")


def _output_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the results go."""
    o = parser.add_argument_group("output")
    o.add_argument("--output-md", type=Path, default=Path("BENCHMARKS.md"))
    o.add_argument("--output-json", type=Path, default=Path("bench/results/latest.json"))
    o.add_argument("--readme", type=Path, help="also rewrite the '## Benchmarks' section there")
    o.add_argument("--no-write", action="store_true", help="print the results only")
    o.add_argument(
        "--from-json",
        type=Path,
        help="run nothing: render BENCHMARKS.md (and --readme) again from this results file",
    )
    o.add_argument("--quiet", action="store_true", help="no progress output")


def _sizes(args: argparse.Namespace) -> scenarios.Sizes:
    sizes = scenarios.QUICK if args.quick else scenarios.Sizes()
    overrides = {
        "reserve_count": args.reserve_count,
        "payment_count": args.payment_count,
        "throughput_clients": args.clients,
        "throughput_seconds": args.throughput_seconds,
        "contention_clients": args.contention_clients,
        "contention_rounds": args.contention_rounds,
        "scale_holds": args.holds,
        "scale_hold_seconds": args.hold_seconds,
        "live_subscribers": args.subscribers,
    }
    updates = {k: v for k, v in overrides.items() if v is not None}
    for key, value in updates.items():
        if value <= 0:
            raise ConfigurationError(f"--{key.replace('_', '-')} must be positive, got {value}")
    sizes = replace(sizes, **updates)
    if args.live_protocol:
        sizes = replace(sizes, live_protocol=args.live_protocol)
    if args.live_no_deflate:
        sizes = replace(sizes, live_deflate=False)
    return sizes


def _selected(text: str) -> list[str]:
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [c for c in chosen if c not in SCENARIOS]
    if unknown or not chosen:
        raise ConfigurationError(
            f"unknown scenario(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(SCENARIOS)}"
        )
    return [s for s in SCENARIOS if s in chosen]


def _stack_options(args: argparse.Namespace) -> StackOptions:
    extra = []
    for item in args.env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigurationError(f"--env needs NAME=VALUE, got {item!r}")
        extra.append((name, value))
    return StackOptions(
        api_url=args.api_url,
        temporal_address=args.temporal_address,
        database_url=args.database_url,
        namespace=args.namespace,
        api_key=args.api_key,
        webhook_secret=args.webhook_secret,
        task_queue=args.task_queue,
        temporal_persistence=args.temporal_persistence,
        durable_postgres=not args.postgres_fsync_off,
        log_level=args.log_level,
        worker_pid=args.worker_pid,
        api_pid=args.api_pid,
        keep=args.keep,
        extra_env=tuple(extra),
        temporal_args=tuple(args.temporal_arg),
        worker_command=tuple(shlex.split(args.worker_command or "")),
        workers=args.workers,
    )


def _machine_busy_seconds() -> float | None:
    """CPU seconds all cores of the machine have spent busy since boot."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    values = [int(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _our_cpu_seconds(pids: dict[str, int]) -> float:
    total = cpu_seconds(os.getpid()) or 0.0
    for pid in pids.values():
        total += cpu_seconds(pid, tree=True) or 0.0
    return total


async def _run_stack_scenarios(
    chosen: list[str],
    sizes: scenarios.Sizes,
    options: StackOptions,
    progress: Progress,
    results: dict[str, Any],
    checkpoint: Callable[[], None],
) -> None:
    stack = Stack(options, say=progress.say)
    try:
        await stack.start()
        from booking.db import create_pool

        pool = await create_pool(stack.database_url, min_size=1, max_size=8)
        api = ApiClient(stack.api_url, stack.api_key)
        try:
            await _record_versions(pool, results)
            bench = scenarios.Bench(stack, api, pool, progress, sizes)
            await bench.setup(max(sizes.contention_clients, 1) + 1)
            load = _LoadMeter(stack.pids)
            holds: list[dict[str, Any]] = []
            for name in (n for n in chosen if n != "suite"):
                holds, stop = await _run_scenario(bench, name, holds, results, progress)
                checkpoint()
                if stop:
                    break
            _compare_contention(results["scenarios"])
            results["double_booked_apartments"] = await scenarios.double_bookings(bench)
            results["load"].update(load.read(stack.pids))
        finally:
            await api.aclose()
            await pool.close()
    finally:
        progress.say("stopping the stack")
        await stack.stop()


async def _record_versions(pool: Any, results: dict[str, Any]) -> None:
    from bench.store import server_version
    from booking.devstack.binaries import find_binary

    async with pool.acquire() as conn:
        results["stack"]["postgres_version"] = await server_version(conn)
    results["stack"]["temporal_version"] = tool_version(find_binary("temporal"), "--version")


async def _run_scenario(
    bench: scenarios.Bench,
    name: str,
    holds: list[dict[str, Any]],
    results: dict[str, Any],
    progress: Progress,
) -> tuple[list[dict[str, Any]], bool]:
    """Run one scenario into ``results``; the holds the payment scenario pays, and whether
    the stack failed (then nothing after it can run)."""
    progress.say(f"scenario {name}")
    started = time.monotonic()
    before = await metrics.scrape(bench.stack.worker_metrics_urls)
    floor_before = await metrics.scrape(bench.stack.floor_metrics_urls)
    api_metrics_url = bench.stack.api_url.rstrip("/") + "/metrics"
    api_before = await metrics.scrape_text(api_metrics_url)
    try:
        if name == "reserve":
            results["scenarios"][name], holds = await scenarios.reserve_latency(bench)
        elif name == "payment":
            results["scenarios"][name] = await scenarios.payment(bench, holds)
        else:
            results["scenarios"][name] = await _SCENARIOS[name](bench)
    except (scenarios.BenchFailure, StackError) as exc:
        results["errors"][name] = str(exc)
        progress.say(f"  {name} failed: {exc}")
        return holds, isinstance(exc, StackError)
    done = results["scenarios"][name]
    done["seconds"] = round(time.monotonic() - started, 1)
    done["worker_metrics"] = metrics.summarize(
        before, await metrics.scrape(bench.stack.worker_metrics_urls)
    )
    # The floor worker's, for the scenarios that drive the floor too (reserve, throughput).
    floor = metrics.summarize(floor_before, await metrics.scrape(bench.stack.floor_metrics_urls))
    if floor and floor.get("workflow_task_execution_latency_count"):
        done["floor_worker_metrics"] = floor
    api_time = metrics.api_split(api_before, await metrics.scrape_text(api_metrics_url))
    if api_time is not None:
        done["api_time"] = api_time
    return holds, False


_SCENARIOS: dict[str, Callable[[scenarios.Bench], Awaitable[dict[str, Any]]]] = {
    "throughput": scenarios.throughput,
    "contention": scenarios.contention,
    "live": scenarios.live_updates,
    "scale": scenarios.scale,
    "calendar": scenarios.calendar,
    "rent": scenarios.leases,
}


def _compare_contention(done: dict[str, Any]) -> None:
    if "contention" in done and "reserve" in done:
        done["contention"]["versus_uncontended"] = scenarios.versus_uncontended(
            done["contention"], done["reserve"]
        )


class _LoadMeter:
    """How busy the machine was over the scenarios, and how much of that was not ours."""

    def __init__(self, pids: Any) -> None:
        self._busy = _machine_busy_seconds()
        self._ours = _our_cpu_seconds(pids)
        self._wall = time.monotonic()

    def read(self, pids: Any) -> dict[str, float]:
        busy, ours = _machine_busy_seconds(), _our_cpu_seconds(pids)
        wall = time.monotonic() - self._wall
        if self._busy is None or busy is None or wall <= 0:
            return {}
        return {
            "cpu_cores_busy_during_scenarios": round((busy - self._busy) / wall, 2),
            "cpu_cores_used_by_others": round(
                max(0.0, (busy - self._busy) - (ours - self._ours)) / wall, 2
            ),
        }


def _render_again(args: argparse.Namespace) -> int:
    try:
        results = json.loads(args.from_json.read_text())
    except (OSError, ValueError) as exc:
        print(f"booking bench: error: cannot read {args.from_json}: {exc}", file=sys.stderr)
        return 2
    results["targets"] = [t.as_dict() for t in report.evaluate(results)]
    args.output_md.write_text(report.render_markdown(results))
    if args.readme is not None:
        report.update_readme(args.readme, report.readme_section(results))
    print(f"rendered {args.output_md} from {args.from_json}")
    return 0


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    progress = Progress(quiet=args.quiet)
    if args.from_json is not None:
        return _render_again(args)
    try:
        chosen = _selected(args.scenarios)
        sizes = _sizes(args)
        options = _stack_options(args)
    except ConfigurationError as exc:
        print(f"booking bench: error: {exc}", file=sys.stderr)
        return 2
    results = _new_results(args, chosen, sizes, options)
    wall = time.monotonic()

    def checkpoint() -> None:
        """Keep what is measured so far, should a later scenario never finish."""
        if not args.no_write:
            _write_json(_partial(args.output_json), results)

    progress.say(f"booking bench: {', '.join(chosen)}{' (quick)' if args.quick else ''}")
    try:
        if any(name != "suite" for name in chosen):
            asyncio.run(_run_stack_scenarios(chosen, sizes, options, progress, results, checkpoint))
        if "suite" in chosen:
            _run_suite_scenario(args, progress, results)
    except (ConfigurationError, StackError) as exc:
        print(f"booking bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    _note_load(results["load"])
    results["duration_seconds"] = round(time.monotonic() - wall, 1)
    results["targets"] = [t.as_dict() for t in report.evaluate(results)]
    results["json_path"] = str(args.output_json)
    if not args.no_write:
        _write_reports(args, results, progress)
    print("\n".join(report.targets_table([report.Target(**t) for t in results["targets"]])))
    for name, error in results["errors"].items():
        print(f"scenario {name} failed: {error}", file=sys.stderr)
    return 1 if results["errors"] else 0


def _new_results(
    args: argparse.Namespace, chosen: list[str], sizes: scenarios.Sizes, options: StackOptions
) -> dict[str, Any]:
    """The results document before anything ran: what was asked for, on which machine."""
    return {
        "schema": 1,
        "started_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "options": {
            "quick": args.quick,
            "scenarios": chosen,
            "sizes": sizes.as_dict(),
            "temporal_persistence": options.temporal_persistence,
            "postgres_durable": options.durable_postgres,
            "log_level": options.log_level,
            "temporal_args": list(options.temporal_args),
            "worker_command": list(options.worker_command),
            "extra_env": dict(options.extra_env),
        },
        "machine": machine_info(REPO),
        "load": {"before": load_average()},
        "stack": {
            "embedded": options.embedded,
            "description": (
                "fresh embedded stack: Postgres "
                f"({'durable' if options.durable_postgres else 'fsync off'}), Temporal dev server "
                f"({options.temporal_persistence} persistence), `booking worker`, `booking api`"
                if options.embedded
                else f"external: API {options.api_url}, Temporal {options.temporal_address}"
            ),
        },
        "scenarios": {},
        "errors": {},
    }


def _run_suite_scenario(
    args: argparse.Namespace, progress: Progress, results: dict[str, Any]
) -> None:
    progress.say("scenario suite: running the time-skipping tests")
    paths = args.suite or suite.default_paths(REPO)
    if not paths:
        results["errors"]["suite"] = "no workflow test files found"
        return
    started = time.monotonic()
    result = suite.run_suite(REPO, paths, list(args.suite_arg))
    result["histories"] = suite.history_coverage(REPO)
    result["seconds"] = round(time.monotonic() - started, 1)
    results["scenarios"]["suite"] = result
    if result["exit_status"] != 0:
        results["errors"]["suite"] = (
            f"pytest exited {result['exit_status']}: {result['summary_line']}"
        )


def _note_load(load: dict[str, Any]) -> None:
    load["after"] = load_average()
    before = load["before"]
    others = load.get("cpu_cores_used_by_others")
    # The CPU others used during the run says it; the load average before only stands in when
    # that could not be measured (it still counts the previous run's last minute).
    shared = others > 0.2 if others is not None else bool(before and before[0] > 0.5)
    if shared:
        load["note"] = "the machine was shared with other work during the run" + (
            f" (others used {others} cores on average)" if others is not None else ""
        )


def _partial(output_json: Path) -> Path:
    return output_json.with_name(output_json.name + ".partial")


def _write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def _write_reports(args: argparse.Namespace, results: dict[str, Any], progress: Progress) -> None:
    _write_json(args.output_json, results)
    args.output_md.write_text(report.render_markdown(results))
    _partial(args.output_json).unlink(missing_ok=True)
    progress.say(f"wrote {args.output_md} and {args.output_json}")
    if args.readme is not None and (
        not args.readme.exists()
        or not report.update_readme(args.readme, report.readme_section(results))
    ):
        progress.say(f"{args.readme} has no '## Benchmarks' section; left unchanged")
