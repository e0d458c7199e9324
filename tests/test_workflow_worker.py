"""``python worker.py`` as a real process: serves bookings, exports metrics, drains on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import asyncpg
import httpx
from temporalio.testing import WorkflowEnvironment

from tests.helpers import booking_client, booking_input, eventually, make_rental, start_and_hold

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_worker_process_serves_exports_metrics_and_drains(
    env: WorkflowEnvironment, pool: asyncpg.Pool, migrated_database_url: str, task_queue: str
) -> None:
    metrics = f"127.0.0.1:{_free_port()}"
    environ = {
        **os.environ,
        "DATABASE_URL": migrated_database_url,
        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": env.client.namespace,
        "BOOKING_TASK_QUEUE": task_queue,
        "BOOKING_WORKER_METRICS_ADDRESS": metrics,
        "BOOKING_DB_POOL_MIN": "1",
        "BOOKING_DB_POOL_MAX": "4",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "worker.py"),
        cwd=ROOT,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        client = booking_client(env)
        rental = await make_rental(pool)
        handle, held = await asyncio.wait_for(
            start_and_hold(client, await booking_input(env, rental), task_queue), timeout=30
        )
        assert held.status == "PENDING"

        async with httpx.AsyncClient() as http:

            async def scrape() -> str:
                return (await http.get(f"http://{metrics}/metrics")).text

            body = await eventually(
                scrape,
                lambda text: "activity_execution_latency" in text,
                within=5,
                what="the worker's activity metrics",
            )
        assert task_queue in body
        await handle.terminate("test done")

        process.send_signal(signal.SIGTERM)
        status = await asyncio.wait_for(process.wait(), timeout=30)
        assert process.stdout is not None
        output = (await process.stdout.read()).decode()
        assert status == 0, output
        assert "worker stopped" in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_worker_without_database_url_exits_with_a_message(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "worker.py"),
        cwd=tmp_path,
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 2
    assert b"DATABASE_URL is not set" in stderr
