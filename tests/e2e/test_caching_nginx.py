"""A real shared cache in front of the real API: Debian's nginx with proxy_cache.

Measures what reaches the database during a burst of availability reads with
and without the cache (the figures go to test-artifacts/cache-measurement.json
and the README), and checks that a hold placed behind the cache's back is
visible through it within max-age (+ one stale-while-revalidate refresh).

Needs Debian's nginx, which ``tests.system_packages`` installs on first use.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from api.app import create_app
from booking.devstack.net import free_port
from tests.e2e.helpers import E2EStack, ServedApp
from tests.helpers import make_rental, nginx_config
from tests.system_packages import NGINX, ensure

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MAX_AGE = 2
STALE_WHILE_REVALIDATE = 2
BURST = 400
CONCURRENCY = 16
TENANTS = 20

AVAILABILITY = """query Availability($buildingId: String!) {
  getAllApartmentsPerBuilding(buildingId: $buildingId) {
    id apartmentNumber apartmentStatus monthlyRent currency
  }
}"""

# Inside http { }: a cache keyed as docs/caching.md says, in front of the API.
NGINX_CONF = """
  log_format cache '$upstream_cache_status $status $request_uri';
  access_log {root}/access.log cache;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  proxy_cache_path {root}/cache levels=1:2 keys_zone=graphql:10m max_size=100m inactive=10m
                   use_temp_path=off;
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass {origin};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_cache graphql;
      proxy_cache_key "$request_method|$host|$request_uri|$http_x_api_key|$http_authorization";
      proxy_cache_lock on;
      proxy_cache_background_update on;
      proxy_cache_use_stale updating error timeout;
      proxy_cache_revalidate on;
      add_header X-Cache-Status $upstream_cache_status always;
    }}
  }}
