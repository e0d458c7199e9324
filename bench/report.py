"""Targets, the BENCHMARKS.md document and the README's "Benchmarks" section."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 1024 * 1024
ANALYSIS_FILE = Path(__file__).with_name("analysis.md")
# The README's paragraph under the targets table, written by hand like the analysis.
SUMMARY_FILE = Path(__file__).with_name("summary.md")


@dataclass(frozen=True)
class Target:
    id: str
    label: str
    goal: str
    measured: float | int | None
    unit: str
    met: bool | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "goal": self.goal,
            "measured": self.measured,
            "unit": self.unit,
            "met": self.met,
        }


def _get(data: dict[str, Any], *path: str) -> Any:
    value: Any = data
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _at_most(value: Any, limit: float) -> bool | None:
    return None if value is None else bool(value <= limit)


def _at_least(value: Any, limit: float) -> bool | None:
    return None if value is None else bool(value >= limit)


def evaluate(results: dict[str, Any]) -> list[Target]:
    """Every target the scenarios that ran can judge, in the README table's order."""
    s = results.get("scenarios", {})
    return [
        *_reserve_targets(s),
        *_payment_targets(s),
        *_throughput_targets(s),
        *_live_targets(s),
        *_double_booking_targets(s, results.get("double_booked_apartments")),
        *_scale_targets(s),
        *_calendar_targets(s),
        *_rent_targets(s),
    ]


def _rent_targets(s: dict[str, Any]) -> list[Target]:
    if "rent" not in s:
        return []
    seconds = _get(s, "rent", "issue_seconds")
    rss = _get(s, "rent", "worker_peak_rss_bytes")
    waiting = _get(s, "rent", "worker_cores_waiting")
    done = _get(s, "rent", "none_twice")
    return [
        Target(
            "rent_issue_seconds",
            "10,000 leases' invoices issued at once, all of them, none twice",
            "<= 120 s",
            seconds,
            "s",
            _at_most(seconds, 120) if done else False,
        ),
        Target(
            "rent_worker_rss",
            "worker RSS while 10,000 leases issue and wait",
            "<= 300 MB",
            None if rss is None else round(rss / 2**20),
            "MB",
            None if rss is None else _at_most(rss / 2**20, 300),
        ),
        Target(
            "rent_worker_waiting",
            "worker CPU while the leases wait between timers",
            "<= 0.05 cores",
            waiting,
            "cores",
            _at_most(waiting, 0.05),
        ),
    ]


def _calendar_targets(s: dict[str, Any]) -> list[Target]:
    if "calendar" not in s:
        return []
    search = _get(s, "calendar", "search_latency_ms", "p99")
    year = _get(s, "calendar", "calendar_latency_ms", "p99")
    return [
        Target(
            "search_p99",
            "searchApartments, a month, 1M stays, p99",
            "<= 50 ms",
            search,
            "ms",
            _at_most(search, 50),
        ),
        Target(
            "calendar_p99",
            "getApartmentCalendar, a year, 1M stays, p99",
            "<= 20 ms",
            year,
            "ms",
            _at_most(year, 20),
        ),
    ]


def _reserve_targets(s: dict[str, Any]) -> list[Target]:
    if "reserve" not in s:
        return []
    p50 = _get(s, "reserve", "latency_ms", "p50")
    p99 = _get(s, "reserve", "latency_ms", "p99")
    vs_floor = _ratio(p50, _get(s, "reserve", "floor_hold_latency_ms", "p50"))
    return [
        Target("reserve_p50", "reserve latency p50", "<= 40 ms", p50, "ms", _at_most(p50, 40)),
        Target(
            "reserve_p50_vs_floor",
            "reserve p50 vs the engine's update-with-start",
            "<= 1.2x",
            vs_floor,
            "x",
            _at_most(vs_floor, 1.2),
        ),
        Target("reserve_p99", "reserve latency p99", "<= 150 ms", p99, "ms", _at_most(p99, 150)),
    ]


