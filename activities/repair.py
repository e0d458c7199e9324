"""Repairs that ``booking doctor --repair`` applies: the only writes outside a booking workflow.

Each method is one short, idempotent transaction that re-checks, under row locks, the
condition the doctor saw, so a repair raced by a workflow that healed the drift itself
changes nothing; each change appends a ``booking_events`` row (reason ``DRIFT_REPAIRED``)
so an operator can tell a repaired booking from one the workflow settled. The doctor calls
the methods directly (like ``booking seed`` calls the catalog activities), so a repair
needs no running worker; they are activities so that a scheduled workflow could run them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from temporalio import activity

from activities.db_errors import permanent_db_errors
from booking.store import bookings as booking_store
from booking.store import doctor as store

DRIFT_REPAIRED = "DRIFT_REPAIRED"


@dataclass(frozen=True)
class RepairOutcome:
    target: str  # the apartment or booking id repaired
    changed: bool  # False: nothing to do any more (repaired before, or healed meanwhile)
    detail: str


class RepairActivities:
    """Handed the pool once; each method is one transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="repair_release_orphaned_apartment")
    async def release_orphaned_apartment(self, apartment_id: str) -> RepairOutcome:
        """RESERVED -> VACANT for an apartment that no PENDING booking holds."""
        async with self._pool.acquire() as conn:
            with permanent_db_errors("apartment not released"):
                async with conn.transaction():
                    status = await store.lock_apartment(conn, apartment_id)
                    if status != "RESERVED":
                        return RepairOutcome(apartment_id, False, f"apartment is {status}")
                    if not await store.release_orphaned_reservation(conn, apartment_id):
                        return RepairOutcome(
                            apartment_id, False, "a PENDING booking holds the apartment"
                        )
                    latest = await store.latest_booking(conn, apartment_id)
                    if latest is not None:
                        # The event log is per booking; the last booking of the apartment is
                        # the one whose hold was orphaned.
                        booking_id, booking_status = latest
                        await booking_store.append_event(
                            conn,
                            booking_id,
                            booking_status,
                            booking_status,
                            DRIFT_REPAIRED,
                            {"apartmentId": apartment_id, "apartment": "RESERVED -> VACANT"},
                        )
        return RepairOutcome(apartment_id, True, "apartment RESERVED -> VACANT")

    @activity.defn(name="repair_cancel_abandoned_booking")
    async def cancel_abandoned_booking(self, booking_id: str) -> RepairOutcome:
        """PENDING -> CANCELLED(DRIFT_REPAIRED) for a booking whose workflow is gone.

        The caller has established that no workflow will ever settle the booking; its
        apartment is released in the same transaction if it is still RESERVED.
        """
        async with self._pool.acquire() as conn:
            with permanent_db_errors("booking not cancelled"):
                async with conn.transaction():
                    booking = await booking_store.get_booking(conn, booking_id, for_update=True)
                    if booking is None:
                        return RepairOutcome(booking_id, False, "no such booking")
                    if booking.booking_status != "PENDING":
                        return RepairOutcome(
                            booking_id, False, f"booking is {booking.booking_status}"
                        )
                    await booking_store.cancel_booking(conn, booking.id, DRIFT_REPAIRED)
                    released = await booking_store.release_reserved_apartment(
                        conn, booking.apartment_id
                    )
                    await booking_store.append_event(
                        conn,
                        booking.id,
                        "PENDING",
                        "CANCELLED",
                        DRIFT_REPAIRED,
                        {"workflowId": booking.workflow_id, "apartmentReleased": released},
                    )
        detail = "booking PENDING -> CANCELLED (DRIFT_REPAIRED)"
        if released:
            detail += f"; apartment {booking.apartment_id} RESERVED -> VACANT"
        return RepairOutcome(booking_id, True, detail)

    def all(self) -> list[Callable[..., Any]]:
        return [self.release_orphaned_apartment, self.cancel_abandoned_booking]
