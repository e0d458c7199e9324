"""The `booking` command: dev, worker, api, migrate, seed, setup, doctor, token, bench.

Configuration comes from the environment (``Settings``); flags win. Every
command ends through ``main``, which leaves with the command's own exit status
via ``os._exit`` once output is flushed: a process that used the Temporal
client can otherwise abort in the interpreter's teardown (exit 134) and turn a
success into a failure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from pydantic import ValidationError as SettingsError

from booking.errors import ConfigurationError
from booking.settings import DEV_JWT_SECRET, Settings

log = logging.getLogger("booking.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # bad flags, bad or refused configuration
# Descriptors the API holds besides its connections: the pool, Temporal, logs, the LISTEN one.
OWN_DESCRIPTORS = 256


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="booking",
        description="The durable apartment booking service (Temporal + Postgres + GraphQL).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser(
        "dev",
        help="run the whole system on this machine (Postgres, Temporal, worker, API)",
        description="Start embedded Postgres (unless DATABASE_URL), the Temporal dev server "
        "and its Web UI (unless TEMPORAL_ADDRESS), migrations, demo data, the worker and "
        "the API. Ctrl-C stops everything; state persists in --data-dir.",
    )
    dev.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    dev.add_argument("--port", type=int, default=8000, help="GraphQL API port (8000)")
    dev.add_argument("--temporal-port", type=int, default=7233, help="Temporal gRPC port (7233)")
    dev.add_argument("--ui-port", type=int, default=8233, help="Temporal Web UI port (8233)")
    dev.add_argument(
        "--metrics-port", type=int, default=9464, help="worker's Prometheus metrics port (9464)"
    )
    dev.add_argument(
        "--postgres-port", type=int, default=0, help="embedded Postgres port (default: any free)"
    )
    dev.add_argument(
        "--data-dir", type=Path, default=Path(".booking"), help="where state lives (.booking)"
    )
    dev.add_argument(
        "--hold-seconds",
        type=int,
        default=None,
        help="default hold length in seconds (BOOKING_HOLD_SECONDS, else 900)",
    )
    dev.add_argument(
        "--tls",
        action="store_true",
        help="serve HTTPS and WSS (what Amplify dials) with a certificate of a local CA made "
        "once under <data-dir>/tls/ (trust <data-dir>/tls/ca.pem)",
    )

    commands.add_parser("worker", help="run the Temporal worker (same as python worker.py)")

    api = commands.add_parser("api", help="run the GraphQL API server")
    api.add_argument("--host", default=None, help="listen address (BOOKING_API_HOST, 127.0.0.1)")
    api.add_argument("--port", type=int, default=None, help="listen port (BOOKING_API_PORT, 8000)")

    commands.add_parser("migrate", help="apply database migrations to DATABASE_URL")
    commands.add_parser("seed", help="load the demo data into DATABASE_URL (idempotent)")
    setup = commands.add_parser(
        "setup",
        help="migrate DATABASE_URL and register the search attributes on TEMPORAL_ADDRESS "
        "(what a deployment runs once before the worker and the API)",
    )
    setup.add_argument(
        "--wait",
        type=float,
        default=300.0,
        help="seconds to wait for Temporal and its namespace to be ready (300)",
    )

    doctor = commands.add_parser(
        "doctor", help="find (and with --repair, fix) drift between Postgres and the workflows"
    )
    doctor.add_argument("--repair", action="store_true", help="apply the automatic repairs")
    doctor.add_argument("--json", action="store_true", help="print the findings as JSON")

    token = commands.add_parser(
        "token",
        help="print a signed JWT for a user",
        description="Print an HS256 JWT signed with BOOKING_JWT_SECRET (or, with --dev, the "
        "documented dev secret that `booking dev` uses).",
    )
    token.add_argument("--user", required=True, help="the user id (the token's sub)")
    token.add_argument(
        "--groups", default="", help="comma-separated groups: Admins, Tenants, Caretakers"
    )
    token.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds (3600)")
    token.add_argument(
        "--email", help="the email claim (a tenant creates its own account with this email)"
    )
    token.add_argument(
        "--dev",
        action="store_true",
        help="sign with the dev secret when BOOKING_JWT_SECRET is unset",
    )

    bench = commands.add_parser("bench", help="run the benchmark suite", add_help=False)
    bench.add_argument("args", nargs=argparse.REMAINDER)
    return parser


def _settings(**overrides: object) -> Settings:
    try:
        settings = Settings()
    except SettingsError as exc:
        raise ConfigurationError(f"invalid configuration: {exc}") from exc
    updates = {key: value for key, value in overrides.items() if value is not None}
    return settings.model_copy(update=updates) if updates else settings


def _logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    # One line per HTTP request of our own readiness probes is noise.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def cmd_dev(args: argparse.Namespace) -> int:
    from cli.dev import DevOptions, DevStack

    settings = _settings()
    _logging(settings)
    # `booking dev` reports its steps itself; the children log for themselves.
    logging.getLogger("booking.db").setLevel(logging.WARNING)
    options = DevOptions(
        host=args.host,
        port=args.port,
        temporal_port=args.temporal_port,
        ui_port=args.ui_port,
        metrics_port=args.metrics_port,
        postgres_port=args.postgres_port,
        data_dir=args.data_dir,
        hold_seconds=args.hold_seconds,
        tls=args.tls,
    )
    return DevStack(options, settings).run()


def cmd_worker(args: argparse.Namespace) -> int:
    import worker

    # Exactly what `python worker.py` does.
    return worker.main(_settings())


async def _check_dependencies(settings: Settings) -> None:
    from booking.db import check_reachable
    from booking.temporal import connect

    await check_reachable(settings.require_database_url())
    await connect(settings.temporal_address, settings.temporal_namespace)


def cmd_api(args: argparse.Namespace) -> int:
    settings = _settings(api_host=args.host, api_port=args.port)
    settings.refuse_unsafe_secrets("API")
    _logging(settings)
    import uvicorn

    from api.app import create_app
    from api.server import uvicorn_options

    # Checked first so that a wrong address is one clear line and exit 2; uvicorn would
    # report the same as a traceback and exit 3.
    asyncio.run(_check_dependencies(settings))
    _open_files_for(settings.http_max_connections)
    app = create_app(settings)
    _tune_gc()
    uvicorn.run(app, **uvicorn_options(settings))
    return EXIT_OK


# Young objects collected after this many allocations instead of CPython's 700: a GraphQL
# request allocates thousands, so the default ran several young collections per request
# (issue 27, with booking.db's pool that skips the reset query: API CPU per request 3.48 ->
# 3.10 ms, four alternated runs each; the worker measured no gain, so it keeps CPython's defaults).
GC_THRESHOLDS = (50_000, 20, 20)


def _tune_gc() -> None:
    """The API's collector: freeze what start-up made (modules, the schema, settings: never
    garbage) so that no collection walks it again, and collect young objects less often.
    Memory barely moves: only cyclic garbage waits longer; the rest is freed as always."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