def _payment_targets(s: dict[str, Any]) -> list[Target]:
    if "payment" not in s:
        return []
    p50 = _get(s, "payment", "sync", "latency_ms", "p50")
    targets = [
        Target(
            "payment_p50", "payBooking -> APPROVED p50", "<= 40 ms", p50, "ms", _at_most(p50, 40)
        )
    ]
    # The engine's own pay update is measured by the reserve scenario, one client as here.
    floor = _get(s, "reserve", "floor_pay_latency_ms", "p50")
    if floor is None:
        return targets
    vs_floor = _ratio(p50, floor)
    return [
        *targets,
        Target(
            "payment_p50_vs_floor",
            "payBooking p50 vs the engine's update",
            "<= 1.2x",
            vs_floor,
            "x",
            _at_most(vs_floor, 1.2),
        ),
    ]


def _ratio(ours: float | None, floor: float | None) -> float | None:
    if ours is None or not floor:
        return None
    return round(ours / floor, 2)


def _throughput_targets(s: dict[str, Any]) -> list[Target]:
    targets: list[Target] = []
    if "throughput" in s:
        ratio = _get(s, "throughput", "ratio")
        targets.append(
            Target(
                "throughput_ratio",
                "throughput vs engine floor",
                ">= 0.8x",
                ratio,
                "x",
                _at_least(ratio, 0.8),
            )
        )
    cpu = _get(s, "throughput", "cpu_ms_per_booking")
    if not cpu:
        return targets
    per_request = cpu.get("api_per_request")
    return [
        *targets,
        Target(
            "cpu_per_booking_ratio",
            "CPU per completed booking vs floor",
            "<= 1.4x",
            cpu.get("ratio"),
            "x",
            _at_most(cpu.get("ratio"), 1.4),
        ),
        Target(
            "api_cpu_per_request",
            "API CPU per GraphQL request",
            "<= 2.5 ms",
            per_request,
            "ms",
            _at_most(per_request, 2.5),
        ),
        Target(
            "worker_cpu_per_booking",
            "worker CPU per booking",
            "<= 16 ms",
            cpu.get("worker"),
            "ms",
            _at_most(cpu.get("worker"), 16),
        ),
    ]


def _live_targets(s: dict[str, Any]) -> list[Target]:
    if "live" not in s:
        return []
    count = _get(s, "live", "subscribers")
    delivered = _get(s, "live", "delivered")
    per = _get(s, "live", "api_kb_per_subscriber")
    p99 = _get(s, "live", "delivery_ms", "p99")
    seconds = p99 / 1000 if p99 is not None else None
    return [
        Target(
            "live_delivered",
            f"{count} subscribers of one booking get the change",
            "all",
            delivered,
            "",
            delivered == count and _get(s, "live", "subscribed") == count,
        ),
        Target(
            "live_kb_per_subscriber",
            "API memory per subscriber",
            "<= 40 KB",
            per,
            "KB",
            _at_most(per, 40),
        ),
        Target(
            "live_delivery_p99",
            "change -> subscriber p99",
            "<= 1 s",
            round(seconds, 3) if seconds is not None else None,
            "s",
            _at_most(seconds, 1.0),
        ),
    ]


def _double_booking_targets(s: dict[str, Any], doubles: list[Any] | None) -> list[Target]:
    if "contention" not in s and doubles is None:
        return []
    rounds = _get(s, "contention", "rounds")
    good = _get(s, "contention", "rounds_with_exactly_one_winner")
    bad_rounds = (rounds - good) if rounds is not None and good is not None else 0
    found = bad_rounds + len(doubles or [])
    return [Target("double_bookings", "double bookings", "0", found, "", found == 0)]


