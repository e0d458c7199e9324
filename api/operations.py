"""Every change of booking state the API asks for, each one a Temporal call.

``reserve`` is update-with-start (start the booking workflow, or join the one
already running for the same idempotency key, and wait on its ``wait_for_hold``
update), so the caller hears about the hold as soon as it is in place, with no
polling; it is the one place that checks a booking's input (``booking_problem``)
and the one that answers for an execution that has already closed. A range that shares a
night with a live stay is answered ``ApartmentUnavailable`` from a read, with no workflow,
and the reserves of overlapping ranges of one apartment in this process take turns
(:class:`RangeTurns`): in a rush, the first places its hold and the others then hear "taken"
in milliseconds instead of each starting an execution that the database refuses. Concurrent
reserves of overlapping ranges across processes are still decided by the database (the
exclusion constraint): the winners' ranges are disjoint.
``pay``, ``cancel`` and ``extend_hold`` are updates that answer with the outcome;
``join_waitlist`` starts an entry's workflow and ``leave_waitlist`` updates it (or, for an
entry holding an offer, cancels the offered booking). (Catalog rows are written
through ``booking.catalog``, not here: they are no booking state.)

Temporal carries domain errors as ``ApplicationError.type``; they come back
here wrapped (``WorkflowUpdateFailedError``, ``WorkflowFailureError``) and are
turned back into ``booking.errors`` classes. Every call has a deadline
(``BOOKING_TEMPORAL_CALL_TIMEOUT_SECONDS``); past it the caller hears
``ServiceUnavailable`` instead of waiting for a worker that may never come.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    RPCTimeoutOrCancelledError,
    WithStartWorkflowOperation,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import ServiceUnavailable, domain_error_from
from api.loaders import Reader
from booking.calendar import let_outside_message, overlaps, taken_message
from booking.contract import (
    APPROVED,
    BOOKED,
    CANCELLED,
    EXPIRED,
    LEFT,
    OFFERED,
    PENDING,
    WAITING,
    WORKFLOW_TYPE,
    BookingInput,
    BookingState,
    ExtendHoldInput,
    InvoiceState,
    LeaseEndInput,
    PaymentInput,
    RentPaymentInput,
    StayLimits,
    WaitlistJoin,
    booking_problem,
    start_search_attributes,
    waitlist_workflow_id_for,
    workflow_id_for,
)
from booking.demo import DEMO_APARTMENT_ID, DEMO_TENANT_ID
from booking.errors import (
    ApartmentNotFound,
    ApartmentUnavailable,
    BookingExpired,
    BookingNotCancellable,
    DomainError,
    HoldNotExtendable,
    LeaseNotChangeable,
    PaymentRejected,
    ValidationError,
)
from booking.settings import Settings
from booking.store import calendar, reads
from booking.store.bookings import BookingRow
from booking.store.waitlist import WaitlistRow
from workflows.booking import ApartmentBookingWorkflow
from workflows.waitlist import WaitlistEntryWorkflow

log = logging.getLogger(__name__)

T = TypeVar("T")

# The tutorial's execution booked a stay; ours starts tomorrow for 30 nights.
_DEMO_STAY = timedelta(days=30)


# How often a command to an offer whose execution is starting asks again (_update_booking).
OFFER_START_POLL_SECONDS = 0.05
# What a booking's execution answers an update it will not apply.
REFUSALS = (PaymentRejected, BookingExpired, BookingNotCancellable, HoldNotExtendable)


def step_function_arn(namespace: str) -> str:
    return f"arn:temporal:{namespace}:workflow-type/{WORKFLOW_TYPE}"


async def _unwrap(call: Awaitable[T], *, deadline: float, retry_hint: str) -> T:
    """Await a Temporal call for at most ``deadline`` seconds.

    Re-raises a domain error found in its failure chain. The client retries
    an update until a worker accepts it, with no end of its own: without a
    worker (or with a saturated one) the caller would wait forever, so past
    the deadline it hears ``ServiceUnavailable`` and may retry safely.
    """
    try:
        async with asyncio.timeout(deadline):
            return await call
    except (TimeoutError, RPCTimeoutOrCancelledError):
        # The SDK turns the cancellation of an update call into its own error, which
        # asyncio.timeout then passes on; either way the deadline (or the server's
        # RPC deadline) passed. A cancellation of the request itself stays one.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        raise ServiceUnavailable(
            f"the booking service is busy or down; retry {retry_hint}"
        ) from None
    except (WorkflowUpdateFailedError, WorkflowFailureError, RPCError) as err:
        domain = domain_error_from(err)
        if domain is not None:
            raise domain from None
        raise


IDEMPOTENCY_CONFLICT = "idempotencyKey already used for a different booking"
SPENT_KEY = "idempotencyKey was used by an earlier request that placed no hold; use a new key"


def check_same_booking(
    booking: BookingInput, apartment_id: str, start_date: date, end_date: date
) -> None:
    """Refuse a key reused for another stay: its booking id is the earlier request's."""
    if (apartment_id, start_date, end_date) != (
        booking.apartment_id,
        booking.start_date,
        booking.end_date,
    ):
        raise ValidationError(IDEMPOTENCY_CONFLICT)


