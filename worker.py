"""The Temporal worker: every workflow and activity of the booking service.

``python worker.py`` and ``booking worker`` run :func:`main`, the same way: the same
settings, the same refusal of unsafe secrets outside ``booking dev``, the same exit status.
SIGINT or SIGTERM stops polling and lets running activities finish (up to
:data:`GRACEFUL_SHUTDOWN`) before the process ends.
With ``BOOKING_WORKER_METRICS_ADDRESS`` set, the SDK's metrics are served for Prometheus at
``http://<address>/metrics``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta
from typing import Any

import asyncpg
import pydantic
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import BookingActivities, BookingPolicy
from activities.mail import MailActivities
from booking import tracing
from booking.converter import DATA_CONVERTER
from booking.db import check_reachable, create_pool
from booking.errors import ConfigurationError
from booking.mailer import smtp_config
from booking.settings import Settings
from booking.temporal import connect
from workflows.booking import ApartmentBookingWorkflow
from workflows.waitlist import WaitlistEntryWorkflow

log = logging.getLogger("booking.worker")

# Activities are single short transactions; this is ample for them to finish on SIGTERM.
GRACEFUL_SHUTDOWN = timedelta(seconds=20)
# How long a task for a workflow cached by a worker waits for that worker before any worker
# may take it. The SDK's 10 s default is what a payment waited after a worker crash
# (RELIABILITY.md); a booking history is small, so rebuilding it elsewhere sooner is cheap.
STICKY_TIMEOUT = timedelta(seconds=2)


def workflow_runner(*, sandbox: bool) -> WorkflowRunner:
    """How workflow code runs: in Temporal's sandbox, or as plain Python.

    The sandbox checks every call a workflow makes at run time (``datetime.now``, I/O,
    threads, ...) and refuses the non-deterministic ones. The tests run with it (every
    in-process worker, and the replayer of the committed histories), so code that breaks the
    rules fails there; the production worker (``booking worker``) runs the same code without
    it unless ``BOOKING_WORKFLOW_SANDBOX`` is set. Measured (BENCHMARKS.md, issue 27): worker
    CPU per booking 19.5-24.7 ms sandboxed, 15.1-16.1 ms without, alternated runs.

    In the sandbox every module is passed through (imported once, not per workflow
    instance): ours keep no mutable module state, and the checks on calls stay on. Measured:
    with 1,056 open holds worker RSS 372 -> 205 MB and expiry lag p99 1.95 -> 0.66 s.
    """
    if sandbox:
        return SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_all_modules()
        )
    return UnsandboxedWorkflowRunner()


def tuning(*, sandbox: bool = False) -> dict[str, Any]:
    """Worker options measured to matter on this service (BENCHMARKS.md has the runs).

    Also given to the benchmark's floor worker, so that the floor is not slower for want of
    the same tuning.
    """
    return {
        "sticky_queue_schedule_to_start_timeout": STICKY_TIMEOUT,
        "workflow_runner": workflow_runner(sandbox=sandbox),
        # More pollers than the SDK's default keep both cores busy under bursts of bookings
        # (throughput vs the engine floor 0.55x -> 0.68x at 32 clients, same run).
        "max_concurrent_workflow_task_polls": 20,
        "max_concurrent_activity_task_polls": 10,
    }


def create_worker(
    client: Client,
    pool: asyncpg.Pool,
    settings: Settings,
    *,
    task_queue: str | None = None,
    sandbox: bool = True,
    **options: Any,
) -> Worker:
    """A worker for every booking-service workflow and activity, on the configured queue.

    ``sandbox``: workflow code in Temporal's sandbox (:func:`workflow_runner`); on by default
    here, for the tests and any worker embedded elsewhere; ``booking worker`` decides by
    ``BOOKING_WORKFLOW_SANDBOX``. ``options`` go to :class:`temporalio.worker.Worker` as they
    are, over :func:`tuning` (tests use them, for example ``max_cached_workflows=0``).
    """
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[ApartmentBookingWorkflow, WaitlistEntryWorkflow],
        activities=[
            *BookingActivities(pool, policy=policy_from(settings)).all(),
            *MailActivities(pool, smtp_config(settings)).all(),
        ],
        **{"graceful_shutdown_timeout": GRACEFUL_SHUTDOWN, **tuning(sandbox=sandbox), **options},
    )


def policy_from(settings: Settings) -> BookingPolicy:
    """The rules the activities apply, from this worker's settings."""
    return BookingPolicy(
        max_holds_per_tenant=settings.max_holds_per_tenant or None,
        waitlist_offer_seconds=settings.waitlist_offer_seconds,
        rent_rules=settings.rent_rules(),
        hold_reminder_seconds=settings.hold_reminder_seconds,
        mail=bool(settings.smtp_host),
    )


def runtime_for(settings: Settings) -> Runtime | None:
    """A runtime serving the SDK's metrics on ``BOOKING_WORKER_METRICS_ADDRESS``, if set."""
    if not settings.worker_metrics_address:
        return None
    return Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=settings.worker_metrics_address)
        )
    )


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Connect, serve until SIGINT/SIGTERM (or ``stop`` is set), then drain and return."""
    settings.refuse_unsafe_secrets("worker")
    dsn = settings.require_database_url()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    # Checked first so that a wrong address is one clear line and exit 2, not a traceback.
    await check_reachable(dsn)
    traces = tracing.configure("booking-worker")
    client = await connect(
        settings.temporal_address,
        settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
        runtime=runtime_for(settings),
        # The worker takes its client's interceptors for workflows and activities too.
        interceptors=traces.interceptors() if traces else [],
    )
    pool = await create_pool(dsn, min_size=settings.db_pool_min, max_size=settings.db_pool_max)
    try:
        worker = create_worker(client, pool, settings, sandbox=settings.workflow_sandbox)
        async with worker:
            log.info(
                "worker polling task queue %r on %s (namespace %s)%s",
                settings.task_queue,
                client.service_client.config.target_host,
                client.namespace,
                f", metrics on http://{settings.worker_metrics_address}/metrics"
                if settings.worker_metrics_address
                else "",
            )
            if not settings.smtp_host:
                log.warning("BOOKING_SMTP_HOST is unset: mail to tenants waits, unsent")
            await stop.wait()
            log.info("stopping: finishing running activities (up to %s)", GRACEFUL_SHUTDOWN)
        log.info("worker stopped")
    finally:
        await pool.close()
        if traces is not None:
            traces.shutdown()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def main(settings: Settings | None = None) -> int:
    """Run the worker; return the process exit status (0 after a clean drain)."""
    try:
        settings = settings or Settings()
        logging.basicConfig(
            level=settings.log_level.upper(),
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        asyncio.run(run_worker(settings))
        return 0
    except (ConfigurationError, pydantic.ValidationError) as err:
        print(f"booking worker: error: {err}", file=sys.stderr)
        return 2
    except Exception:
        log.exception("worker failed")
        return 1


def exit_now(status: int) -> None:
    """End the process with ``status`` once output is flushed.

    The Temporal SDK's native runtime can abort the interpreter during its teardown
    (sdk-python issue 300: ``PyGILState_Release``, exit 134); skipping that teardown keeps
    the true exit status.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(status)


if __name__ == "__main__":
    exit_now(main())