def _scale_targets(s: dict[str, Any]) -> list[Target]:
    if "scale" not in s:
        return []
    rss = _worker_peak(s["scale"])
    lag = _get(s, "scale", "expiry_lag_ms", "p99")
    holds = _get(s, "scale", "holds")
    opened = _get(s, "scale", "open_after_placing")
    mb = rss / MB if rss else None
    lag_s = lag / 1000 if lag is not None else None
    return [
        Target(
            "scale_open",
            f"{holds} holds open at once",
            "all",
            int(opened or 0),
            "",
            opened == holds,
        ),
        Target(
            "scale_expired",
            f"{holds} holds all expire correctly",
            "all",
            int(_get(s, "scale", "expired") or 0),
            "",
            bool(_get(s, "scale", "all_expired_correctly")),
        ),
        Target(
            "scale_worker_rss",
            f"worker peak RSS, {holds} holds",
            "<= 300 MB",
            round(mb, 1) if mb is not None else None,
            "MB",
            _at_most(mb, 300),
        ),
        Target(
            "scale_expiry_lag_p99",
            "expiry lag p99",
            "<= 1.5 s",
            round(lag_s, 3) if lag_s is not None else None,
            "s",
            _at_most(lag_s, 1.5),
        ),
    ]


def _worker_peak(scale: dict[str, Any]) -> int | None:
    candidates = [
        _get(scale, "peak_rss_bytes_sampled", "worker"),
        _get(scale, "peak_rss_bytes_process_lifetime", "worker"),
    ]
    known = [c for c in candidates if c is not None]
    return max(known) if known else None


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        text = f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def _mark(met: bool | None) -> str:
    return {True: "met", False: "**missed**", None: "n/a"}[met]


def targets_table(targets: list[Target]) -> list[str]:
    lines = ["| measure | target | measured | |", "| --- | --- | --- | --- |"]
    for t in targets:
        lines.append(f"| {t.label} | {t.goal} | {_fmt(t.measured, t.unit)} | {_mark(t.met)} |")
    return lines


def _latency_row(name: str, summary: dict[str, Any] | None) -> str:
    summary = summary or {}
    return (
        f"| {name} | {summary.get('count', 0)} | {_fmt(summary.get('p50'))} | "
        f"{_fmt(summary.get('p90'))} | {_fmt(summary.get('p99'))} | {_fmt(summary.get('max'))} |"
    )


def _start_pace(scale: dict[str, Any]) -> str:
    rate = scale.get("start_rate_per_second")
    if rate is None:  # results written before starts were paced
        return "as fast as they could be sent"
    share = scale.get("start_share_of_calibrated", 0)
    return f"{rate}/s ({share:.0%} of the {scale.get('calibrated_per_second')}/s calibrated)"


def _cpu(cores: dict[str, float] | None) -> str:
    if not cores:
        return "n/a"
    return ", ".join(f"{name} {value:.2f}" for name, value in sorted(cores.items()))


def render_markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    s = results["scenarios"]
    load = results.get("load", {})
    git = m.get("git", {})
    lines = [
        "# Benchmarks",
        "",
        f"Produced by `booking bench` ({_size_label(results)}); this run took "
        f"{results['duration_seconds'] / 60:.0f} min. Raw numbers: "
        f"`{results.get('json_path', 'bench/results/latest.json')}`.",
        "",
        f"- run: {results['started_at']} UTC, {results['duration_seconds']:.0f} s, "
        f"commit `{(git.get('commit') or 'unknown')[:12]}`"
        f"{' (with uncommitted changes)' if git.get('dirty') else ''}",
        f"- machine: {m['cpu_model']}, {m['cores_usable']} usable cores, "
        f"{(m.get('memory_bytes') or 0) / 2**30:.1f} GiB, {m['os']}",
        f"- software: Python {m['python']}, temporalio {m['packages'].get('temporalio')}, "
        f"Temporal CLI {results['stack'].get('temporal_version') or 'n/a'}, "
        f"Postgres {results['stack'].get('postgres_version') or 'n/a'}",
        f"- stack: {results['stack'].get('description')}",
        f"- load average (1/5/15 min) before: {load.get('before')}, after: {load.get('after')}"
        + (f"; {load['note']}" if load.get("note") else ""),
        "",
        "## Results against the targets",
        "",
        *targets_table([Target(**t) for t in results["targets"]]),
        "",
    ]
    lines += _details(s)
    if ANALYSIS_FILE.exists():
        lines += ["## Analysis", "", ANALYSIS_FILE.read_text().strip(), ""]
    lines += _method()
    return "\n".join(lines).rstrip() + "\n"


