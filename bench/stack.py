"""The system under test: a fresh embedded stack, or one the caller already runs.

Embedded: ``booking.devstack.Stack`` starts Postgres, the Temporal dev server (the same
flags as `booking dev`), ``booking worker``, ``booking api`` and the floor worker as child
processes on free ports, so that their memory can be read from /proc. Everything lives in a
temporary directory that is removed at the end (``keep=True`` keeps it, with the processes'
logs).

External: the caller's API, Temporal and database addresses; only the floor worker is
started here (on its own task queue of the given Temporal server).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from temporalio.client import Client

from bench.floor import TASK_QUEUE_PREFIX
from booking.db import migrate
from booking.devstack import stack as devstack
from booking.devstack.net import free_port
from booking.errors import ConfigurationError

HOST = "127.0.0.1"


class StackError(Exception):
    """The stack could not be started or stopped working."""


@dataclass(frozen=True)
class StackOptions:
    api_url: str | None = None
    temporal_address: str | None = None
    database_url: str | None = None
    namespace: str = "default"
    api_key: str | None = None
    webhook_secret: str | None = None
    task_queue: str = "apartment-booking"
    # memory: the dev server keeps its state in RAM; file: a SQLite file as `booking dev`.
    temporal_persistence: str = "file"
    durable_postgres: bool = True
    log_level: str = "INFO"
    worker_pid: int | None = None
    api_pid: int | None = None
    keep: bool = False
    ready_timeout: float = 60.0
    extra_env: tuple[tuple[str, str], ...] = ()
    temporal_args: tuple[str, ...] = ()
    # Replaces `booking worker` (e.g. to try worker tuning before it lands in worker.py).
    worker_command: tuple[str, ...] = ()
    # Worker processes on the task queue (their CPU and memory add up as "worker").
    workers: int = 1

    @property
    def embedded(self) -> bool:
        return self.api_url is None


@dataclass
class Stack:
    """Addresses and processes of a running system under test."""

    options: StackOptions
    say: Callable[[str], None]
    api_url: str = ""
    temporal_address: str = ""
    database_url: str = ""
    api_key: str = ""
    webhook_secret: str | None = None
    floor_task_queue: str = ""
    pids: dict[str, int] = field(default_factory=dict)
    root: Path | None = None
    worker_metrics_urls: list[str] = field(default_factory=list)
    floor_metrics_urls: list[str] = field(default_factory=list)
    parts: devstack.Stack | None = None

    @property
    def graphql_url(self) -> str:
        return self.api_url.rstrip("/") + "/graphql"

    @property
    def temporal(self) -> Client:
        if self.parts is None or self.parts.client is None:
            raise StackError("the stack is not started")
        return self.parts.client

    async def start(self) -> None:
        opts = self.options
        self.floor_task_queue = f"{TASK_QUEUE_PREFIX}-{uuid.uuid4().hex[:8]}"
        self.root = Path(tempfile.mkdtemp(prefix="booking-bench-"))
        self.parts = devstack.Stack(self.root, host=HOST)
        try:
            if opts.embedded:
                await self._start_embedded()
            else:
                await self._use_external()
            self._spawn_floor_worker()
            waiting = ["floor", *([*self._worker_names(), "api"] if opts.embedded else [])]
            await self.parts.wait_ready(waiting, within=opts.ready_timeout)
        except devstack.StackError as exc:
            raise StackError(str(exc)) from exc
        self.pids.update(
            {"floor_worker" if n == "floor" else n: pid for n, pid in self.parts.pids().items()}
        )
        if opts.embedded:
            self.say(
                "  ready      " + ", ".join(f"{name} pid {pid}" for name, pid in self.pids.items())
            )

    async def _use_external(self) -> None:
        opts = self.options
        assert self.parts is not None
        if not (opts.temporal_address and opts.database_url):
            raise ConfigurationError(
                "--api-url needs --temporal-address and --database-url as well"
            )
        assert opts.api_url is not None
        self.api_url = opts.api_url
        self.api_key = opts.api_key or ""
        if not self.api_key:
            raise ConfigurationError("--api-url needs --api-key (a key the API accepts)")
        self.webhook_secret = opts.webhook_secret
        self.database_url = await self.parts.use_database(opts.database_url)
        await self.parts.use_temporal(opts.temporal_address, opts.namespace, override=True)
        self.temporal_address = self.parts.temporal_address
        await migrate(self.database_url)
        if opts.worker_pid:
            self.pids["worker"] = opts.worker_pid
        if opts.api_pid:
            self.pids["api"] = opts.api_pid
        self.say(f"using the API at {self.api_url}, Temporal at {self.temporal_address}")

    async def _start_embedded(self) -> None:
        opts = self.options
        parts = self.parts
        assert parts is not None and self.root is not None
        self.say(f"starting a fresh stack in {self.root}")
        started = time.monotonic()
        self.database_url = await parts.start_postgres(durable=opts.durable_postgres)
        await migrate(self.database_url)
        self.say(f"  postgres   {self.database_url} (durable={opts.durable_postgres})")
        await parts.start_temporal(
            db_file=self.root / "temporal.db" if opts.temporal_persistence == "file" else None,
            namespace=opts.namespace,
            extra_args=opts.temporal_args,
        )
        self.temporal_address = parts.temporal_address
        self.say(f"  temporal   {self.temporal_address} (persistence: {opts.temporal_persistence})")

        self.api_key = f"bench-{secrets.token_hex(8)}"
        self.webhook_secret = secrets.token_hex(16)
        parts.task_queue = opts.task_queue
        env = parts.child_env(
            {
                "BOOKING_API_KEYS": self.api_key,
                "BOOKING_JWT_SECRET": secrets.token_hex(32),
                "BOOKING_WEBHOOK_SECRET": self.webhook_secret,
                "BOOKING_LOG_LEVEL": opts.log_level,
                # A few bench tenants place thousands of holds: no per-tenant limit.
                "BOOKING_MAX_HOLDS_PER_TENANT": "0",
                **dict(opts.extra_env),
            }
        )
        for name in self._worker_names():
            # Each worker serves its metrics on a port of its own; the bench adds them up.
            metrics_address = f"{HOST}:{free_port(HOST)}"
            self.worker_metrics_urls.append(f"http://{metrics_address}/metrics")
            parts.spawn_worker(
                {**env, "BOOKING_WORKER_METRICS_ADDRESS": metrics_address},
                name=name,
                command=opts.worker_command,
                log_file=self.root / f"{name}.log",
            )
        api = parts.spawn_api(env, log_file=self.root / "api.log")
        self.api_url = api.url
        self.say(f"  processes  started in {time.monotonic() - started:.1f} s; waiting for them")

    def _worker_names(self) -> list[str]:
        if self.options.workers < 1:
            raise ConfigurationError(f"--workers must be at least 1, got {self.options.workers}")
        return ["worker"] + [f"worker-{i}" for i in range(2, self.options.workers + 1)]

    def _spawn_floor_worker(self) -> None:
        parts = self.parts
        assert parts is not None and self.root is not None
        metrics_address = f"{HOST}:{free_port(HOST)}"
        self.floor_metrics_urls.append(f"http://{metrics_address}/metrics")
        parts.spawn(
            "floor",
            [sys.executable, "-m", "bench.floor_worker", self.floor_task_queue],
            env={
                **parts.child_env(),
                "BOOKING_TASK_QUEUE": self.floor_task_queue,
                "BOOKING_WORKER_METRICS_ADDRESS": metrics_address,
            },
            log_file=self.root / "floor-worker.log",
        )

    def check_alive(self) -> None:
        assert self.parts is not None
        for child in self.parts.supervisor.children:
            if not child.alive():
                raise StackError(
                    f"the {child.name} process exited with status {child.returncode}:\n"
                    + devstack.tail(child.log_file)
                )

    async def stop(self) -> None:
        if self.parts is not None:
            await asyncio.to_thread(self.parts.stop)
        if self.root is not None:
            if self.options.keep:
                self.say(f"kept the stack's files and logs in {self.root}")
            else:
                shutil.rmtree(self.root, ignore_errors=True)