"""


@dataclass
class Measured:
    url: str
    queries: list[str]  # every SQL statement the API sent to Postgres
    settings_max_age: int


@pytest.fixture(scope="module")
async def origin(stack: E2EStack) -> AsyncIterator[Measured]:
    """One more API instance whose pool logs every statement it runs."""
    queries: list[str] = []

    async def log_queries(conn: asyncpg.Connection) -> None:
        conn.add_query_logger(lambda record: queries.append(record.query))

    dsn = stack.settings.require_database_url()
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=10, init=log_queries)
    assert pool is not None
    settings = stack.settings.model_copy(
        update={
            "cache_max_age": MAX_AGE,
            "cache_stale_while_revalidate": STALE_WHILE_REVALIDATE,
        }
    )
    try:
        async with ServedApp(create_app(settings, pool=pool, client=stack.client)) as served:
            yield Measured(f"http://127.0.0.1:{served.port}", queries, MAX_AGE)
    finally:
        await pool.close()


@pytest.fixture(scope="module")
async def nginx(origin: Measured, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    root = tmp_path_factory.mktemp("nginx")
    (root / "cache").mkdir()
    root.chmod(0o777)
    port = free_port()
    conf = root / "nginx.conf"
    cache = NGINX_CONF.format(root=root, port=port, origin=origin.url)
    conf.write_text(nginx_config(root, cache))
    process = await asyncio.create_subprocess_exec(
        ensure(NGINX),
        "-p",
        str(root),
        "-c",
        str(conf),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(100):
                if process.returncode is not None:
                    error = (await process.stderr.read()).decode() if process.stderr else ""
                    raise RuntimeError(f"nginx exited: {error}")
                try:
                    await http.get(f"{url}/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        yield url
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGQUIT)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


def apq_params(building_id: str) -> dict[str, str]:
    sha = hashlib.sha256(AVAILABILITY.encode()).hexdigest()
    return {
        "operationName": "Availability",
        "variables": json.dumps({"buildingId": building_id}, separators=(",", ":")),
        "extensions": json.dumps({"persistedQuery": {"version": 1, "sha256Hash": sha}}),
    }


async def burst(base_url: str, building_id: str, credentials: list[dict[str, str]]) -> float:
    """BURST availability reads, CONCURRENCY at a time, spread over the credentials."""
    params = apq_params(building_id)
    counter = iter(range(BURST))
    started = time.monotonic()

    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        # Register the query once (a real client does this on its first miss).
        for headers in credentials[:1]:
            await http.get("/graphql", params={**params, "query": AVAILABILITY}, headers=headers)

        async def one_client() -> None:
            for i in counter:
                headers = credentials[i % len(credentials)]
                response = await http.get("/graphql", params=params, headers=headers)
                assert response.status_code == 200
                assert response.json()["data"]["getAllApartmentsPerBuilding"]

        await asyncio.gather(*(one_client() for _ in range(CONCURRENCY)))
    return time.monotonic() - started


async def test_cache_in_front_shields_the_database(
    stack: E2EStack, origin: Measured, nginx: str
) -> None:
    rental = await make_rental(stack.pool)
    one_key = [stack.key]
    tenants = [stack.bearer(f"tenant-{i}", "Tenants") for i in range(TENANTS)]
    results: dict[str, Any] = {
        "burst": BURST,
        "concurrency": CONCURRENCY,
        "max_age": MAX_AGE,
        "stale_while_revalidate": STALE_WHILE_REVALIDATE,
    }
    for name, base, credentials in (
        ("direct_one_credential", origin.url, one_key),
        ("nginx_one_credential", nginx, one_key),
        ("direct_20_tenants", origin.url, tenants),
        ("nginx_20_tenants", nginx, tenants),
    ):
        before = len(origin.queries)
        seconds = await burst(base, rental.building_id, credentials)
        results[name] = {
            "db_statements": len(origin.queries) - before,
            "seconds": round(seconds, 2),
        }
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "cache-measurement.json").write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))

    direct = results["direct_one_credential"]["db_statements"]
    cached = results["nginx_one_credential"]["db_statements"]
    direct_many = results["direct_20_tenants"]["db_statements"]
    cached_many = results["nginx_20_tenants"]["db_statements"]
    assert direct >= BURST, results  # every read reached Postgres
    assert direct_many >= BURST, results
    # With the cache: the first miss, then about one refresh per max-age per key,
    # however long a loaded machine takes for the burst.
    assert cached > 0, results
    assert cached * 10 <= direct, results
    # The key holds the credential, so 20 tenants cost at least 20 misses.
    assert cached_many >= TENANTS, results
    assert cached_many * 3 <= direct_many, results


async def test_a_hold_is_visible_through_the_cache_within_max_age(
    stack: E2EStack, origin: Measured, nginx: str
) -> None:
    rental = await make_rental(stack.pool)
    headers = stack.bearer(rental.user_id, "Tenants")
    params = {"query": AVAILABILITY, "variables": json.dumps({"buildingId": rental.building_id})}

    def status(response: httpx.Response) -> str:
        found: str = response.json()["data"]["getAllApartmentsPerBuilding"][0]["apartmentStatus"]
        return found

    async with httpx.AsyncClient(base_url=nginx, headers=headers, timeout=30) as http:
        warm = await http.get("/graphql", params=params)
        assert status(warm) == "VACANT"
        hit = await http.get("/graphql", params=params)
        assert hit.headers["x-cache-status"] == "HIT"  # the cache really is in the way

        start = date.today()  # from tonight: today's status shows it
        reserved = await http.post(
            "/graphql",
            json={
                "query": "mutation R($input: ReserveApartmentInput!) "
                "{ reserveApartment(input: $input) { bookingStatus } }",
                "variables": {
                    "input": {
                        "apartmentId": rental.apartment_id,
                        "userId": rental.user_id,
                        "startDate": start.isoformat(),
                        "endDate": (start + timedelta(days=30)).isoformat(),
                    }
                },
            },
        )
        assert reserved.json()["data"]["reserveApartment"]["bookingStatus"] == "PENDING"
        assert reserved.headers.get("x-cache-status") is None  # POST never looked up
        held_at = time.monotonic()
        # max-age, then one stale answer while nginx refreshes in the background,
        # plus slack for a loaded machine; a cache that ignored max-age would keep
        # answering VACANT for its whole `inactive` time (10 minutes).
        deadline = MAX_AGE + 3.0
        seen = "VACANT"
        while seen != "RESERVED":
            assert time.monotonic() - held_at <= deadline, "hold not visible in time"
            await asyncio.sleep(0.1)
            seen = status(await http.get("/graphql", params=params))
        assert time.monotonic() - held_at <= deadline