def _size_label(results: dict[str, Any]) -> str:
    from bench.scenarios import Sizes

    options = results.get("options", {})
    if options.get("quick"):
        return "`--quick` smoke size"
    recorded, defaults = options.get("sizes") or {}, Sizes().as_dict()
    # A size added later (a new scenario's) does not make an older run's sizes custom.
    if recorded and all(defaults.get(name) == value for name, value in recorded.items()):
        return "the issue's sizes"
    return "custom sizes, see `options.sizes` in the JSON"


def _details(s: dict[str, Any]) -> list[str]:
    return [
        "## Details",
        "",
        *_latency_details(s),
        *_throughput_details(s),
        *_contention_details(s),
        *_live_details(s),
        *_scale_details(s),
        *_suite_details(s),
        *_cpu_details(s),
    ]


def _latency_details(s: dict[str, Any]) -> list[str]:
    """One table of every latency measured, by path."""
    head = [
        "| path | n | p50 ms | p90 ms | p99 ms | max ms |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    rows: list[str] = []
    if "reserve" in s:
        rows.append(_latency_row("reserveApartment -> PENDING", s["reserve"]["latency_ms"]))
        if "floor_hold_latency_ms" in s["reserve"]:
            rows.append(
                _latency_row(
                    "engine floor: update-with-start, no-op activity (Temporal client)",
                    s["reserve"]["floor_hold_latency_ms"],
                )
            )
            rows.append(
                _latency_row(
                    "engine floor: pay update, no-op activity (Temporal client)",
                    s["reserve"]["floor_pay_latency_ms"],
                )
            )
    if "payment" in s:
        pay = s["payment"]
        rows.append(_latency_row("payBooking -> APPROVED", _get(pay, "sync", "latency_ms")))
        if "webhook" in pay:
            rows.append(
                _latency_row("webhook -> APPROVED in DB", _get(pay, "webhook", "latency_to_db_ms"))
            )
            rows.append(
                _latency_row("webhook HTTP answer (202)", _get(pay, "webhook", "accepted_ms"))
            )
        if "signal" in pay:
            rows.append(
                _latency_row(
                    "payment_received signal -> APPROVED in DB",
                    _get(pay, "signal", "latency_to_db_ms"),
                )
            )
    if "contention" in s:
        rows.append(
            _latency_row("contended reserve, loser's error", s["contention"]["loser_latency_ms"])
        )
        rows.append(_latency_row("contended reserve, winner", s["contention"]["winner_latency_ms"]))
    if "scale" in s:
        rows.append(_latency_row("hold expiry lag", s["scale"]["expiry_lag_ms"]))
    if "calendar" in s:
        calendar = s["calendar"]
        rows.append(
            _latency_row("searchApartments, a month (1M stays)", calendar["search_latency_ms"])
        )
        rows.append(
            _latency_row("getApartmentCalendar, a year (1M stays)", calendar["calendar_latency_ms"])
        )
        rows.append(_latency_row("reserveApartment among 1M stays", calendar["reserve_latency_ms"]))
    if not rows:
        return []
    return ["### Latencies (one client unless stated)", "", *head, *rows, ""]


def _throughput_details(s: dict[str, Any]) -> list[str]:
    """Bookings against the engine floor, with CPU per booking."""
    if "throughput" not in s:
        return []
    lines: list[str] = []
    t = s["throughput"]
    lines += [
        f"### Throughput, {t['clients']} concurrent clients",
        "",
        "| what | completed/s | latency p50 ms | p99 ms | errors | CPU cores used |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, key in (
        ("bookings: reserve + pay via GraphQL", "bookings"),
        ("floor: no-op workflow, start + signal + result", "floor"),
        ("floor, update-with-start + update", "floor_update_protocol"),
    ):
        r = t[key]
        lines.append(
            f"| {label} | {_fmt(r['per_second'])} | {_fmt(_get(r, 'latency_ms', 'p50'))} | "
            f"{_fmt(_get(r, 'latency_ms', 'p99'))} | {sum(r['errors'].values())} | "
            f"{_cpu(r.get('cpu_cores_used'))} |"
        )
    cpu = t.get("cpu_ms_per_booking")
    if cpu:
        ours = t["bookings"].get("cpu_ms_per_completed", {})
        floor = t["floor"].get("cpu_ms_per_completed", {})
        per = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(ours.items()))
        per_floor = ", ".join(f"{k} {_fmt(v)}" for k, v in sorted(floor.items()))
        lines += [
            "",
            f"CPU ms per completed booking: service {_fmt(cpu['service'])} "
            f"({per}; `bench` is the load generator, not counted) against the floor's "
            f"{_fmt(cpu['floor'])} ({per_floor}; its client counted, as its API): "
            f"**{_fmt(cpu['ratio'])}x**; API {_fmt(cpu['api_per_request'])} ms per GraphQL "
            "request.",
        ]
    lines += [
        "",
        f"Ratio bookings / floor: **{_fmt(t['ratio'])}x** "
        f"(against the update-protocol floor: {_fmt(t['ratio_vs_update_protocol'])}x).",
        "",
    ]
    return lines


