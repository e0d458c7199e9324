"""The one way to bring the booking system up on this machine, part by part.

``booking dev``, the benchmark, the fault tests, the end-to-end tests and the cache-memory
probe all build their system with a :class:`Stack`:

- :meth:`Stack.start_postgres` (an embedded server) or :meth:`Stack.use_database`;
- :meth:`Stack.start_temporal` (the dev server, with the flags every stack of ours uses) or
  :meth:`Stack.use_temporal`; both return a connected client (:meth:`Stack.connect_temporal`
  is the one connect loop);
- :meth:`Stack.child_env`, the environment of every child process;
- :meth:`Stack.spawn_worker` / :meth:`Stack.spawn_api` (``python -m cli worker|api``) or
  :meth:`Stack.spawn` for anything else, optionally restarted when they die
  (:class:`~booking.devstack.supervisor.RestartPolicy`);
- :meth:`Stack.wait_ready` (a worker is ready when its own poller is on the task queue, an
  API when ``/readyz`` answers 200), :meth:`Stack.kill` and :meth:`Stack.restart` of a part;
- :meth:`Stack.stop`, which leaves no process behind.

It imports nothing above the ground floor: the worker and the API are child processes,
started by command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from booking.converter import DATA_CONVERTER
from booking.db import check_reachable
from booking.devstack.binaries import find_binary
from booking.devstack.net import connect_host, free_port, http_answers, tcp_open
from booking.devstack.postgres import EmbeddedPostgres
from booking.devstack.supervisor import Child, RestartPolicy, Supervisor
from booking.devstack.temporal_server import TemporalDevServer
from booking.errors import ConfigurationError
from booking.temporal import CLIENT_CONFIGURATION, connect, register_search_attributes

# The command line of the project's own processes, whatever the current directory.
BOOKING = (sys.executable, "-m", "cli")
# Configuration a child must never inherit by accident from the shell that started us.
_OWN_VARIABLES = ("DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE")


class StackError(Exception):
    """A part of the stack could not be started or stopped working; the message says which."""


@dataclass
class ApiProcess:
    """Where an API child listens."""

    child: Child
    host: str
    port: int
    scheme: str = "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{connect_host(self.host)}:{self.port}"


@dataclass
class Stack:
    """A system under construction: what was started, and how to reach it."""

    root: Path
    host: str = "127.0.0.1"
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    report: Callable[[str], None] | None = None
    supervisor: Supervisor = field(init=False)
    postgres: EmbeddedPostgres | None = field(default=None, init=False)
    dsn: str = field(default="", init=False)
    temporal_server: TemporalDevServer | None = field(default=None, init=False)
    # A server someone else runs (use_temporal): children connect as configured, TLS too.
    external_temporal: bool = field(default=False, init=False)
    client: Client | None = field(default=None, init=False)
    namespace: str = field(default="default", init=False)
    task_queue: str = field(default="apartment-booking", init=False)
    apis: dict[str, ApiProcess] = field(default_factory=dict, init=False)
    # Verifies an API that serves TLS (its CA), for readiness checks.
    tls_verify: ssl.SSLContext | bool = field(default=True, init=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(out=self.out, report=self.report)

    # -- Postgres ---------------------------------------------------------------------------

    async def start_postgres(
        self,
        *,
        data_dir: Path | None = None,
        port: int = 0,
        durable: bool = True,
        die_with_parent: bool = False,
    ) -> str:
        """Start an embedded Postgres (``data_dir`` defaults to ``<root>/postgres``)."""
        server = EmbeddedPostgres(
            data_dir=data_dir or self.root / "postgres",
            port=port,
            host=self.host if self.host not in ("", "0.0.0.0") else "127.0.0.1",
            durable=durable,
            die_with_parent=die_with_parent,
        )
        self.postgres = server
        await asyncio.to_thread(server.start)
        self.dsn = server.dsn
        return self.dsn

    async def use_database(self, dsn: str) -> str:
        """Use a Postgres someone else runs (ConfigurationError when it does not answer)."""
        await check_reachable(dsn)
        self.dsn = dsn
        return dsn

    def stop_postgres(self) -> None:
        if self.postgres is not None:
            self.postgres.stop()

    def restart_postgres(self, within: float = 20) -> None:
        """Start the embedded Postgres again on its data directory and port."""
        assert self.postgres is not None
        deadline = time.monotonic() + within
        while tcp_open(self.postgres.host, self.postgres.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.postgres.start()

    # -- Temporal ---------------------------------------------------------------------------

    async def start_temporal(
        self,
        *,
        port: int = 0,
        ui_port: int = 0,
        metrics_port: int = 0,
        db_file: Path | None = None,
        namespace: str = "default",
        extra_args: Sequence[str] = (),
        log_file: Path | None = None,
        restart: RestartPolicy | None = None,
        within: float = 30,
    ) -> Client:
        """Start the Temporal dev server (state in ``db_file``; None: in memory) and connect."""
        host = connect_host(self.host)
        server = TemporalDevServer(
            binary=find_binary("temporal"),
            host=self.host,
            port=port or free_port(host),
            ui_port=ui_port or free_port(host),
            metrics_port=metrics_port or free_port(host),
            db_file=db_file,
            namespace=namespace,
        )
        self.temporal_server = server
        self.supervisor.spawn(
            "temporal",
            [*server.args(), *extra_args],
            log_file=log_file or self.root / "temporal.log",
            restart=restart,
        )
        # The UI comes up a moment after the frontend; both are part of "started".
        deadline = time.monotonic() + within
        while not (tcp_open(self.host, server.port) and http_answers(server.ui_url)):
            self._check_alive("temporal")
            if time.monotonic() > deadline:
                raise StackError(f"the Temporal dev server did not answer in {within:.0f} s")
            await asyncio.sleep(0.1)
        return await self.connect_temporal(server.address, namespace, within=within)

    async def use_temporal(
        self, address: str, namespace: str, *, within: float = 10, override: bool = False
    ) -> Client:
        """Use a Temporal server someone else runs, connected as every client of the project
        connects (``booking.temporal.connect``: the ``TEMPORAL_*`` client configuration, TLS
        and API keys included); register our search attributes on it."""
        self.external_temporal = True
        client = await connect(
            address,
            namespace,
            data_converter=DATA_CONVERTER,
            wait_seconds=within,
            override=override,  # an explicit flag (the bench's) wins over the environment
        )
        self.client, self.namespace = client, namespace
        await register_search_attributes(client, namespace)
        return client

    async def connect_temporal(self, address: str, namespace: str, *, within: float) -> Client:
        """Connect to our own dev server (plaintext, whatever the environment's client
        configuration says), retrying while it starts; fail at once if it died."""
        deadline = time.monotonic() + within
        while True:
            try:
                client = await Client.connect(
                    address, namespace=namespace, data_converter=DATA_CONVERTER
                )
                await client.service_client.check_health()
            except RuntimeError as exc:
                self._check_alive("temporal")
                if time.monotonic() > deadline:
                    raise ConfigurationError(f"cannot reach Temporal at {address}: {exc}") from exc
                await asyncio.sleep(0.2)
                continue
            self.client, self.namespace = client, namespace
            return client

    @property
    def temporal(self) -> Client:
        if self.client is None:
            raise StackError("Temporal is not started")
        return self.client

    @property
    def temporal_address(self) -> str:
        return self.temporal.service_client.config.target_host

    # -- processes --------------------------------------------------------------------------

    def child_env(
        self, values: Mapping[str, str] | None = None, *, inherit_booking: bool = False
    ) -> dict[str, str]:
        """The environment of a child: ours, pointed at this stack's database and Temporal.

        ``BOOKING_*`` variables of our own environment are dropped unless
        ``inherit_booking`` (``booking dev`` passes the user's configuration on); ``values``
        win over everything.
        """
        env = {
            k: v
            for k, v in os.environ.items()
            if inherit_booking or not (k.startswith("BOOKING_") or k in _OWN_VARIABLES)
        }
        if not self.external_temporal:
            # Our own dev server: plaintext, whatever profile or TLS the caller has.
            for name in CLIENT_CONFIGURATION:
                env.pop(name, None)
            env["TEMPORAL_TLS"] = "false"
        env.update(
            {
                "DATABASE_URL": self.dsn,
                "TEMPORAL_ADDRESS": self.temporal_address,
                "TEMPORAL_NAMESPACE": self.namespace,
                "BOOKING_TASK_QUEUE": self.task_queue,
                # Children's logs reach their reader line by line, not in 8 KiB lumps.
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(values or {})
        return env

    def spawn(
        self,
        name: str,
        args: Sequence[str],
        *,
        env: Mapping[str, str],
        log_file: Path | None = None,
        restart: RestartPolicy | None = None,
        stop_timeout: float = 20.0,
    ) -> Child:
        return self.supervisor.spawn(
            name, args, env=env, log_file=log_file, restart=restart, stop_timeout=stop_timeout
        )

    def spawn_worker(
        self,
        env: Mapping[str, str],
        *,
        name: str = "worker",
        command: Sequence[str] = (),
        log_file: Path | None = None,
        restart: RestartPolicy | None = None,
    ) -> Child:
        """``booking worker`` (or ``command``); it drains activities for up to 20 s on SIGTERM."""
        return self.spawn(
            name,
            list(command) or [*BOOKING, "worker"],
            env=env,
            log_file=log_file,
            restart=restart,
            stop_timeout=30.0,
        )

    def spawn_api(
        self,
        env: Mapping[str, str],
        *,
        name: str = "api",
        port: int = 0,
        log_file: Path | None = None,
        restart: RestartPolicy | None = None,
        scheme: str = "http",
    ) -> ApiProcess:
        """``booking api`` on ``port`` (0: a free one)."""
        port = port or free_port(connect_host(self.host))
        child = self.spawn(
            name,
            [*BOOKING, "api", "--host", self.host, "--port", str(port)],
            env=env,
            log_file=log_file,
            restart=restart,
        )
        api = ApiProcess(child, self.host, port, scheme)
        self.apis[name] = api
        return api

    def child(self, name: str) -> Child:
        return self.supervisor.child(name)

    def _check_alive(self, name: str) -> None:
        """Raise when ``name`` died while we wait for it to start (a restart policy keeps a
        running system up; it does not hide a part that cannot start at all)."""
        with contextlib.suppress(KeyError):
            child = self.child(name)
            if not child.alive() and not child.stopping:
                raise StackError(
                    f"the {name} process exited with status {child.returncode}"
                    + (f"; see {child.log_file}:\n{tail(child.log_file)}" if child.log_file else "")
                )

    async def _worker_polls(self, child: Child) -> bool:
        """Whether this very process (not an earlier one) polls the task queue."""
        queue = (child.env or {}).get("BOOKING_TASK_QUEUE", self.task_queue)
        described = await self.temporal.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=self.namespace,
                task_queue=TaskQueue(name=queue),
                task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
            )
        )
        # The SDK's default identity is "<pid>@<host>".
        return any(p.identity.startswith(f"{child.pid}@") for p in described.pollers)

    async def _api_ready(self, http: httpx.AsyncClient, api: ApiProcess) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return (await http.get(f"{api.url}/readyz")).status_code == 200
        return False

    async def wait_ready(
        self,
        names: Iterable[str],
        *,
        within: float = 60,
        on_ready: Callable[[str], None] | None = None,
    ) -> None:
        """Wait until every named worker polls and every named API answers ``/readyz``."""
        waiting = list(names)
        deadline = time.monotonic() + within
        async with httpx.AsyncClient(timeout=2, verify=self.tls_verify) as http:
            while waiting:
                for name in list(waiting):
                    self._check_alive(name)
                    api = self.apis.get(name)
                    if api is not None:
                        ready = await self._api_ready(http, api)
                    else:
                        ready = await self._worker_polls(self.child(name))
                    if ready:
                        waiting.remove(name)
                        if on_ready is not None:
                            on_ready(name)
                if waiting and time.monotonic() > deadline:
                    logs = "".join(
                        f"\n--- {n}:\n{tail(self.child(n).log_file)}"
                        for n in waiting
                        if self.child(n).log_file is not None
                    )
                    raise StackError(f"not ready after {within:.0f} s: {', '.join(waiting)}{logs}")
                if waiting:
                    await asyncio.sleep(0.1)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """A fault: ``sig`` (SIGKILL by default) to one part; nothing restarts it."""
        self.supervisor.kill(name, sig)

    def stop_part(self, name: str) -> None:
        """Stop one part gracefully; nothing restarts it."""
        self.supervisor.stop(name)

    async def restart(self, name: str, *, wait: bool = True, within: float = 60) -> Child:
        """Start a stopped or killed part again; wait until it is ready (workers and APIs)."""
        child = self.supervisor.start_again(name)
        if name == "temporal":
            assert self.temporal_server is not None
            self.client = await self.connect_temporal(
                self.temporal_server.address, self.namespace, within=within
            )
        elif wait:
            await self.wait_ready([name], within=within)
        return child

    async def supervise(self) -> Child:
        """Keep the parts running (restarting those with a policy); return one that died."""
        return await self.supervisor.watch()

    def pids(self) -> dict[str, int]:
        found = {child.name: child.pid for child in self.supervisor.children if child.alive()}
        if self.postgres is not None and self.postgres.process is not None:
            found["postgres"] = self.postgres.process.pid
        return found

    def stop(self, report: Callable[[str], None] | None = None) -> None:
        """Stop everything this stack started, children in reverse order, Postgres last."""
        self.supervisor.stop_all(report=report)
        if self.postgres is not None:
            if report is not None and self.postgres.process is not None:
                report(f"stopping Postgres (pid {self.postgres.process.pid})")
            self.postgres.stop()


def tail(path: Path | None, lines: int = 20) -> str:
    if path is None:
        return ""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