@dataclass
class Turn:
    """One reserve's claim on some nights of an apartment in this process."""

    start: date
    end: date
    done: asyncio.Event = field(default_factory=asyncio.Event)
    # The booking this reserve placed (set by its holder before it lets go).
    placed_by: str | None = None
    # A hold placed by a reserve this one waited for, on nights it asks for too: "taken" is
    # then a true answer without another read (unless it is this same booking, asked again
    # with its idempotency key).
    taken_by: str | None = None


class RangeTurns:
    """Reserves of one apartment whose ranges share a night take turns in this process;
    reserves of disjoint ranges go side by side. A key's claims are dropped once none is held
    (a request arriving after that reads the database afresh)."""

    def __init__(self) -> None:
        self._claims: dict[str, list[Turn]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: str, start: date, end: date) -> AsyncIterator[Turn]:
        turn = Turn(start, end)
        claims = self._claims.setdefault(key, [])
        while True:
            ahead = next((c for c in claims if overlaps(c.start, c.end, start, end)), None)
            if ahead is None:
                break
            # Why wait: the reserve ahead may place a hold on nights this one asks for.
            await ahead.done.wait()
            if ahead.placed_by is not None and turn.taken_by is None:
                turn.taken_by = ahead.placed_by
        claims.append(turn)
        try:
            yield turn
        finally:
            claims.remove(turn)
            turn.done.set()
            if not claims:
                self._claims.pop(key, None)

    def __len__(self) -> int:
        return len(self._claims)