def _contention_details(s: dict[str, Any]) -> list[str]:
    """One apartment, many reserves at once."""
    if "contention" not in s:
        return []
    lines: list[str] = []
    c = s["contention"]
    lines += [
        "### Contention",
        "",
        f"{c['clients']} concurrent `reserveApartment` calls for one apartment, "
        f"{c['rounds']} rounds: {c['rounds_with_exactly_one_winner']} rounds with exactly "
        f"one winner; booking rows per apartment {c['booking_rows_per_apartment']}; "
        f"unexpected errors {c['unexpected_errors'] or 'none'}.",
        "",
    ]
    v = c.get("versus_uncontended")
    if v:
        lines += [
            f"Losers' p99 {_fmt(v['loser_p99_ms'])} ms = "
            f"**{_fmt(v['loser_p99_vs_uncontended_p50'])}x** the uncontended reserve p50 "
            f"({_fmt(v['uncontended_reserve_p50_ms'])} ms; target <= 10x: "
            f"{'met' if v['loser_target_met'] else 'NOT met'}); workflow executions per "
            f"rush: p50 {_fmt(_get(c, 'executions_per_rush', 'p50'))}, most "
            f"{c.get('executions_per_rush_max')} (target <= 8: "
            f"{'met' if v['executions_target_met'] else 'NOT met'}).",
            "",
        ]
    if c.get("note"):
        lines += [f"Note: {c['note']}", ""]
    return lines


def _live_details(s: dict[str, Any]) -> list[str]:
    """Subscribers of one booking on one API process."""
    if "live" not in s:
        return []
    lines: list[str] = []
    c = s["live"]
    lines += [
        "### Live updates",
        "",
        f"{c['subscribers']} {c['protocol']} subscribers of one booking on one API process "
        f"(their own process, `bench.subscribers`), "
        + (
            "offering permessage-deflate as browsers do (the API compressed "
            f"{c.get('deflate_accepted', 0)} of the connections)"
            if c.get("deflate_offered")
            else "offering no compression"
        )
        + f": {c['subscribed']} subscribed in "
        f"{c['subscribe_seconds']} s; API RSS {_fmt(c.get('api_rss_mb_before'))} MB before, "
        f"{_fmt(c.get('api_rss_mb_subscribed'))} MB subscribed: "
        f"**{_fmt(c.get('api_kb_per_subscriber'))} KB per subscriber**. The booking paid: "
        f"{c['delivered']} got APPROVED; failures "
        f"{c['subscribe_failures'] or c['delivery_failures'] or 'none'}; API CPU from the "
        f"payment to the last delivery {_fmt(c.get('api_cpu_ms_pay_to_delivered'))} ms.",
        "",
        "| from the change (the APPROVED notice) to | count | p50 ms | p90 ms | p99 ms | max ms |",
        "| --- | --- | --- | --- | --- | --- |",
        _latency_row("a subscriber's `next`", c["delivery_ms"]),
        "",
    ]
    return lines


