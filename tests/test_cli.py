"""The `booking` command's small subcommands, run as a user runs them (a real process)."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import jwt
import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.testing import WorkflowEnvironment

from booking.devstack.net import free_port
from booking.devstack.postgres import EmbeddedPostgres
from booking.devstack.stack import Stack
from booking.settings import DEV_JWT_SECRET, Settings
from cli.main import build_parser

ROOT = Path(__file__).resolve().parent.parent


def booking(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("BOOKING_", "DATABASE_URL"))}
    base.pop("TEMPORAL_ADDRESS", None)
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        env=base,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


async def booking_in_thread(
    *args: str, env: dict[str, str] | None = None, seconds: float = 60
) -> subprocess.CompletedProcess[str]:
    """``booking`` for async tests: the session's event loop keeps running meanwhile (the e2e
    stack's in-process worker lives on it and may hold a row lock the command waits for)."""
    return await asyncio.to_thread(booking, *args, env=env, timeout=seconds)


def test_every_contract_command_exists() -> None:
    parser = build_parser()
    for command in ("dev", "worker", "api", "migrate", "seed", "setup", "token", "bench"):
        assert parser.parse_args([command] if command != "token" else [command, "--user", "u"])


def test_dev_flags_have_the_contract_defaults() -> None:
    args = build_parser().parse_args(["dev"])
    assert (args.host, args.port, args.temporal_port, args.ui_port) == (
        "127.0.0.1",
        8000,
        7233,
        8233,
    )
    assert str(args.data_dir) == ".booking"
    assert args.hold_seconds is None  # BOOKING_HOLD_SECONDS, else Settings' 900


