"""``python -m bench.floor_worker``: a worker for the floor workflow only.

It runs as its own process, like the booking worker, so that the floor and the
service are measured under the same conditions (one Python process polling
one task queue of the same Temporal server). Address and queue come from
``Settings`` (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``); the queue is the only argument.
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
from worker import tuning


async def serve(address: str, namespace: str, task_queue: str) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    client = await Client.connect(address, namespace=namespace, data_converter=DATA_CONVERTER)
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
    settings = Settings()
    asyncio.run(serve(settings.temporal_address, settings.temporal_namespace, task_queue))
    return 0


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(status)