def _scale_details(s: dict[str, Any]) -> list[str]:
    """Holds open at once, memory and CPU."""
    if "scale" not in s:
        return []
    lines: list[str] = []
    c = s["scale"]
    lines += [
        "### Scale",
        "",
        f"{c['placed']} holds of {c['hold_seconds']} s: booking workflows started by a "
        f"Temporal client ({c['clients']} starts in flight) as the API's reserve starts "
        f"them, {_start_pace(c)}, all placed in Postgres {c['placing_seconds']} s after "
        "the first start "
        f"({c['placing_per_second']}/s); open at once: {c['open_after_placing']}; "
        f"expired: {c['expired']}; apartments afterwards: {c['apartments']}.",
        "",
        "| process | peak RSS while all holds open | peak RSS, scenario | "
        "peak RSS, process lifetime |",
        "| --- | --- | --- | --- |",
    ]
    names = sorted(set(c["peak_rss_bytes_sampled"]) | set(c["peak_rss_bytes_process_lifetime"]))
    for name in names:
        lines.append(
            f"| {name} | {_mb(_get(c, 'peak_rss_bytes_while_holding', name))} | "
            f"{_mb(_get(c, 'peak_rss_bytes_sampled', name))} | "
            f"{_mb(_get(c, 'peak_rss_bytes_process_lifetime', name))} |"
        )
    lines += [
        "",
        "Postgres is the proportional set size (PSS) summed over its processes, so that its "
        "shared buffers count once; the others are single processes (RSS).",
        "",
        f"CPU cores used during the scenario: {_cpu(c.get('cpu_cores_used'))}; "
        f"while placing: {_cpu(c.get('cpu_cores_used_placing'))}; while expiring "
        f"({c.get('expiring_per_second', 'n/a')} holds/s over "
        f"{c.get('expiring_seconds', 'n/a')} s): {_cpu(c.get('cpu_cores_used_expiring'))}.",
        "",
    ]
    return lines


def _suite_details(s: dict[str, Any]) -> list[str]:
    """The test suite's wall time against the time it simulates."""
    if "suite" not in s:
        return []
    lines: list[str] = []
    u = s["suite"]
    h = u.get("histories", {})
    lines += [
        "### Test-suite speed",
        "",
        f"`{u['command']}`: {u['tests']} tests ({u['outcomes']}) in **{u['wall_seconds']} s**"
        f" of wall time (process start to exit, minus {u['history_fetch_seconds']} s the "
        f"plugin spent reading histories) cover **{_duration(u['simulated_seconds'])}** of "
        f"simulated time: the durable timers that fired in the {u['workflows']} workflows "
        f"the tests ran (x{_fmt(u['speedup'])} real time). Their histories span "
        f"{_duration(u['history_span_seconds'])} in total; the test server's clock "
        f"advanced {_duration(u['server_clock_advanced_seconds'])} over the tests (it also "
        "skips to timers of workflows that earlier tests left running, so it overstates).",
        "",
        *([f"Note: {u['note']}", ""] if u.get("note") else []),
        "Cross-check from the committed replay histories: "
        f"{h.get('histories', 0)} histories, durable timers fired "
        f"{_duration(h.get('timers_fired_seconds'))}, spanning "
        f"{_duration(h.get('history_span_seconds'))}.",
        "",
    ]
    if u.get("top_tests"):
        lines += [
            "| test | workflows | simulated | wall s |",
            "| --- | --- | --- | --- |",
        ]
        for t in u["top_tests"]:
            lines.append(
                f"| `{t['nodeid']}` | {t['workflows']} | {_duration(t['simulated_s'])} | "
                f"{_fmt(t['wall_s'])} |"
            )
        lines.append("")
    return lines


