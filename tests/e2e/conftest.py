"""The real system for end-to-end tests, once per session, built by ``booking.devstack.Stack``.

- Postgres: the session's embedded server (``migrated_database_url`` / ``pool``);
- Temporal: a dev server (real time, in memory; update-with-start and real-time holds do not
  suit the time-skipping server of tests/conftest.py), with the booking search attributes;
- the worker: a ``booking worker`` process;
- the API: two ``booking api`` processes (each with its own pool and LISTEN connection, to
  show that subscriptions see changes made through another process), at DEBUG, each logging
  to a file the tests may read; plus a small JWKS server in this process for RS256.

Tests talk to the API over real HTTP (httpx) and real WebSockets (websockets). Shared
helpers are in ``tests/e2e/helpers.py``.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from playwright.async_api import Browser, Page, async_playwright
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from booking.devstack.mailbox import LocalMailbox
from booking.devstack.stack import ApiProcess, Stack
from booking.seed import seed
from booking.settings import Settings
from tests.e2e.helpers import (
    API_KEY,
    CHROMIUM_ARGS,
    JWT_SECRET,
    RSA_KID,
    WEBHOOK_SECRET,
    Api,
    E2EStack,
    Gql,
    ServedApp,
)
from tests.system_packages import CHROMIUM, ensure


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
async def jwks_url(rsa_key: rsa.RSAPrivateKey) -> AsyncIterator[str]:
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update({"kid": RSA_KID, "alg": "RS256", "use": "sig"})

    async def jwks(_request: Request) -> JSONResponse:
        return JSONResponse({"keys": [jwk]})

    async with ServedApp(Starlette(routes=[Route("/.well-known/jwks.json", jwks)])) as served:
        yield f"{served.url}/.well-known/jwks.json"


@pytest.fixture(scope="session")
async def stack(
    pool: asyncpg.Pool,
    migrated_database_url: str,
    jwks_url: str,
    rsa_key: rsa.RSAPrivateKey,
) -> AsyncIterator[E2EStack]:
    await seed(pool)  # the demo apartment 1234567 and tenant, for addStepFunction
    root = Path(tempfile.mkdtemp(prefix="booking-e2e-"))
    parts = Stack(root)
    # The worker's mail goes to a real SMTP server keeping one file per message (the one
    # `booking dev` runs), read back by the mail tests.
    mailbox = LocalMailbox(root / "mailbox")
    mailbox.start()
    try:
        await parts.use_database(migrated_database_url)
        client = await parts.start_temporal(db_file=None)
        parts.task_queue = f"e2e-{uuid.uuid4().hex[:8]}"
        values = {
            "BOOKING_API_KEYS": API_KEY,
            "BOOKING_JWT_SECRET": JWT_SECRET,
            "BOOKING_JWKS_URL": jwks_url,
            "BOOKING_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "BOOKING_HOLD_SECONDS": "60",
            # The tests book fixed dates up to 2031.
            "BOOKING_MAX_ADVANCE_DAYS": "3650",
            "BOOKING_DB_POOL_MIN": "1",
            "BOOKING_DB_POOL_MAX": "10",
            "BOOKING_LOG_LEVEL": "DEBUG",
            "BOOKING_HTTP_HEADER_TIMEOUT_SECONDS": "2",
            # Keep-alives every 2 s, so that tests see several without waiting long.
            "BOOKING_WS_KEEPALIVE_SECONDS": "2",
            "BOOKING_SMTP_HOST": mailbox.host,
            "BOOKING_SMTP_PORT": str(mailbox.port),
            # A hold of a few seconds gets its "ends soon" mail (holds longer than twice it).
            "BOOKING_HOLD_REMINDER_SECONDS": "2",
        }
        env = parts.child_env(values)
        settings = Settings.model_validate(env)
        parts.spawn_worker(env, log_file=root / "worker.log")
        one = parts.spawn_api(env, name="api", log_file=root / "api.log")
        two = parts.spawn_api(env, name="api2", log_file=root / "api2.log")
        await parts.wait_ready(["worker", "api", "api2"])

        def api(process: ApiProcess) -> Api:
            ws_url = process.url.replace("http", "ws", 1) + "/graphql"
            return Api(process.url, ws_url, settings, process.child.log_file)

        yield E2EStack(
            api=api(one),
            api2=api(two),
            pool=pool,
            client=client,
            settings=settings,
            rsa_private_key=rsa_key,
            parts=parts,
            env=env,
            mailbox_dir=mailbox.directory,
        )
    finally:
        parts.stop()
        mailbox.stop()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium (installed on first use), headless, driven by Playwright."""
    executable = ensure(CHROMIUM)
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def admin(stack: E2EStack) -> AsyncIterator[Gql]:
    async with stack.api.client(stack.key) as http:
        yield Gql(http)


@pytest.fixture
def ids() -> Iterator[str]:
    yield uuid.uuid4().hex[:10]


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh browser page; JavaScript errors on it fail the test."""
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield opened
    finally:
        await context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
