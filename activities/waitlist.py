"""The waiting list: joining, leaving, and telling entries and offers how things ended."""

from __future__ import annotations

from temporalio import activity

from activities.base import ActivityBase, permanent
from activities.db_errors import permanent_db_errors
from booking.contract import (
    HAND_ON,
    JOIN_WAITLIST,
    LEAVE_WAITLIST,
    LEFT,
    WAITING,
    HandOn,
    JoinResult,
    LeaveResult,
    WaitlistJoin,
    waitlist_workflow_id_for,
)
from booking.errors import (
    ApartmentNotFound,
    UserNotFound,
    ValidationError,
    WaitlistEntryNotFound,
)
from booking.offers import hand_on
from booking.store import bookings as store
from booking.store import calendar
from booking.store import waitlist as waitlist_store

_JOIN_CONSTRAINTS = {
    "waitlist_entries_user_id_fkey": (UserNotFound.error_type, "the user does not exist"),
    "waitlist_entries_check": (ValidationError.error_type, "endDate must be after startDate"),
    "waitlist_one_live_entry_per_tenant": (
        ValidationError.error_type,
        "the tenant is already on this apartment's waiting list",
    ),
}
# A booking records each payment reference once: a reference already used for this booking
# (a refunded payment) cannot pay it.


class WaitlistActivities(ActivityBase):
    """An entry's own writes, and the hand-on after a release committed."""

    @activity.defn(name=JOIN_WAITLIST)
    async def join_waitlist(self, join: WaitlistJoin) -> JoinResult:
        """A WAITING entry at the end of the apartment's list, or the tenant's live one."""
        joined = await self._join(join)
        joined.mail = self._policy.mail
        return joined

    async def _join(self, join: WaitlistJoin) -> JoinResult:
        async with self._connection() as conn:
            with permanent_db_errors(
                "not added to the waiting list",
                error_type=ValidationError.error_type,
                by_constraint=_JOIN_CONSTRAINTS,
            ):
                async with self._transaction(conn):
                    if await waitlist_store.get_entry(conn, join.entry_id) is not None:
                        return JoinResult(join.entry_id, True)  # an earlier attempt committed
                    # Shared with other joins, exclusive against a release (see the module).
                    terms = await store.share_apartment(conn, join.apartment_id)
                    if terms is None:
                        raise permanent(
                            f"apartment {join.apartment_id} does not exist",
                            ApartmentNotFound.error_type,
                        )
                    nights = (join.apartment_id, join.start_date, join.end_date)
                    if not terms.let_outside and await calendar.live_overlap(conn, *nights) is None:
                        raise permanent(
                            f"apartment {join.apartment_id} is free from {join.start_date} to "
                            f"{join.end_date}: reserve it instead",
                            ValidationError.error_type,
                        )
                    live = await waitlist_store.live_entry(conn, join.apartment_id, join.user_id)
                    if live is not None:
                        return JoinResult(live, False)
                    own = await calendar.user_live_overlap(
                        conn, join.apartment_id, join.user_id, join.start_date, join.end_date
                    )
                    if own is not None:
                        raise permanent(
                            f"apartment {join.apartment_id} is already {own.state} by "
                            f"{join.user_id} from {own.start_date} to {own.end_date}",
                            ValidationError.error_type,
                        )
                    await waitlist_store.insert_entry(
                        conn, join, workflow_id=waitlist_workflow_id_for(join.entry_id)
                    )
                    await store.append_event(
                        conn, None, None, WAITING, "JOINED", waitlist_entry_id=join.entry_id
                    )
        return JoinResult(join.entry_id, True)

    @activity.defn(name=LEAVE_WAITLIST)
    async def leave_waitlist(self, entry_id: str) -> LeaveResult:
        """WAITING -> LEFT; any other entry is answered as it stands (an offer is left by
        cancelling its booking, whose release settles the entry)."""
        async with self._connection() as conn:
            with permanent_db_errors("not removed from the waiting list"):
                async with self._transaction(conn):
                    entry = await waitlist_store.get_entry(conn, entry_id, for_update=True)
                    if entry is None:
                        raise permanent(
                            f"waiting-list entry {entry_id} does not exist",
                            WaitlistEntryNotFound.error_type,
                        )
                    if entry.status != WAITING:
                        return LeaveResult(entry.status, entry.offered_booking_id)
                    await waitlist_store.set_status(conn, entry_id, WAITING, LEFT)
                    await store.append_event(
                        conn, None, WAITING, LEFT, "LEFT", waitlist_entry_id=entry_id
                    )
        return LeaveResult(LEFT, None)

    @activity.defn(name=HAND_ON)
    async def hand_on_waitlist(self, request: HandOn) -> None:
        """Tell entries' workflows how they ended; start the offer's booking workflow.

        Through the worker's Temporal client rather than as the releasing workflow's child:
        the offer's hold outlives the execution that made it, and owes it nothing.
        """
        await hand_on(activity.client(), activity.info().task_queue, request)
