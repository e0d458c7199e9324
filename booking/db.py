"""Connection pools and schema migrations.

Migrations are the numbered ``booking/migrations/NNNN_name.sql`` files, each
applied once, in order, in its own transaction, under an advisory lock so that
several processes starting together (``booking dev``, test workers, compose
replicas) never race.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from booking.errors import ConfigurationError

log = logging.getLogger(__name__)

# An arbitrary constant that names "the migration lock" for pg_advisory_lock.
_MIGRATION_LOCK_ID = 7_311_002_001


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    found = []
    for entry in resources.files("booking.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        number, _, rest = entry.name.partition("_")
        found.append(Migration(int(number), rest.removesuffix(".sql"), entry.read_text()))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


async def migrate(dsn: str) -> list[Migration]:
    """Apply every migration not yet applied; return the ones applied now."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK_ID)
        try:
            await conn.execute(
                """CREATE TABLE IF NOT EXISTS schema_migrations (
                       version integer PRIMARY KEY,
                       name text NOT NULL,
                       applied_at timestamptz NOT NULL DEFAULT now())"""
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            applied = []
            for migration in load_migrations():
                if migration.version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(migration.sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                        migration.version,
                        migration.name,
                    )
                log.info("applied migration %04d_%s", migration.version, migration.name)
                applied.append(migration)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK_ID)
    finally:
        await conn.close()


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """A pooled connection's reset beyond asyncpg's own rollback of an open transaction: none.

    asyncpg's default runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` on
    every release, a round trip per read the API makes (issue 27: with the API's collector
    tuned, API CPU per request 3.48 -> 3.10 ms). Our pooled connections keep no session
    state for it to undo: settings are transaction-local (``set_config(..., true)``),
    cursors live in transactions, the migration's advisory lock and every LISTEN are on
    connections of their own (``tests/test_sql_safety.py`` keeps it so).
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, reset=_keep_session)
    assert pool is not None  # asyncpg's stub allows None only for an un-awaited pool
    return pool


def redact(dsn: str) -> str:
    """The DSN without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", dsn)


async def check_reachable(dsn: str, *, wait_seconds: float = 5.0) -> None:
    """Connect once, or raise ConfigurationError naming the (redacted) DSN and the cause."""
    try:
        conn = await asyncpg.connect(dsn, timeout=wait_seconds)
    except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise ConfigurationError(
            f"cannot reach DATABASE_URL {redact(dsn)}: {exc or type(exc).__name__}"
        ) from exc
    await conn.close()
