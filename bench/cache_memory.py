"""``python -m bench.cache_memory [--holds N] [--unsandboxed]``: worker memory per cached booking.

Why it matters: a hold's expiry is cheap when its workflow is still in the worker's cache
and costly when it was evicted (its history is fetched again and replayed), and the cache
is bounded by the worker's memory. This measures what one cached booking workflow costs.

It starts Postgres and a dev server (in memory) with ``booking.devstack.Stack``, runs the
booking worker in this process
with a cache larger than all of them, places ``--holds`` holds the way the API's reserve does
(start, then the ``wait_for_hold`` update) and prints the growth of the process's RSS per
cached workflow, then places as many again while tracing Python's allocations
(``tracemalloc``) and prints the part of it that is Python objects. The rest is
memory outside Python's heap: the SDK's Rust core keeps its own state for every cached run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import shutil
import sys
import tempfile
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import Client
from temporalio.worker import UnsandboxedWorkflowRunner

from bench import store
from bench.procs import rss_bytes
from bench.scenarios import start_hold
from booking.contract import BookingInput
from booking.db import create_pool, migrate
from booking.devstack.stack import Stack
from booking.settings import Settings
from booking.temporal import register_search_attributes
from workflows.booking import ApartmentBookingWorkflow

TASK_QUEUE = "bench-cache-memory"
# Placed before the baseline is taken, so that one-off costs (imports, pools, the first
# sandbox) are not counted per workflow.
WARMUP = 50
IN_FLIGHT = 8


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.cache_memory")
    p.add_argument("--holds", type=int, default=1000, help="cached workflows to measure (1000)")
    p.add_argument("--unsandboxed", action="store_true", help="run workflows without the sandbox")
    return p


def _own_rss() -> int:
    value = rss_bytes(os.getpid())
    if value is None:
        raise SystemExit("this process's RSS is not readable (/proc)")
    return value


def _holder(client: Client, tenant: str) -> Callable[[str], Awaitable[None]]:
    """Place one hold for ``tenant`` and wait until it is PENDING, IN_FLIGHT at a time."""
    start = date.today() + timedelta(days=30)
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def hold(apartment_id: str) -> None:
        data = BookingInput(
            booking_id=str(uuid.uuid4()),
            apartment_id=apartment_id,
            user_id=tenant,
            start_date=start,
            end_date=start + timedelta(days=365),
            hold_seconds=3600,
        )
        async with slots:
            handle = await start_hold(client, data, TASK_QUEUE)
            state = await handle.execute_update(ApartmentBookingWorkflow.wait_for_hold)
        if state.status != "PENDING":
            raise SystemExit(f"hold on {apartment_id} was not placed: {state}")

    return hold


async def measure(holds: int, *, unsandboxed: bool, root: Path) -> dict[str, Any]:
    import worker as booking_worker  # the production worker factory and tuning

    stack = Stack(root)
    try:
        dsn = await stack.start_postgres(durable=False)
        client = await stack.start_temporal(db_file=None)
        await migrate(dsn)
        await register_search_attributes(client, client.namespace)
        pool = await create_pool(dsn, min_size=2, max_size=IN_FLIGHT + 2)
        tenant, building = "bench-cache-tenant", "bench-cache-building"
        apartments = [f"bench-cache-{i}" for i in range(WARMUP + 2 * holds)]
        async with pool.acquire() as conn, conn.transaction():
            await store.insert_users(conn, [tenant])
            await store.insert_building(conn, building, tenant, len(apartments))
            await store.insert_apartments(conn, building, apartments, 100_000, "EUR")
        options: dict[str, Any] = {"max_cached_workflows": len(apartments) + 100}
        if unsandboxed:
            options["workflow_runner"] = UnsandboxedWorkflowRunner()
        worker = booking_worker.create_worker(
            # One probe tenant holds every apartment: no per-tenant hold limit.
            client,
            pool,
            Settings.model_validate({"BOOKING_MAX_HOLDS_PER_TENANT": 0}),
            task_queue=TASK_QUEUE,
            **options,
        )
        ids = iter(apartments)
        hold = _holder(client, tenant)
        async with worker:
            await asyncio.gather(*(hold(a) for a in itertools.islice(ids, WARMUP)))
            # Two batches: RSS is measured untraced (tracing fragments the heap and adds
            # its own bookkeeping), the Python share while tracing the second batch.
            gc.collect()
            rss_before = _own_rss()
            await asyncio.gather(*(hold(a) for a in itertools.islice(ids, holds)))
            gc.collect()
            rss_after = _own_rss()
            tracemalloc.start()
            await asyncio.gather(*(hold(a) for a in ids))
            gc.collect()
            python_bytes, _ = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        await pool.close()
    finally:
        await asyncio.to_thread(stack.stop)
    return {
        "holds": holds,
        "sandbox": not unsandboxed,
        "rss_bytes_per_cached_workflow": round((rss_after - rss_before) / holds),
        "python_heap_bytes_per_cached_workflow": round(python_bytes / holds),
    }


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.holds < 1:
        print("--holds must be at least 1", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="booking-cache-memory-"))
    try:
        result = asyncio.run(measure(args.holds, unsandboxed=args.unsandboxed, root=root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    per = result["rss_bytes_per_cached_workflow"] / 1024
    python = result["python_heap_bytes_per_cached_workflow"] / 1024
    print(json.dumps(result))
    print(
        f"{args.holds} cached booking workflows: {per:.0f} KB of worker RSS each, "
        f"{python:.0f} KB of it Python objects, {per - python:.0f} KB outside Python's heap",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