class BookingCommands:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        *,
        observe: Callable[[str, float], None] | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        # Told how long each Temporal call took, by the workflow update it ran (the API's
        # metrics: what of a request's time was Temporal's and what was the API's own).
        self._observe = observe
        self.apartment_turns = RangeTurns()

    async def _call(
        self, update: str, call: Awaitable[T], *, deadline: float, retry_hint: str
    ) -> T:
        started = time.perf_counter()
        try:
            return await _unwrap(call, deadline=deadline, retry_hint=retry_hint)
        finally:
            if self._observe is not None:
                self._observe(update, time.perf_counter() - started)

    def stay_limits(self) -> StayLimits:
        return StayLimits(
            today=datetime.now(UTC).date(),
            max_stay_days=self._settings.max_stay_days,
            max_advance_days=self._settings.max_advance_days,
        )

    async def reserve(self, booking: BookingInput, reader: Reader) -> str:
        """Place the hold (or join the one placed for the same key); return the booking id.

        ``booking.booking_id`` is ``booking_id_for(user, key)``: with a key, a repeat finds
        the same workflow (running: joined; closed: answered from its row).
        """
        problem = booking_problem(booking, self.stay_limits())
        if problem is not None:
            raise ValidationError(problem)
        if await self._own_booking(booking, reader):
            return await self._place(booking, reader)
        # Why take turns: in a rush on one apartment, the reserves behind the first find it
        # taken by a read once the first has placed its hold, instead of each starting an
        # execution that would only be refused.
        nights = (booking.apartment_id, booking.start_date, booking.end_date)
        async with self.apartment_turns.hold(*nights) as turn:
            if turn.taken_by is not None:
                if turn.taken_by == booking.booking_id:
                    # The same idempotency key, sent again while its first request placed it.
                    return await self._place(booking, reader)
                raise ApartmentUnavailable(
                    f"apartment {booking.apartment_id} was just reserved by someone else for "
                    f"nights from {booking.start_date} to {booking.end_date}"
                )
            check = await reader.run(calendar.check_range, *nights)
            if check is None:
                raise ApartmentNotFound(f"apartment {booking.apartment_id} does not exist")
            if check.let_outside:
                raise ApartmentUnavailable(let_outside_message(booking.apartment_id))
            clash = check.clash
            if clash is not None:
                # Taken: by someone else, or (same idempotency key) by this very booking,
                # placed by a request of this key that another process answered.
                if await self._own_booking(booking, reader):
                    return await self._place(booking, reader)
                raise ApartmentUnavailable(
                    taken_message(booking.apartment_id, clash, booking.start_date, booking.end_date)
                )
            placed = await self._place(booking, reader)
            turn.placed_by = placed
            return placed

    async def _own_booking(self, booking: BookingInput, reader: Reader) -> bool:
        """Whether an earlier request with this idempotency key placed this booking."""
        if booking.idempotency_key is None:
            return False
        return await reader.run(reads.booking_by_id, booking.booking_id) is not None

    async def _place(self, booking: BookingInput, reader: Reader) -> str:
        hint = (
            "with the same idempotencyKey"
            if booking.idempotency_key is not None
            else "later (send an idempotencyKey, so that a retry cannot place a second hold)"
        )
        try:
            state = await self._start_and_wait(booking, workflow_id_for(booking.booking_id), hint)
        except WorkflowAlreadyStartedError:
            # The execution for this key has closed: the caller asked before.
            row = await reader.run(reads.booking_by_id, booking.booking_id)
            if row is None:
                raise ValidationError(SPENT_KEY) from None
            check_same_booking(booking, row.apartment_id, row.start_date, row.end_date)
            return booking.booking_id
        if booking.idempotency_key is not None:
            # USE_EXISTING joined whatever runs under this key, whatever it books.
            check_same_booking(booking, state.apartment_id, state.start_date, state.end_date)
        return booking.booking_id

    @property
    def _deadline(self) -> float:
        return self._settings.temporal_call_timeout_seconds

    async def _start_and_wait(
        self, booking_input: BookingInput, workflow_id: str, retry_hint: str
    ) -> BookingState:
        operation = WithStartWorkflowOperation(
            ApartmentBookingWorkflow.run,
            booking_input,
            id=workflow_id,
            task_queue=self._settings.task_queue,
            # The same idempotency key joins the running booking instead of a second hold.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            # ... and never starts a new run after the first one closed.
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=start_search_attributes(booking_input, None),
            static_summary=(
                f"booking {booking_input.booking_id}: apartment {booking_input.apartment_id} "
                f"for {booking_input.user_id}"
            ),
        )
        try:
            return await self._call(
                "wait_for_hold",
                self._client.execute_update_with_start_workflow(
                    ApartmentBookingWorkflow.wait_for_hold,
                    start_workflow_operation=operation,
                ),
                deadline=self._deadline,
                retry_hint=retry_hint,
            )
        except WorkflowAlreadyStartedError:
            # The execution for this key has closed: ``reserve`` answers from the database
            # (or says the key is spent).
            log.info("workflow %s already closed; answering from the database", workflow_id)
            # The start's own future holds the same error; collect it so that asyncio
            # does not report it as never retrieved.
            with contextlib.suppress(Exception):
                await operation.workflow_handle()
            raise
        except RPCError as err:
            if err.status == RPCStatusCode.ALREADY_EXISTS:
                raise WorkflowAlreadyStartedError(workflow_id, WORKFLOW_TYPE) from err
            raise

    async def add_step_function(self, execution_id: str, arn: str) -> None:
        """The tutorial's mutation: one booking of the demo apartment, workflow id = ``id``."""
        expected = step_function_arn(self._settings.temporal_namespace)
        if arn != expected:
            raise ValidationError(f"arn must be {expected!r}")
        if not execution_id.strip() or len(execution_id) > 200:
            raise ValidationError("id must be 1 to 200 characters")
        today = datetime.now(UTC).date()
        booking_input = BookingInput(
            booking_id=execution_id,
            apartment_id=DEMO_APARTMENT_ID,
            user_id=DEMO_TENANT_ID,
            start_date=today + timedelta(days=1),
            end_date=today + timedelta(days=1) + _DEMO_STAY,
            hold_seconds=self._settings.hold_seconds,
            step_function_arn=arn,
        )
        # Like StartExecution: the execution exists (and is listed) even when the
        # apartment was taken; its outcome is in the booking, not in this answer.
        with contextlib.suppress(ApartmentUnavailable, WorkflowAlreadyStartedError):
            await self._start_and_wait(booking_input, execution_id, "with the same id")

    async def _update_booking(
        self,
        booking: BookingRow,
        name: str,
        update: Callable[[WorkflowHandle[Any, Any]], Awaitable[T]],
        retry_hint: str,
        closed: Callable[[], DomainError],
    ) -> T:
        """Run ``update`` on the booking's execution; ``closed()`` is raised once it has closed.

        A waiting-list offer's row is PENDING before its execution has caught up: the release
        that made the offer commits the row, then its next step starts the execution
        (activity ``hand_on_waitlist``, retried by Temporal until it has), whose first step
        takes the hold the row already shows. A tenant who pays or declines the moment the
        offer shows must not hear "not PENDING" about a PENDING booking, so while the row
        says PENDING: a missing execution is waited for, and a refusal is asked again once
        the execution's hold step is done (``wait_for_hold``), all within the call's deadline.
        """
        handle = self._client.get_workflow_handle(booking.workflow_id)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self._deadline
        caught_up = booking.booking_status != PENDING

        def remaining() -> float:
            return max(give_up - loop.time(), OFFER_START_POLL_SECONDS)

        while True:
            try:
                return await self._call(
                    name, update(handle), deadline=remaining(), retry_hint=retry_hint
                )
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                if booking.booking_status != PENDING:
                    raise closed() from None  # the booking is settled one way or the other
                if loop.time() + OFFER_START_POLL_SECONDS > give_up:
                    raise ServiceUnavailable(
                        f"the booking's hold is still being placed; retry {retry_hint}"
                    ) from None
                await asyncio.sleep(OFFER_START_POLL_SECONDS)
            except REFUSALS as refusal:
                if caught_up:
                    raise
                caught_up = True
                # The refusal may be the execution's view before its hold step: ask once more
                # when that step is done (it answers at once when it was done already).
                try:
                    await self._call(
                        "wait_for_hold",
                        handle.execute_update(ApartmentBookingWorkflow.wait_for_hold),
                        deadline=remaining(),
                        retry_hint=retry_hint,
                    )
                except DomainError:
                    raise refusal from None  # the hold was never placed: the refusal stands

    async def pay(self, booking: BookingRow, payment: PaymentInput) -> BookingState:
        def closed() -> DomainError:
            if booking.booking_status == CANCELLED and booking.cancellation_reason == EXPIRED:
                return BookingExpired("the hold is over")
            return PaymentRejected(f"booking is {booking.booking_status}, not PENDING")

        state = await self._update_booking(
            booking,
            "pay",
            lambda handle: handle.execute_update(ApartmentBookingWorkflow.pay, payment),
            "with the same paymentReference",
            closed,
        )
        if state.status != APPROVED:
            # Never a success-shaped answer for money that did not pay the booking (an older
            # execution answers a repeated reference with the booking as it is).
            raise PaymentRejected(
                f"payment {payment.payment_reference} did not pay the booking (it is "
                f"{state.status}); pay with a new paymentReference"
            )
        return state

    async def pay_rent(self, booking: BookingRow, payment: RentPaymentInput) -> InvoiceState:
        """Pay one invoice of a running lease (its booking workflow's ``pay_rent`` update)."""
        return await self._update_booking(
            booking,
            "pay_rent",
            lambda handle: handle.execute_update(ApartmentBookingWorkflow.pay_rent, payment),
            "with the same paymentReference",
            lambda: PaymentRejected(f"the lease of booking {booking.id} is not running"),
        )

    async def move_lease_end(
        self, booking: BookingRow, end_date: date, *, staff: bool, later: bool
    ) -> BookingState:
        """endLease (``later`` False) or renewLease: the booking workflow's update of that
        name; a tenant's notice must reach ``BOOKING_LEASE_NOTICE_DAYS`` past today."""
        today = datetime.now(UTC).date()
        if later and (end_date - booking.start_date).days > self._settings.max_stay_days:
            raise ValidationError(
                f"a stay may last at most {self._settings.max_stay_days} days "
                "(BOOKING_MAX_STAY_DAYS)"
            )
        earliest = today if staff else today + timedelta(days=self._settings.lease_notice_days)
        change = LeaseEndInput(end_date, earliest)
        update = (
            ApartmentBookingWorkflow.renew_lease if later else ApartmentBookingWorkflow.end_lease
        )
        return await self._update_booking(
            booking,
            "renew_lease" if later else "end_lease",
            lambda handle: handle.execute_update(update, change),
            "later (getBooking shows the stay's endDate)",
            lambda: LeaseNotChangeable(f"booking {booking.id} is not a running stay"),
        )

    async def extend_hold(self, booking: BookingRow, seconds: int) -> BookingState:
        request = ExtendHoldInput(seconds, self._settings.max_hold_extensions)
        return await self._update_booking(
            booking,
            "extend_hold",
            lambda handle: handle.execute_update(ApartmentBookingWorkflow.extend_hold, request),
            "later (getBooking shows whether the hold moved)",
            lambda: HoldNotExtendable(
                f"the hold cannot be extended: the booking is {booking.booking_status}"
            ),
        )

    async def join_waitlist(self, join: WaitlistJoin) -> str:
        """Add the entry (its workflow's first step); the id of the entry the tenant has."""
        operation = WithStartWorkflowOperation(
            WaitlistEntryWorkflow.run,
            join,
            id=waitlist_workflow_id_for(join.entry_id),
            task_queue=self._settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            static_summary=f"waiting list of {join.apartment_id}: {join.user_id}",
        )
        state = await self._call(
            "joined",
            self._client.execute_update_with_start_workflow(
                WaitlistEntryWorkflow.joined, start_workflow_operation=operation
            ),
            deadline=self._deadline,
            retry_hint="later (getWaitlist shows whether you are on the list)",
        )
        return state.existing_entry_id or state.entry_id

    async def leave_waitlist(self, entry: WaitlistRow, reader: Reader) -> None:
        """Take the entry off the list: WAITING -> LEFT; an offer is declined by cancelling
        its booking, whose release marks the entry LEFT and hands the apartment on."""
        if entry.status == LEFT:
            return
        offered = entry.offered_booking_id
        if entry.status == WAITING:
            handle = self._client.get_workflow_handle_for(
                WaitlistEntryWorkflow.run, entry.workflow_id
            )
            try:
                state = await self._call(
                    "leave",
                    handle.execute_update(WaitlistEntryWorkflow.leave),
                    deadline=self._deadline,
                    retry_hint="later (getWaitlistEntry shows whether you left)",
                )
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                raise ValidationError("the entry is no longer on the list") from None
            if state.status != OFFERED:
                return
            offered = state.offered_booking_id  # offered while we asked
        elif entry.status != OFFERED:
            raise ValidationError(
                f"the entry is {entry.status}: nothing to leave"
                + (" (cancel the booking instead)" if entry.status == BOOKED else "")
            )
        if offered is None:
            return
        booking = await reader.run(reads.booking_by_id, offered)
        if booking is None:
            return
        try:
            await self.cancel(booking)
        except BookingNotCancellable:
            raise ValidationError(
                "the offer cannot be declined any more: it was paid or has run out"
            ) from None

    async def cancel(self, booking: BookingRow) -> BookingState:
        return await self._update_booking(
            booking,
            "cancel",
            lambda handle: handle.execute_update(ApartmentBookingWorkflow.cancel),
            "later (getBooking shows whether the cancellation went through)",
            lambda: BookingNotCancellable(
                f"booking cannot be cancelled: it is {booking.booking_status}"
            ),
        )