def _cpu_details(s: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    cpu_rows = [
        (name, _get(s, *path))
        for name, path in (
            ("reserve, one client", ("reserve", "cpu_cores_used")),
            ("payBooking, one client", ("payment", "sync", "cpu_cores_used")),
            ("contention", ("contention", "cpu_cores_used")),
        )
        if _get(s, *path)
    ]
    if cpu_rows:
        lines += ["### Where the CPU went (cores used, averaged over the scenario)", ""]
        lines += [f"- {name}: {_cpu(cores)}" for name, cores in cpu_rows]
        lines.append("")
    return lines


def _mb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MB:.0f} MB"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def _method() -> list[str]:
    return [
        "## Method",
        "",
        "- Every latency is measured by the client around one HTTP call (GraphQL over HTTP/1.1 "
        "with keep-alive, `x-api-key`), or from sending a payment to the moment Postgres "
        "delivers the `booking_status` NOTIFY for APPROVED (sent at commit, so the row is "
        "visible). Percentiles interpolate between closest ranks; warm-up calls are excluded.",
        "- Throughput counts completions that finish inside the measuring window (after a "
        "warm-up). The floor is `bench/floor.py`: the booking's shape (activity, wait for a "
        "signal with a timer, activity) with no-op activities, local ones like the booking's, "
        "served by its own worker process (with the booking worker's tuning) on its own task "
        "queue of the same Temporal server, driven by a Temporal client in the benchmark "
        "process. It runs in the same process layout and right before the booking "
        "measurement.",
        "- Contention: each round releases 64 coroutines at once (one event) against a fresh "
        "apartment; a winner is a PENDING answer, a loser an `ApartmentUnavailable` error. The "
        "database is then checked: one booking row per apartment, and no apartment of the run "
        "with more than one open hold or running lease.",
        "- Scale: the booking workflows are started by a Temporal client the way the API's "
        "reserve starts them (same input, id and search attributes; GraphQL's share is "
        "measured in the other scenarios), and a hold counts as placed once its row is in "
        "Postgres. The hold is long enough that every hold is still open when the last one is "
        "placed (calibrated from a first batch). Expiry lag = `booking_events.at` of the "
        "release (the release transaction's start) minus `bookings.hold_expires_at`. RSS comes "
        "from /proc (`VmRSS` sampled every 0.5 s, and the kernel's high-water mark `VmHWM`).",
        "- Test-suite speed: the workflow test files run in a fresh `pytest` process with the "
        "`bench.simtime` plugin, which remembers every workflow the tests start and, before "
        "the session's Temporal test server stops, reads their histories: the simulated time is "
        "the sum of the durable timers that fired (holds that ran out, refund windows, leases); "
        "cancelled timers count nothing.",
        "- The client, the worker, the API, the Temporal dev server and Postgres share the same "
        "cores; the CPU figures show how they split them.",
        "",
    ]


README_HEADING = "## Benchmarks"


def readme_section(results: dict[str, Any]) -> str:
    m = results["machine"]
    targets = [Target(**t) for t in results["targets"]]
    lines = [
        README_HEADING,
        "",
        f"`booking bench` on {m['cores_usable']} cores ({m['cpu_model']}), "
        f"{results['started_at'][:10]}; full report and method in "
        "[BENCHMARKS.md](BENCHMARKS.md), raw numbers in `bench/results/latest.json`. "
        "`booking bench --quick` is the smoke size; `--scenarios reserve,payment` selects.",
        "",
        *_open_targets(targets),
        SUMMARY_FILE.read_text().strip(),
        "",
    ]
    return "\n".join(lines)


def _open_targets(targets: list[Target]) -> list[str]:
    """The README keeps to a first page: how many targets were met, and the others' rows
    (BENCHMARKS.md has the whole table)."""
    rest = [t for t in targets if t.met is not True]
    if not rest:
        return [f"All {len(targets)} targets met.", ""]
    met = len(targets) - len(rest)
    return [
        f"{met} of {len(targets)} targets met; the others:",
        "",
        *targets_table(rest),
        "",
    ]


def update_readme(readme: Path, section: str) -> bool:
    """Replace the "## Benchmarks" section of ``readme``; False if it has none."""
    text = readme.read_text()
    pattern = re.compile(r"^## Benchmarks[^\n]*\n.*?(?=^## |\Z)", re.S | re.M)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(lambda _: section.rstrip() + "\n\n", text, count=1))
    return True