def test_token_refuses_without_a_secret() -> None:
    result = booking("token", "--user", "demo-tenant", "--groups", "Tenants")
    assert result.returncode == 2
    assert "BOOKING_JWT_SECRET is not set" in result.stderr
    assert "--dev" in result.stderr
    assert result.stdout == ""


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_token_with_dev_flag_signs_with_the_dev_secret() -> None:
    result = booking(
        "token", "--dev", "--user", "demo-tenant", "--groups", "Tenants", "--ttl", "60"
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == "demo-tenant"
    assert claims["cognito:groups"] == ["Tenants"]
    assert 55 <= claims["exp"] - claims["iat"] <= 60
    assert "email" not in claims  # an access token's shape unless asked
    assert result.stderr == ""  # the dev secret's key-length warning is not shown
    with_email = booking(
        "token", "--dev", "--user", "demo-tenant", "--groups", "Tenants", "--email", "t@x.org"
    )
    claims = jwt.decode(with_email.stdout.strip(), DEV_JWT_SECRET, algorithms=["HS256"])
    assert (claims["email"], claims["email_verified"]) == ("t@x.org", True)


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
def test_token_uses_the_configured_secret() -> None:
    secret = "a-long-enough-secret-for-hs256-signing-0123456789"
    result = booking(
        "token",
        "--user",
        "demo-admin",
        "--groups",
        "Admins,Tenants",
        env={"BOOKING_JWT_SECRET": secret},
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "demo-admin"
    assert claims["cognito:groups"] == ["Admins", "Tenants"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(result.stdout.strip(), DEV_JWT_SECRET, algorithms=["HS256"])


def test_token_carries_the_configured_issuer_and_audience() -> None:
    secret = "a-long-enough-secret-for-hs256-signing-0123456789"
    result = booking(
        "token",
        "--user",
        "demo-tenant",
        "--groups",
        "Tenants",
        env={
            "BOOKING_JWT_SECRET": secret,
            "BOOKING_JWT_ISSUER": "https://id.example.com",
            "BOOKING_JWT_AUDIENCE": "booking-api",
        },
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(
        result.stdout.strip(),
        secret,
        algorithms=["HS256"],
        issuer="https://id.example.com",
        audience="booking-api",
    )
    assert claims["sub"] == "demo-tenant"
    with pytest.raises(jwt.InvalidAudienceError):
        jwt.decode(result.stdout.strip(), secret, algorithms=["HS256"], audience="other-app")


def test_token_rejects_an_unknown_group() -> None:
    result = booking("token", "--dev", "--user", "u", "--groups", "Tenants,Landlords")
    assert result.returncode == 2
    assert "Landlords" in result.stderr


@pytest.mark.parametrize("command", ["api", "worker"])
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("BOOKING_API_KEYS", "prod-key,dev-api-key"),
        ("BOOKING_JWT_SECRET", "dev-jwt-secret"),
        ("BOOKING_WEBHOOK_SECRET", "dev-webhook-secret"),
    ],
)
def test_api_and_worker_refuse_dev_secrets_outside_dev_mode(
    command: str, variable: str, value: str
) -> None:
    result = booking(
        command,
        env={"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", variable: value},
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "refusing to start" in result.stderr
    assert variable in result.stderr


@pytest.mark.parametrize("command", ["api", "worker"])
def test_api_and_worker_name_an_unreachable_database_in_one_line(command: str) -> None:
    secret = "s3cret-password"
    result = booking(
        command,
        env={
            "DATABASE_URL": f"postgresql://app:{secret}@127.0.0.1:1/none",
            "BOOKING_API_KEYS": "a-production-key",
        },
        timeout=30,
    )
    assert result.returncode == 2, result.stderr
    assert "cannot reach DATABASE_URL postgresql://app:***@127.0.0.1:1/none" in result.stderr
    assert "Traceback" not in result.stderr
    assert secret not in result.stderr


@pytest.mark.parametrize("command", ["api", "worker"])
def test_api_and_worker_name_an_unreachable_temporal_in_one_line(
    command: str, migrated_database_url: str
) -> None:
    result = booking(
        command,
        env={
            "DATABASE_URL": migrated_database_url,
            "TEMPORAL_ADDRESS": "127.0.0.1:1",
            "BOOKING_API_KEYS": "a-production-key",
        },
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "cannot reach Temporal at 127.0.0.1:1" in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_and_seed_need_a_database_url() -> None:
    for command in ("migrate", "seed"):
        result = booking(command)
        assert result.returncode == 2
        assert "DATABASE_URL is not set" in result.stderr


async def _demo_rows(dsn: str) -> list[tuple[object, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT 'user', id, user_type, created_on::text FROM users
                WHERE id LIKE 'demo-%'
               UNION ALL
               SELECT 'building', id, name, created_on::text FROM buildings
                WHERE id = 'demo-building'
               UNION ALL
               SELECT 'apartment', id, monthly_rent::text || currency, created_on::text
                 FROM apartments WHERE building_id = 'demo-building'
               ORDER BY 1, 2"""
        )
        return [tuple(row) for row in rows]
    finally:
        await conn.close()


async def test_migrate_then_seed_twice_changes_nothing(migrated_database_url: str) -> None:
    env = {"DATABASE_URL": migrated_database_url}
    migrated = await booking_in_thread("migrate", env=env)
    assert migrated.returncode == 0, migrated.stderr
    assert "schema up to date" in migrated.stdout  # the fixture applied them already

    first = await booking_in_thread("seed", env=env)
    assert first.returncode == 0, first.stderr
    assert "demo data:" in first.stdout
    before = await _demo_rows(migrated_database_url)

    second = await booking_in_thread("seed", env=env)
    assert second.returncode == 0, second.stderr
    assert "demo data: 0 created" in second.stdout
    assert await _demo_rows(migrated_database_url) == before

    kinds = {(kind, ident) for kind, ident, *_ in before}
    assert ("apartment", "1234567") in kinds
    assert ("user", "demo-tenant") in kinds
    assert ("user", "demo-admin") in kinds
    assert ("user", "demo-caretaker") in kinds
    assert len([k for k in kinds if k[0] == "apartment"]) >= 3
    conn = await asyncpg.connect(migrated_database_url)
    try:
        apartment = await conn.fetchrow(
            "SELECT monthly_rent, currency, building_id FROM apartments WHERE id = '1234567'"
        )
        tenant = await conn.fetchval("SELECT user_type FROM users WHERE id = 'demo-tenant'")
    finally:
        await conn.close()
    assert apartment is not None
    assert apartment["monthly_rent"] == 125_000
    assert apartment["currency"] == "EUR"
    assert tenant == "TENANT"


def test_bench_runs_the_suite_or_says_it_is_missing() -> None:
    result = booking("bench", "--help", timeout=120)
    has_bench = (
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import importlib.util,sys; "
                "sys.exit(0 if importlib.util.find_spec('bench') else 1)",
            ],
            cwd=ROOT,
        ).returncode
        == 0
    )
    if has_bench:
        assert "not implemented yet" not in result.stderr
    else:
        assert result.returncode == 1
        assert "not implemented yet" in result.stderr


def test_a_usage_error_exits_2() -> None:
    result = booking("dev", "--port", "eighty")
    assert result.returncode == 2
    assert "--port" in result.stderr


async def test_setup_migrates_and_registers_search_attributes(
    migrated_database_url: str, env: WorkflowEnvironment
) -> None:
    address = env.client.service_client.config.target_host
    result = await booking_in_thread(
        "setup",
        env={"DATABASE_URL": migrated_database_url, "TEMPORAL_ADDRESS": address},
        seconds=120,
    )
    assert result.returncode == 0, result.stderr
    assert "migrations: schema up to date" in result.stdout
    assert "search attributes: " in result.stdout
    # Both halves are idempotent: a deployment runs setup on every `up`.
    again = await booking_in_thread(
        "setup",
        env={"DATABASE_URL": migrated_database_url, "TEMPORAL_ADDRESS": address},
        seconds=120,
    )
    assert again.returncode == 0, again.stderr
    assert "migrations: schema up to date" in again.stdout


async def test_setup_waits_for_a_temporal_server_that_comes_up_late(
    migrated_database_url: str, tmp_path: Path
) -> None:
    stack = Stack(tmp_path)
    port = free_port()
    command = asyncio.create_task(
        booking_in_thread(
            "setup",
            "--wait",
            "90",
            env={"DATABASE_URL": migrated_database_url, "TEMPORAL_ADDRESS": f"127.0.0.1:{port}"},
            seconds=120,
        )
    )
    try:
        await asyncio.sleep(4)  # setup is waiting: nothing listens yet
        assert not command.done()
        await stack.start_temporal(port=port)
        result = await command
    finally:
        stack.stop()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "waiting for namespace 'default'" in result.stdout
    # (Our dev server is started with the search attributes: present already.)
    assert "search attributes: present" in result.stdout


async def test_setup_waits_for_a_namespace_that_appears_late_and_changes_nothing_twice(
    migrated_database_url: str, tmp_path: Path
) -> None:
    stack = Stack(tmp_path)
    client = await stack.start_temporal()
    namespace = f"late-{uuid.uuid4().hex[:8]}"
    env = {
        "DATABASE_URL": migrated_database_url,
        "TEMPORAL_ADDRESS": stack.temporal_address,
        "TEMPORAL_NAMESPACE": namespace,
    }
    try:
        command = asyncio.create_task(booking_in_thread("setup", env=env, seconds=120))
        await asyncio.sleep(4)
        assert not command.done()  # the namespace does not exist yet
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace,
                workflow_execution_retention_period=Duration(seconds=7 * 86400),
            )
        )
        first = await command
        assert first.returncode == 0, first.stdout + first.stderr
        assert f"waiting for namespace {namespace!r}" in first.stdout
        assert "search attributes: " in first.stdout and "registered" in first.stdout
        # A second run (compose runs setup on every `up`): nothing left to do.
        second = await booking_in_thread("setup", env=env, seconds=120)
        assert second.returncode == 0, second.stdout + second.stderr
        assert "migrations: schema up to date" in second.stdout
        assert "search attributes: present" in second.stdout
        assert "waiting" not in second.stdout
    finally:
        stack.stop()


async def test_setup_gives_up_clearly_on_a_server_that_never_comes(
    migrated_database_url: str,
) -> None:
    result = await booking_in_thread(
        "setup",
        "--wait",
        "3",
        env={"DATABASE_URL": migrated_database_url, "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"},
        seconds=60,
    )
    assert result.returncode == 2
    assert "was not ready within 3 s" in result.stderr
    assert "Traceback" not in result.stderr


PASSWORDS = ["p@ss:w/rd#1?x%y", 'quote"back\\slash', "space and 'apostrophe'", "ünïcødé+=&;"]


@pytest.fixture(scope="module")
def password_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A Postgres that checks passwords on TCP (scram-sha-256), unlike the trusting test one."""
    server = EmbeddedPostgres(
        data_dir=tmp_path_factory.mktemp("pw") / "data",
        durable=False,
        superuser_password="super:user@pass/word",
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("password", PASSWORDS)
async def test_any_password_character_reaches_postgres(
    password_postgres: EmbeddedPostgres, password: str
) -> None:
    """The compose layout gives the services BOOKING_DB_* parts, never a URL with a raw
    password in it: every character must survive, through Settings and a real process,
    against a server that checks passwords."""
    name = f"pw_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(password_postgres.dsn)
    try:
        quoted = await admin.fetchval("SELECT quote_literal($1)", password)
        await admin.execute(f'CREATE ROLE "{name}" LOGIN PASSWORD {quoted}')
        await admin.execute(f'CREATE DATABASE "{name}" OWNER "{name}"')
        parts = {
            "BOOKING_DB_HOST": password_postgres.host,
            "BOOKING_DB_PORT": str(password_postgres.port),
            "BOOKING_DB_NAME": name,
            "BOOKING_DB_USER": name,
            "BOOKING_DB_PASSWORD": password,
        }
        url = Settings.model_validate(parts).require_database_url()
        conn = await asyncpg.connect(url)
        assert await conn.fetchval("SELECT current_user") == name
        await conn.close()
        # The check is real: a wrong password is refused.
        wrong = Settings.model_validate({**parts, "BOOKING_DB_PASSWORD": password + "x"})
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(wrong.require_database_url())
        # And as a deployment runs it: `booking migrate` in its own process, as that role.
        result = await booking_in_thread("migrate", env=parts)
        assert result.returncode == 0, result.stderr
        assert "applied 0001_initial" in result.stdout
        assert password not in result.stdout + result.stderr
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        await admin.execute(f'DROP ROLE IF EXISTS "{name}"')
        await admin.close()


def test_free_ports_stay_out_of_the_range_outgoing_connections_take() -> None:
    """A port handed to a server that starts later must not be one the kernel may give any
    client meanwhile as its source port (its ephemeral range); and never the same twice."""
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(not low <= port <= high for port in ports), (low, high, ports)
    for port in ports[:5]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))  # free indeed


def test_free_port_never_hands_out_a_port_kept_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """``booking dev --port N``: N is free until the API binds it, and the ports picked for the
    rest meanwhile (Postgres first) must not be N."""
    from booking.devstack import net

    given = free_port()
    net._handed_out.discard(given)
    # The one port to pick from is the given one: without keep_out it is handed out.
    monkeypatch.setattr(net, "_below_ephemeral", lambda: [given])
    net.keep_out(given)
    picked = free_port()
    assert picked != given
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", given))  # still free for the server it was given to


def test_the_api_collector_freezes_start_up_and_collects_young_objects_less_often() -> None:
    from cli.main import GC_THRESHOLDS, _tune_gc

    saved = gc.get_threshold()
    try:
        _tune_gc()
        assert gc.get_threshold() == GC_THRESHOLDS
        assert GC_THRESHOLDS[0] > saved[0]
        # Everything alive at start-up is out of every later collection's walk.
        assert gc.get_freeze_count() > 10_000
        assert gc.get_count()[0] < 100
    finally:
        gc.unfreeze()
        gc.set_threshold(*saved)