def _open_files_for(connections: int) -> None:
    """A descriptor per connection (BOOKING_HTTP_MAX_CONNECTIONS), plus the process's own."""
    from booking.rlimits import raise_open_file_limit

    limit = raise_open_file_limit(connections + OWN_DESCRIPTORS)
    if limit.raised:
        log.info("open-file limit raised from %d to %d", limit.before, limit.now)
    if limit.now < connections + OWN_DESCRIPTORS:
        log.warning(
            "open-file limit %d (hard %d) is below BOOKING_HTTP_MAX_CONNECTIONS=%d: connections "
            "beyond it will fail; raise the hard limit (ulimit -Hn, LimitNOFILE, compose ulimits)",
            limit.now,
            limit.hard,
            connections,
        )


def cmd_migrate(args: argparse.Namespace) -> int:
    from booking.db import migrate

    settings = _settings()
    applied = asyncio.run(migrate(settings.require_database_url()))
    if applied:
        for migration in applied:
            print(f"applied {migration.version:04d}_{migration.name}")
    else:
        print("schema up to date")
    return EXIT_OK


def cmd_setup(args: argparse.Namespace) -> int:
    from booking.db import migrate
    from booking.temporal import prepare_namespace

    settings = _settings()
    _logging(settings)

    async def setup() -> None:
        applied = await migrate(settings.require_database_url())
        print(f"migrations: {len(applied)} applied" if applied else "migrations: schema up to date")
        added = await prepare_namespace(
            settings.temporal_address,
            settings.temporal_namespace,
            within=args.wait,
            say=lambda line: print(f"booking setup: {line}", flush=True),
        )
        print(
            f"search attributes: {', '.join(added)} registered"
            if added
            else "search attributes: present"
        )

    asyncio.run(setup())
    return EXIT_OK


def cmd_seed(args: argparse.Namespace) -> int:
    import asyncpg

    from booking.seed import seed_database

    settings = _settings()
    try:
        report = asyncio.run(seed_database(settings.require_database_url()))
    except asyncpg.UndefinedTableError as exc:
        raise ConfigurationError(
            f"the schema is missing ({exc}); run `booking migrate` first"
        ) from exc
    for line in report.created:
        print(f"created {line}")
    print(f"demo data: {report.summary()}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from booking.doctor import doctor_command

    settings = _settings()
    return asyncio.run(doctor_command(settings, apply_repairs=args.repair, as_json=args.json))


def cmd_token(args: argparse.Namespace) -> int:
    from booking.tokens import mint_token

    settings = _settings()
    secret = settings.jwt_secret
    if not secret:
        if not args.dev:
            raise ConfigurationError(
                "BOOKING_JWT_SECRET is not set; set it to the API's secret, or pass --dev to "
                f"sign with the dev secret ({DEV_JWT_SECRET}) that `booking dev` uses"
            )
        secret = DEV_JWT_SECRET
    groups = [group.strip() for group in args.groups.split(",") if group.strip()]
    with warnings.catch_warnings():
        if secret == DEV_JWT_SECRET:
            # Short on purpose and public: the warning would only bury the token.
            warnings.simplefilter("ignore")
        try:
            token = mint_token(
                secret,
                args.user,
                groups,
                ttl_seconds=args.ttl,
                issuer=settings.jwt_issuer,
                audience=settings.jwt_audience,
                email=args.email,
            )
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
    print(token)
    return EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    return _bench(list(args.args))


def _bench(argv: list[str]) -> int:
    import bench

    return int(bench.main(argv) or 0)


COMMANDS = {
    "dev": cmd_dev,
    "worker": cmd_worker,
    "api": cmd_api,
    "migrate": cmd_migrate,
    "seed": cmd_seed,
    "setup": cmd_setup,
    "doctor": cmd_doctor,
    "token": cmd_token,
    "bench": cmd_bench,
}


def run(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit status (``main`` is the process entry point)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        # Everything after `bench` is the suite's own, --help included.
        return _bench(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigurationError as exc:
        print(f"booking {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except OSError as exc:
        print(f"booking {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> NoReturn:
    try:
        code = run(argv)
    except SystemExit as exc:  # argparse: --help, or a usage error
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    except Exception:  # a bug: show it, and still leave with a true status
        traceback.print_exc()
        code = EXIT_FAILED
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
