"""The engine floor: a workflow of the booking's shape with no-op activities.

Shape, as in ``ApartmentBookingWorkflow``: an activity (reserve), a wait for a
payment with a durable timer (the hold), an activity (confirm). Both activities
are local activities, as the booking's reserve and confirm are, so that the
floor is what this shape can reach, not what a slower shape reaches. Nothing here
touches a database or the network, so the throughput of this workflow on a
Temporal server is the most any workflow of that shape can reach there; the
booking service's throughput is reported against it.

Two ways to drive it, both from a plain Temporal client:

- ``signal``: start, ``pay`` signal, wait for the result (the issue's floor);
- ``update``: update-with-start of ``wait_for_hold`` then the ``pay`` update,
  the same client protocol as the API uses for a booking.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow

WORKFLOW_TYPE = "BenchFloorWorkflow"
TASK_QUEUE_PREFIX = "bench-floor"
_ACTIVITY_TIMEOUT = timedelta(seconds=15)


@dataclass
class FloorInput:
    hold_seconds: int


@activity.defn(name="bench_floor_reserve")
async def floor_reserve() -> None:
    """No-op stand-in for the reserve activity."""


@activity.defn(name="bench_floor_confirm")
async def floor_confirm() -> None:
    """No-op stand-in for the confirm activity."""


ACTIVITIES = [floor_reserve, floor_confirm]


@workflow.defn(name=WORKFLOW_TYPE)
class FloorWorkflow:
    def __init__(self) -> None:
        self._held = False
        self._paid = False
        self._confirmed = False

    @workflow.run
    async def run(self, input: FloorInput) -> str:
        await workflow.execute_local_activity(
            floor_reserve, start_to_close_timeout=_ACTIVITY_TIMEOUT
        )
        self._held = True
        try:
            # Why: the pay signal or update lands while we wait here.
            await workflow.wait_condition(lambda: self._paid, timeout=input.hold_seconds)
        except TimeoutError:
            return "EXPIRED"
        await workflow.execute_local_activity(
            floor_confirm, start_to_close_timeout=_ACTIVITY_TIMEOUT
        )
        self._confirmed = True
        # Why: a pay update waiting for the confirm must answer before the run closes.
        await workflow.wait_condition(workflow.all_handlers_finished)
        return "APPROVED"

    @workflow.signal
    def pay(self) -> None:
        self._paid = True

    @workflow.update
    async def wait_for_hold(self) -> bool:
        # Why: the reserve activity runs concurrently; answer once it has.
        await workflow.wait_condition(lambda: self._held)
        return True

    @workflow.update
    async def pay_update(self) -> str:
        self._paid = True
        # Why: like the booking's pay update, answer after the confirm activity.
        await workflow.wait_condition(lambda: self._confirmed)
        return "APPROVED"
