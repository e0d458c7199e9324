"""WaitlistEntryWorkflow: one tenant's place on one apartment's waiting list.

One execution per entry (workflow id ``waitlist-<entry id>``), alive while the entry is:

1. join: one activity adds the entry, WAITING, at the end of the list (refused when the
   apartment is VACANT: reserve it instead). A tenant already on that list gets the entry it
   has (``existing_entry_id``) and this execution ends at once;
2. wait: until the entry is over. Its offer is made by the release of the hold or lease
   before it, in the same transaction (``activities.holds.release_and_offer``): a hold in
   the tenant's name with its own booking workflow, which tells this one (the ``settled``
   signal, sent by ``hand_on_waitlist``) when the offer is paid (BOOKED), runs out (LAPSED)
   or is cancelled (LEFT); an entry passed over because its stay had begun is told LAPSED;
3. ``leave``: WAITING -> LEFT. An entry holding an offer is left by cancelling the offered
   booking (the API does that when ``leave`` answers OFFERED).

Why a workflow per entry rather than one per apartment's list: the list's order and its
offers live in Postgres, where a release can hand the apartment on atomically; what needs a
workflow is each entry's own writes (joining, leaving) and its end, and one small execution
per entry never grows a history or needs continue-as-new.
"""

from __future__ import annotations

from dataclasses import replace

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from booking.contract import (
    ACTIVITY_TIMEOUT,
    ENTRY_SETTLED_SIGNAL,
    JOIN_WAITLIST,
    LAPSED,
    LEAVE_WAITLIST,
    LEFT,
    OFFERED,
    WAITING,
    WAITLIST_WORKFLOW_TYPE,
    EntrySettled,
    JoinResult,
    LeaveResult,
    MailRequest,
    WaitlistJoin,
    WaitlistState,
)
from booking.errors import (
    ApartmentNotFound,
    UserNotFound,
    ValidationError,
    WaitlistEntryNotFound,
)
from workflows.mail import Mailer
from workflows.retry import ACTIVITY_RETRY

JOINING = "JOINING"
REJECTED = "REJECTED"
EXISTING = "EXISTING"  # the tenant was on the list already: see existing_entry_id
_JOIN_REFUSALS = {
    ValidationError.error_type,
    ApartmentNotFound.error_type,
    UserNotFound.error_type,
}


@workflow.defn(name=WAITLIST_WORKFLOW_TYPE)
class WaitlistEntryWorkflow:
    @workflow.init
    def __init__(self, join: WaitlistJoin) -> None:
        self._join = join
        self._state = WaitlistState(entry_id=join.entry_id, status=JOINING)
        self._over = False
        # Mail about the entry alone (a lapse because its stay began; an offer's mail is its
        # booking's).
        self._mailer = Mailer(MailRequest(waitlist_entry_id=join.entry_id))

    @workflow.run
    async def run(self, join: WaitlistJoin) -> WaitlistState:
        try:
            joined: JoinResult = await workflow.execute_activity(
                JOIN_WAITLIST,
                join,
                result_type=JoinResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary=f"add {join.user_id} to the waiting list of {join.apartment_id}",
            )
        except ActivityError as err:
            cause = err.cause
            if not (isinstance(cause, ApplicationError) and cause.type in _JOIN_REFUSALS):
                raise
            self._state.status = REJECTED
            self._state.error_type = cause.type
            self._state.error_message = cause.message
            return await self._finish()
        if not joined.created:
            self._state.status = EXISTING
            self._state.existing_entry_id = joined.entry_id
            return await self._finish()
        self._state.status = WAITING
        self._mailer.delivers = joined.mail
        # Why wait: leave and settled run meanwhile; either ends the entry.
        await workflow.wait_condition(lambda: self._over)
        if self._state.status == LAPSED:
            self._mailer.send()
        return await self._finish()

    async def _finish(self) -> WaitlistState:
        # Why: a joined() or leave() still answering must complete first, and mail on its way.
        await self._mailer.settled()
        return replace(self._state)

    @workflow.update
    async def joined(self) -> WaitlistState:
        """Answer once the join is decided: the entry (WAITING), the tenant's existing one,
        or the refusal."""
        # Why: the join activity runs concurrently; this answers as soon as it has.
        await workflow.wait_condition(lambda: self._state.status != JOINING)
        if self._state.status == REJECTED:
            raise ApplicationError(
                self._state.error_message or "not added to the waiting list",
                type=self._state.error_type,
                non_retryable=True,
            )
        return replace(self._state)

    @workflow.update
    async def leave(self) -> WaitlistState:
        """WAITING -> LEFT; an entry that holds an offer answers OFFERED with its booking."""
        left: LeaveResult = await workflow.execute_activity(
            LEAVE_WAITLIST,
            self._join.entry_id,
            result_type=LeaveResult,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
            summary=f"remove {self._join.user_id} from the waiting list",
        )
        # Why re-check: a settled signal may have arrived while the activity ran.
        if not self._over:
            self._state.status = left.status
            self._state.offered_booking_id = left.offered_booking_id
            self._over = left.status != OFFERED and left.status != WAITING
        return replace(self._state)

    @leave.validator
    def _validate_leave(self) -> None:
        if self._state.status in (JOINING, REJECTED, EXISTING):
            raise ApplicationError(
                f"the entry is not on the list ({self._state.status})",
                type=WaitlistEntryNotFound.error_type,
                non_retryable=True,
            )
        if self._over and self._state.status != LEFT:
            raise ApplicationError(
                f"the entry is {self._state.status}",
                type=ValidationError.error_type,
                non_retryable=True,
            )

    @workflow.signal(name=ENTRY_SETTLED_SIGNAL)
    def settled(self, settled: EntrySettled) -> None:
        """From the offered booking's workflow: BOOKED, LAPSED or LEFT."""
        self._state.status = settled.status
        self._over = True

    @workflow.query
    def state(self) -> WaitlistState:
        return replace(self._state)
