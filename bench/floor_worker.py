"""``python -m bench.floor_worker``: a worker for the floor workflow only.

It runs as its own process, like the booking worker, so that the floor and the
service are measured under the same conditions (one Python process polling
one task queue of the same Temporal server). Address and queue come from
``Settings`` (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``; ``BOOKING_WORKER_METRICS_ADDRESS``
serves its SDK metrics, as the booking worker's); the queue is the only argument.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from temporalio.client import Client
from temporalio.worker import Worker

from bench.floor import ACTIVITIES, TASK_QUEUE_PREFIX, FloorWorkflow
from booking.converter import DATA_CONVERTER
from booking.settings import Settings
from worker import runtime_for, tuning


async def serve(settings: Settings, task_queue: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    address = settings.temporal_address
    # The booking worker's metrics too, so that a scenario's workflow tasks are compared
    # with the floor's (the bench reads both around each scenario).
    client = await Client.connect(
        address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
        runtime=runtime_for(settings),
    )
    # The booking worker's tuning, so that the floor is not lower for want of it.
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[FloorWorkflow],
        activities=ACTIVITIES,
        **tuning(),
    )
    async with worker:
        print(f"floor worker polling {task_queue!r} on {address}", flush=True)
        await stop.wait()


def main(argv: list[str]) -> int:
    task_queue = argv[0] if argv else TASK_QUEUE_PREFIX
    asyncio.run(serve(Settings(), task_queue))
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(status)
