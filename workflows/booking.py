"""ApartmentBookingWorkflow: reserve an apartment, hold it while the tenant pays, settle it.

One execution per booking (workflow id ``booking-<booking id>``):

1. reserve: one activity, one transaction (the stay's nights free -> booking PENDING);
   reserve, confirm and release run as local activities (see ``_step``), refunds, the
   lease's end and the sweep as ordinary ones;
2. hold: a durable timer of ``hold_seconds`` that a payment or a cancellation ends early
   and ``extend_hold`` moves later (an updatable timer: the run loop waits on the deadline
   as it stands, and an extension ends that wait and starts one for the new deadline);
3. outcome: APPROVED (its nights BOOKED), or CANCELLED with reason EXPIRED or
   TENANT_CANCELLED: its nights go to the first tenant waiting for a range they make free (an
   offer: a PENDING booking in that tenant's name, with an execution of its own) or are free;
4. lease: after APPROVED, a stay paid ahead of its first night sleeps until ``start_date``
   00:00 UTC and runs ``stay_started`` (subscribers hear the apartment's status for that day
   change; behind ``STAY_START_PATCH``), then a durable timer to ``end_date`` 00:00 UTC (the
   move-out day), then its nights are handed on the same way and ``lease_ended_at`` is
   recorded. A stay is the nights ``[start_date, end_date)``; an apartment's status is read
   for a day from the stays that cover it, so the workflow never writes it.

Releases and lease ends run ``release_and_offer`` / ``end_lease_and_offer`` (one
transaction: the hand-over is atomic) behind the ``waitlist-offers-on-release`` patch, then
``hand_on_waitlist`` starts the offer's execution and tells entries how they ended; older
executions keep their ``release_booking`` / ``end_lease``. A booking that was an offer
(``BookingInput.waitlist_entry_id``) books its entry when paid.

Who decides a payment was on time: the workflow's clock, or for a signalled payment the time
our webhook endpoint received it (``PaymentInput.received_at``), so that a payment taken before
the deadline while every worker was down still wins. A payment is accepted only while that
time is before ``hold_expires_at`` and the run loop has not yet chosen EXPIRED; after the hold
wait the outcome is chosen by "was a payment accepted", never by whether the timer fired, so a
payment racing the timer has exactly one outcome. Money that cannot be applied (late, wrong
amount or currency, a second payment) is recorded and refunded by the ``refund_payment``
activity. After a cancellation the workflow stays open for :data:`LATE_PAYMENT_WINDOW` (and
during the lease) so that late or repeated payments reaching the ``payment_received`` signal
are refunded rather than lost.

A reserve that fails after Temporal gave up on an attempt (a timeout, or a refusal on a retry)
may still see that abandoned attempt commit: the workflow answers the caller at once, then
waits :data:`RESERVE_SWEEP_DELAY` (longer than any attempt can run, see
``activities.base.AttemptBounds``) and runs the idempotent release, so no apartment stays
RESERVED by a booking nobody holds.

Status values of :class:`BookingState`: the booking's own ``PENDING`` / ``APPROVED`` /
``CANCELLED`` plus two that exist only in the workflow (no booking row): ``RESERVING``
(the reserve activity has not answered yet) and ``REJECTED`` (no hold was placed;
``error_type`` / ``error_message`` say why).

Its input, state and activity requests, the statuses and the activity names are the
contract in ``booking.contract``. This module is imported by the API (for typed workflow
handles): it must not import ``activities`` (activities are called by name) and everything at
module level must be cheap and deterministic.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.exceptions import TimeoutError as TemporalTimeoutError

from booking import rent
from booking.contract import (
    ACTIVITY_TIMEOUT,
    APPROVED,
    BOOKED,
    CANCELLED,
    CONFIRM_BOOKING,
    END_LEASE,
    END_LEASE_AND_OFFER,
    EXPIRED,
    EXTEND_HOLD,
    HAND_ON,
    LAPSED,
    MAX_HOLD_SECONDS,
    MAX_TOTAL_HOLD,
    MIN_HOLD_SECONDS,
    MOVE_LEASE_END,
    PAY_RENT,
    PENDING,
    REFUND_ALREADY_PAID,
    REFUND_INVOICE_VOID,
    REFUND_LATE,
    REFUND_NOT_AN_INVOICE,
    REFUND_NOT_PENDING,
    REFUND_NOT_PLACED,
    REFUND_PAYMENT,
    REFUND_REFERENCE_USED,
    REFUND_UNPLACED_PAYMENT,
    REFUND_WRONG_AMOUNT,
    REFUND_WRONG_CURRENCY,
    REJECTED,
    RELEASE_AND_OFFER,
    RELEASE_BOOKING,
    REMIND_HOLD,
    RENT_INVOICES_QUERY,
    RENT_STEP,
    RESERVATION_FAILED,
    RESERVE_APARTMENT,
    RESERVE_REJECTIONS,
    RESERVING,
    SCHEDULE_RENT,
    STAY_STARTED,
    TENANT_CANCELLED,
    WORKFLOW_TYPE,
    BookingInput,
    BookingState,
    ConfirmRequest,
    EndLeaseRequest,
    ExtendHoldInput,
    ExtendHoldRequest,
    HandOn,
    HoldReminder,
    InvoiceState,
    LeaseEndInput,
    LeaseMove,
    LeaseMoveRequest,
    LeaseResume,
    MailRequest,
    PaymentInput,
    RefundRequest,
    RefundResult,
    ReleaseOutcome,
    ReleaseRequest,
    RentPaymentInput,
    RentPaymentRequest,
    RentSchedule,
    RentStepRequest,
    Reservation,
    ReserveRequest,
    SettledEntry,
    StayStartRequest,
    booking_problem,
    hold_reminder_at,
    refusing_attempt,
)
from booking.errors import (
    BookingExpired,
    BookingNotCancellable,
    HoldNotExtendable,
    LeaseNotChangeable,
    PaymentRejected,
    ReservationFailed,
    ValidationError,
)
from booking.rent import InvoiceClock, RentRules, is_lease, next_step
from booking.search_attributes import (
    APARTMENT_ID,
    BOOKING_STATUS,
    HOLD_EXPIRES_AT,
    NEXT_RENT_DUE,
    RENT_STATUS,
    TENANT_ID,
)
from workflows.mail import Mailer
from workflows.retry import ACTIVITY_RETRY

# A provider may deliver a payment days after the hold ended; while the workflow is open the
# money is recorded and refunded, afterwards the signal has nowhere to go.
LATE_PAYMENT_WINDOW = timedelta(days=7)

# Reserving longer than this is pointless: the caller has given up and the hold would be short.
RESERVE_DEADLINE = timedelta(seconds=60)
# Every reserve attempt commits within AttemptBounds.total (< ACTIVITY_TIMEOUT) of its start
# or not at all, and each started before the workflow saw the failure: after this long no
# abandoned attempt can commit any more.
RESERVE_SWEEP_DELAY = ACTIVITY_TIMEOUT
# Executions recorded before the sweep existed released at once (timeouts) or not at all.
RESERVE_SWEEP_PATCH = "reserve-sweep-after-failure"
# Executions recorded before this patch ran reserve, confirm and release as ordinary
# activities; they keep doing so (see ``_step``).
LOCAL_STEPS_PATCH = "reserve-confirm-release-as-local-activities"
# Executions recorded before this patch answered a repeated reference whose payment had been
# refunded (or not applied) with the booking as it was, PENDING, and only logged money that
# reached a booking that was never placed; since, the first is PaymentRejected and the second
# is recorded and refunded.
TRUTHFUL_PAYMENTS_PATCH = "truthful-payment-answers"
# Executions recorded before this patch released (and ended leases) with the steps that knew
# no waiting list; since, a release or a lease's end offers the apartment to the first tenant
# waiting for it, in the same transaction, and starts the offer's own booking workflow.
WAITLIST_PATCH = "waitlist-offers-on-release"
# Executions recorded before this patch slept from payment to the lease's end; since, a stay
# paid ahead of its first night also wakes then, so that subscribers hear the apartment's
# status for that day change (``stay_started``).
STAY_START_PATCH = "stay-start-notice"
# Executions recorded before this patch slept through a lease; since, a lease (a paid stay of
# more than one period) collects its rent: every period's invoice, issued, reminded, overdue
# with its fee, paid (``_collect_rent``).
LEASE_RENT_PATCH = "lease-collects-rent"
# Executions recorded before this patch wrote a lease's invoices at its first night; since,
# a lease paid ahead writes them when it is paid, so the tenant sees (and may pay) them.
LEASE_INVOICES_AT_PAYMENT_PATCH = "lease-invoices-at-payment"
# Executions recorded before this patch ran each rent step (issue, due, overdue, remind) as an
# ordinary activity; since, as a local activity inside the workflow task that reached it: a
# month's 10,000 invoices due at one moment no longer queue twice through the server
# (BENCHMARKS.md, "A lease collects its rent").
RENT_LOCAL_STEPS_PATCH = "rent-steps-as-local-activities"
# A lease continues as new once its history is this long (and no handler runs), so that a
# lease of years keeps a bounded history.
LEASE_HISTORY_EVENTS = 400


def _arrival(payment: PaymentInput) -> datetime:
    """When a signalled payment counts as paid: when our edge received it, never later than
    now (a clock ahead of the server's cannot make a payment count in the future)."""
    now = workflow.now()
    if payment.received_at is None:
        return now
    return min(payment.received_at, now)


def _clock(invoice: InvoiceState) -> InvoiceClock:
    return InvoiceClock(
        invoice.invoice_id,
        invoice.due_date,
        invoice.rent,
        invoice.status,
        invoice.reminded_due,
        invoice.last_reminder,
        invoice.reminders,
    )


def _take_row(invoice: InvoiceState, row: InvoiceState) -> None:
    """What an activity wrote of an invoice, into the workflow's copy; what only the workflow
    knows (the reminders it sent) stays."""
    invoice.period_end = row.period_end
    invoice.rent = row.rent
    invoice.late_fee = row.late_fee
    invoice.status = row.status
    invoice.payment_reference = row.payment_reference


def _invoice_problem(
    invoice: InvoiceState, amount: int, currency: str, reference: str
) -> tuple[str, str] | None:
    """(refund reason, message) when this money cannot pay ``invoice``; None when it can, or
    did (the same reference paid it). payRent's validator and the webhook ask alike."""
    if invoice.status == "PAID":
        if invoice.payment_reference == reference:
            return None
        return REFUND_ALREADY_PAID, "the invoice is already paid"
    if invoice.status == "VOID":
        return REFUND_INVOICE_VOID, "the invoice is VOID (the lease ended before its period)"
    if currency != invoice.currency:
        return REFUND_WRONG_CURRENCY, f"currency must be {invoice.currency}, got {currency}"
    if amount != invoice.amount_due:
        return REFUND_WRONG_AMOUNT, f"amount must be {invoice.amount_due}, got {amount}"
    return None


def _refusal(err: ActivityError) -> Exception:
    """What an update answers when its step failed: the step's refusal for good as the
    update's own (its type and message), anything else as it came."""
    cause = err.cause
    if isinstance(cause, ApplicationError) and cause.non_retryable:
        return ApplicationError(cause.message, type=cause.type, non_retryable=True)
    return err


def _midnight(day: date) -> datetime:
    """00:00 UTC of ``day``: a stay's first night begins, or its move-out day comes."""
    return datetime.combine(day, time.min, tzinfo=UTC)


@workflow.defn(name=WORKFLOW_TYPE)
class ApartmentBookingWorkflow:
    @workflow.init
    def __init__(self, input: BookingInput) -> None:
        self._input = input
        self._state = BookingState(
            booking_id=input.booking_id,
            workflow_id=workflow.info().workflow_id,
            apartment_id=input.apartment_id,
            user_id=input.user_id,
            status=RESERVING,
            amount_due=None,
            currency=None,
            hold_expires_at=None,
            paid_at=None,
            cancellation_reason=None,
            lease_ended_at=None,
            start_date=input.start_date,
            end_date=input.end_date,
        )
        self._accepted: PaymentInput | None = None
        self._accepted_at: datetime | None = None
        # Why a confirm was refused (e.g. a reference already used elsewhere); read by pay().
        self._confirm_error: ApplicationError | None = None
        self._cancel_requested = False
        # Set once the run loop has chosen EXPIRED: from then on nothing may join the hold.
        self._expiring = False
        # Each payment reference seen, with the (amount, currency) it first came with.
        self._references: dict[str, tuple[int, str]] = {}
        # Reference -> why its payment did not pay the booking (refunded, or refused by the
        # database): the answer to a repeat of it.
        self._not_applied: dict[str, str] = {}
        # The reference of the payment that paid the booking.
        self._paid_reference: str | None = None
        self._local_steps = False
        # extendHold: an extension being written (the run loop waits for it before it lets
        # the hold expire), and when the hold began (it lasts at most 24 h in all).
        self._extending = False
        self._hold_started: datetime | None = None
        # A lease's rent (LEASE_RENT_PATCH): its invoices and rules, a counter pay_rent bumps
        # (the rent loop wakes on it), and the search attributes last published.
        self._schedule: RentSchedule | None = None
        self._rent_version = 0
        self._rent_published: tuple[str, date | None] | None = None
        # endLease / renewLease: a move of the stay's end being written (the lease must not
        # end meanwhile), and set once the lease's end has begun (no move may start then).
        self._moving = False
        self._lease_ending = False
        # Whether this run's rent steps are local activities (RENT_LOCAL_STEPS_PATCH).
        self._rent_local: bool | None = None
        # Mail to the tenant (workflows.mail): sent after each transition that writes some.
        self._mailer = Mailer(MailRequest(booking_id=input.booking_id))
        # The hold-ending reminder: how long before the end (the worker's answer with the
        # reservation), and the deadline it was last sent for (an extension earns another).
        self._reminder_seconds: int | None = None
        self._reminded: datetime | None = None

    # -- main flow -------------------------------------------------------------------------

    @workflow.run
    async def run(self, input: BookingInput) -> BookingState:
        # Decided once, first thing, so that one execution never mixes the two ways.
        self._local_steps = workflow.patched(LOCAL_STEPS_PATCH)
        if input.lease is not None:
            # A lease that continued as new: its hold and payment are behind it.
            self._restore(input.lease)
            await self._live_out()
            await self._end_lease()
            return await self._finish()
        problem = booking_problem(input)
        if problem is not None:
            self._reject(ValidationError.error_type, problem)
            return await self._finish()

        hold_expires_at = workflow.now() + timedelta(seconds=input.hold_seconds)
        self._state.hold_expires_at = hold_expires_at
        try:
            reservation: Reservation = await self._step(
                RESERVE_APARTMENT,
                ReserveRequest(input, self._state.workflow_id, hold_expires_at),
                result_type=Reservation,
                schedule_to_close_timeout=RESERVE_DEADLINE,
                summary=f"reserve apartment {input.apartment_id} for {input.user_id}",
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type in RESERVE_REJECTIONS:
                self._reject(cause.type or ValidationError.error_type, cause.message)
                # A refusal on the first attempt has no abandoned attempt behind it.
                if refusing_attempt(cause.details) != 1 and workflow.patched(RESERVE_SWEEP_PATCH):
                    await self._sweep_reservation()
                return await self._finish()
            if workflow.patched(RESERVE_SWEEP_PATCH):
                reason = cause.message if isinstance(cause, ApplicationError) else str(cause)
                self._reject(
                    ReservationFailed.error_type,
                    f"apartment {input.apartment_id} could not be reserved in time ({reason}); "
                    "nothing is held, please try again",
                )
                await self._sweep_reservation()
                return await self._finish()
            # The reservation may have committed with its answer lost (a timeout): undo it
            # so the apartment is never left RESERVED by a booking nobody holds.
            await self._release(RESERVATION_FAILED)
            self._reject(
                ReservationFailed.error_type, f"the reservation could not be completed: {err}"
            )
            return await self._finish()

        self._state.status = PENDING
        self._state.amount_due = reservation.amount_due
        self._state.currency = reservation.currency
        self._state.hold_expires_at = reservation.hold_expires_at
        self._hold_started = reservation.hold_expires_at - timedelta(seconds=input.hold_seconds)
        self._reminder_seconds = reservation.reminder_seconds
        self._mailer.delivers = reservation.mail
        self._upsert_search_attributes(initial=True)
        # The hold placed (or, for an offer, the offer made): its tenant's mail.
        self._mailer.send()

        outcome = await self._hold()
        if outcome == APPROVED:
            if input.waitlist_entry_id is not None:
                # Why: the entry's workflow waits to hear how its offer ended.
                await self._tell_waitlist(HandOn([SettledEntry(input.waitlist_entry_id, BOOKED)]))
            await self._lease()
        else:
            # Why wait: a payment may still reach the signal after the hold; it is refunded.
            await workflow.sleep(LATE_PAYMENT_WINDOW, summary="refund window for late payments")
        return await self._finish()

    async def _hold(self) -> str:
        while True:
            # The deadline as it stands: extend_hold may move it while we wait (an updatable
            # timer), which ends this wait early and starts a new one for the new deadline.
            deadline = self._state.hold_expires_at
            assert deadline is not None
            # Woken first for the tenant's reminder, when one is due before this deadline.
            wake = self._reminder_due(deadline) or deadline
            remaining = (wake - workflow.now()).total_seconds()
            if remaining > 0:
                # The timer running out is not an outcome by itself; see below.
                with contextlib.suppress(TimeoutError):
                    # Why: pay, cancel, payment_received and extend_hold run while we wait
                    # here; each may end the hold early, or move its end.
                    await workflow.wait_condition(
                        functools.partial(self._hold_interrupted, deadline),
                        timeout=remaining,
                        timeout_summary=(
                            f"hold until {deadline.isoformat()}"
                            if wake == deadline
                            else f"remind the tenant at {wake.isoformat()}"
                        ),
                    )
            # Decide by what was accepted, not by which woke us: an accepted payment was on
            # time by construction (accepted only while now < hold_expires_at).
            if self._accepted is not None:
                payment, paid_at = self._accepted, self._accepted_at
                assert paid_at is not None
                try:
                    await self._step(
                        CONFIRM_BOOKING,
                        ConfirmRequest(self._input.booking_id, payment, paid_at),
                        summary=f"confirm payment {payment.payment_reference}",
                    )
                except ActivityError as err:
                    if not (
                        isinstance(err.cause, ApplicationError)
                        and err.cause.type == PaymentRejected.error_type
                    ):
                        raise
                    # The payment could not be applied (its reference is another booking's):
                    # the hold goes on and pay() reports the rejection.
                    self._confirm_error = err.cause
                    self._not_applied[payment.payment_reference] = err.cause.message
                    self._accepted = None
                    self._accepted_at = None
                    continue
                self._paid_reference = payment.payment_reference
                self._state.status = APPROVED
                self._state.paid_at = paid_at
                self._upsert_search_attributes()
                self._mailer.send()  # the receipt
                return APPROVED
            if self._cancel_requested:
                await self._release(TENANT_CANCELLED)
                return CANCELLED
            if self._extending:
                # Why wait: an extension accepted before the deadline is being written; the
                # hold ends at whichever deadline it leaves, never at the old one behind it.
                await workflow.wait_condition(lambda: not self._extending)
                continue
            expires = self._state.hold_expires_at
            assert expires is not None
            if workflow.now() < expires:
                # Woken with time left: the reminder's time, a refused confirm, a moved
                # deadline.
                await self._remind(expires)
                continue
            self._expiring = True
            await self._release(EXPIRED)
            self._mailer.send()  # the hold (or the offer) ran out
            return CANCELLED

    def _reminder_due(self, deadline: datetime) -> datetime | None:
        """When to remind the tenant of the hold ending at ``deadline``; None: not (again)."""
        if self._reminded == deadline or self._hold_started is None:
            return None
        at = hold_reminder_at(self._hold_started, deadline, self._reminder_seconds)
        if at is None or not self._mailer.enabled():
            return None
        return at

    async def _remind(self, deadline: datetime) -> None:
        """The hold ends soon: record it (the tenant's mail is written with it), once per
        deadline."""
        at = self._reminder_due(deadline)
        if at is None or workflow.now() < at:
            return
        self._reminded = deadline
        reminded: bool = await self._step(
            REMIND_HOLD,
            HoldReminder(self._input.booking_id, deadline),
            result_type=bool,
            summary=f"hold ends at {deadline.isoformat()}: remind the tenant",
            local=True,
        )
        if reminded:
            self._mailer.send()

    def _hold_interrupted(self, deadline: datetime) -> bool:
        return (
            self._accepted is not None
            or self._cancel_requested
            or self._state.hold_expires_at != deadline
        )

    async def _step(
        self,
        name: str,
        arg: Any,
        *,
        summary: str,
        result_type: type | None = None,
        schedule_to_close_timeout: timedelta | None = None,
        local: bool | None = None,
    ) -> Any:
        """Run one of the steps a caller waits on (reserve, confirm, release), or with
        ``local`` given, one that decides its own way (a lease's rent steps).

        As a local activity it runs inside the workflow task that asked for it: no activity
        task goes through the server and back, which is most of the time a reservation or a
        payment took (BENCHMARKS.md: reserve p50 96 -> 47 ms). It is as durable: its result
        is recorded with the task's completion, an attempt lost with its worker is run again
        (every step is idempotent), and retries follow the same policy.
        """
        options: dict[str, Any] = {
            "result_type": result_type,
            "start_to_close_timeout": ACTIVITY_TIMEOUT,
            "schedule_to_close_timeout": schedule_to_close_timeout,
            "retry_policy": ACTIVITY_RETRY,
            "summary": summary,
        }
        if not (self._local_steps if local is None else local):
            return await workflow.execute_activity(name, arg, **options)
        try:
            return await workflow.execute_local_activity(name, arg, **options)
        except (ApplicationError, TemporalTimeoutError) as err:
            # A local activity's final failure arrives bare, not wrapped in an ActivityError
            # as an ordinary activity's is (sdk-core issue 323); wrap it so that callers
            # handle both ways alike. Without this a refusal failed the whole execution.
            raise ActivityError(
                f"local activity {name} failed",
                scheduled_event_id=0,
                started_event_id=0,
                identity="",
                activity_type=name,
                activity_id="",
                retry_state=None,
            ) from err

    async def _lease(self) -> None:
        stay_start = _midnight(self._input.start_date)
        lease = is_lease(self._input.start_date, self._state.end_date)
        if (
            lease
            and stay_start > workflow.now()
            and workflow.patched(LEASE_INVOICES_AT_PAYMENT_PATCH)
        ):
            # A lease paid ahead shows (and may pay) its invoices from the payment on; written
            # in the payment's workflow task, as the payment's own confirm step is.
            self._schedule = await self._write_schedule(local=True)
        if stay_start > workflow.now() and workflow.patched(STAY_START_PATCH):
            # Why: payment_received keeps refunding duplicate payments, and pay_rent pays
            # invoices, while we wait.
            await workflow.sleep(
                stay_start - workflow.now(), summary=f"stay from {stay_start.isoformat()}"
            )
            await workflow.execute_activity(
                STAY_STARTED,
                StayStartRequest(self._input.booking_id, stay_start),
                result_type=bool,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary=f"stay in apartment {self._input.apartment_id} begins",
            )
        if (
            self._schedule is None
            and is_lease(self._input.start_date, self._state.end_date)
            and workflow.patched(LEASE_RENT_PATCH)
        ):
            self._schedule = await self._write_schedule()
        await self._live_out()
        await self._end_lease()

    async def _write_schedule(self, *, local: bool = False) -> RentSchedule:
        schedule: RentSchedule = await self._step(
            SCHEDULE_RENT,
            self._input.booking_id,
            result_type=RentSchedule,
            summary="write the lease's rent invoices",
            local=local,
        )
        return schedule

    async def _live_out(self) -> None:
        """Until the move-out day, collecting the rent of a lease; endLease and renewLease
        may move that day meanwhile (and a renewal may make a short stay a lease)."""
        while True:
            if self._schedule is not None:
                await self._collect_rent()
            else:
                lease_end = _midnight(self._state.end_date)
                if workflow.now() < lease_end:
                    # Why: payment_received keeps refunding duplicate payments, and a move
                    # of the end wakes us, while the stay runs.
                    with contextlib.suppress(TimeoutError):
                        await workflow.wait_condition(
                            functools.partial(self._rent_changed, self._rent_version),
                            timeout=lease_end - workflow.now(),
                            timeout_summary=f"lease until {lease_end.isoformat()}",
                        )
            # Why: a move of the end being written decides which end we have reached.
            await workflow.wait_condition(lambda: not self._moving)
            if workflow.now() >= _midnight(self._state.end_date):
                self._lease_ending = True
                return

    async def _end_lease(self) -> None:
        lease_end = _midnight(self._state.end_date)
        summary = f"end lease of apartment {self._input.apartment_id}"
        request = EndLeaseRequest(self._input.booking_id, lease_end)
        outcome: ReleaseOutcome | None = None
        if workflow.patched(WAITLIST_PATCH):
            outcome = await workflow.execute_activity(
                END_LEASE_AND_OFFER,
                request,
                result_type=ReleaseOutcome,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary=summary,
            )
        else:
            await workflow.execute_activity(
                END_LEASE,
                request,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary=summary,
            )
        self._state.lease_ended_at = lease_end
        self._upsert_search_attributes()
        if self._schedule is not None:
            workflow.upsert_search_attributes([RENT_STATUS.value_set("ENDED")])
        if outcome is not None:
            await self._hand_on(outcome)

    # -- the lease's rent ----------------------------------------------------------------------

    def _invoice(self, invoice_id: str) -> InvoiceState | None:
        schedule = self._schedule
        if schedule is None:
            return None
        return next((i for i in schedule.invoices if i.invoice_id == invoice_id), None)

    async def _collect_rent(self) -> None:
        """Each invoice's steps at their times until the move-out day: issued ``issue_days``
        before its due date, a reminder on it, OVERDUE with the late fee once ``grace_days``
        after, reminders every ``reminder_days`` while unpaid. A payment (pay_rent) ends an
        invoice's steps whenever it comes; the lease continues as new as its history grows."""
        schedule = self._schedule
        assert schedule is not None
        rules = rent.rules_of(schedule)
        self._publish_rent()
        while True:
            lease_end = _midnight(self._state.end_date)
            if workflow.info().get_current_history_length() >= LEASE_HISTORY_EVENTS:
                # Why wait: a pay_rent update still running must finish in this run, and
                # mail on its way with it (a run's activities end with the run).
                await self._mailer.settled()
                workflow.continue_as_new(
                    replace(self._input, lease=self._resume()),
                )
            now = workflow.now()
            steps: list[tuple[InvoiceState, str, datetime]] = []
            next_at = lease_end
            for invoice in schedule.invoices:
                if invoice.period_start >= self._state.end_date:
                    continue
                found = next_step(_clock(invoice), rules)
                if found is None:
                    continue
                at, step = found
                if at <= now:
                    steps.append((invoice, step, at))
                else:
                    next_at = min(next_at, at)
            for invoice, step, at in steps:
                await self._rent_step(invoice, step, at, rules)
            if steps:
                continue
            if now >= lease_end:
                return
            # Why: pay_rent may settle an invoice while we wait; its steps then stop.
            with contextlib.suppress(TimeoutError):
                await workflow.wait_condition(
                    functools.partial(self._rent_changed, self._rent_version),
                    timeout=next_at - now,
                    timeout_summary=f"rent, next step at {next_at.isoformat()}",
                )

    async def _rent_step(
        self, invoice: InvoiceState, step: str, at: datetime, rules: RentRules
    ) -> None:
        fee = rules.late_fee(invoice.rent) if step == rent.OVERDUE else 0
        if self._rent_local is None:
            # Decided once per run, at its first step, so that one run never mixes the ways.
            self._rent_local = workflow.patched(RENT_LOCAL_STEPS_PATCH)
        row: InvoiceState = await self._step(
            RENT_STEP,
            RentStepRequest(self._input.booking_id, invoice.invoice_id, step, at, fee),
            result_type=InvoiceState,
            summary=f"rent {step.lower()}: invoice {invoice.seq} due {invoice.due_date}",
            local=self._rent_local,
        )
        _take_row(invoice, row)
        self._mailer.send()
        if step == rent.DUE:
            invoice.reminded_due = True
        elif step in (rent.OVERDUE, rent.REMIND):
            invoice.reminded_due = True
            invoice.last_reminder = at
            invoice.reminders += 1
        self._publish_rent()

    def _rent_changed(self, seen: int) -> bool:
        return self._rent_version != seen

    def _publish_rent(self) -> None:
        """RentStatus and NextRentDue, when they change."""
        schedule = self._schedule
        assert schedule is not None
        open_ = [i for i in schedule.invoices if i.status in ("SCHEDULED", "ISSUED", "OVERDUE")]
        status = (
            "OVERDUE"
            if any(i.status == "OVERDUE" for i in open_)
            else "ISSUED"
            if any(i.status == "ISSUED" for i in open_)
            else "CURRENT"
        )
        due = min((i.due_date for i in open_), default=None)
        published = (status, due)
        if published == self._rent_published:
            return
        self._rent_published = published
        updates: list[SearchAttributeUpdate[Any]] = [RENT_STATUS.value_set(status)]
        updates.append(
            NEXT_RENT_DUE.value_set(_midnight(due)) if due else NEXT_RENT_DUE.value_unset()
        )
        workflow.upsert_search_attributes(updates)

    def _resume(self) -> LeaseResume:
        assert self._schedule is not None
        return LeaseResume(
            state=replace(self._state),
            schedule=self._schedule,
            references=[
                [ref, amount, currency] for ref, (amount, currency) in self._references.items()
            ],
            not_applied=dict(self._not_applied),
            paid_reference=self._paid_reference,
            mail=self._mailer.delivers,
        )

    def _restore(self, resume: LeaseResume) -> None:
        self._state = replace(resume.state)
        self._schedule = resume.schedule
        self._references = {str(r[0]): (int(r[1]), str(r[2])) for r in resume.references}
        self._not_applied = dict(resume.not_applied)
        self._paid_reference = resume.paid_reference
        self._mailer.delivers = resume.mail

    @workflow.query(name=RENT_INVOICES_QUERY)
    def rent_invoices(self) -> list[InvoiceState]:
        """The lease's invoices as this workflow knows them (booking doctor compares them
        with the rows); empty for a stay that collects no rent here."""
        return [] if self._schedule is None else list(self._schedule.invoices)

    @workflow.update
    async def pay_rent(self, payment: RentPaymentInput) -> InvoiceState:
        """Pay one of the lease's invoices (ahead of its time too); the same payment again
        answers the same PAID invoice."""
        invoice = self._invoice(payment.invoice_id)
        assert invoice is not None  # the validator saw it
        if invoice.status == "PAID":
            return replace(invoice)
        try:
            row = await self._pay_invoice(invoice, payment, workflow.now())
        except ActivityError as err:
            raise _refusal(err) from None
        self._paid_invoice(invoice, row)
        return replace(invoice)

    async def _pay_invoice(
        self, invoice: InvoiceState, payment: RentPaymentInput, paid_at: datetime
    ) -> InvoiceState:
        row: InvoiceState = await self._step(
            PAY_RENT,
            RentPaymentRequest(self._input.booking_id, payment, paid_at),
            result_type=InvoiceState,
            summary=f"rent paid: invoice {invoice.seq} by {payment.payment_reference}",
            local=False,
        )
        return row

    def _paid_invoice(self, invoice: InvoiceState, row: InvoiceState) -> None:
        _take_row(invoice, row)
        self._mailer.send()  # the receipt
        if row.payment_reference is not None:
            # A repeat of this payment by the webhook is the same money: nothing to do.
            self._references.setdefault(row.payment_reference, (row.amount_due, row.currency))
        self._rent_version += 1
        self._publish_rent()

    async def _rent_payment_received(self, payment: PaymentInput) -> None:
        """Rent the webhook took: it pays its invoice, or is recorded and refunded (a VOID
        invoice, one already paid, a wrong amount or currency, no such invoice)."""
        assert payment.invoice_id is not None
        invoice = self._invoice(payment.invoice_id)
        if invoice is None:
            await self._refund(payment, REFUND_NOT_AN_INVOICE)
            return
        problem = _invoice_problem(
            invoice, payment.amount, payment.currency, payment.payment_reference
        )
        if problem is not None:
            await self._refund(payment, problem[0])
            return
        rent_payment = RentPaymentInput(
            invoice.invoice_id,
            payment.amount,
            payment.currency,
            payment.payment_reference,
            payment.received_at,
        )
        try:
            row = await self._pay_invoice(invoice, rent_payment, _arrival(payment))
        except ActivityError:
            # Refused for good: its reference paid something else of this booking.
            await self._refund(payment, REFUND_REFERENCE_USED)
            return
        self._paid_invoice(invoice, row)

    # -- notice and renewal ----------------------------------------------------------------

    @workflow.update
    async def end_lease(self, change: LeaseEndInput) -> BookingState:
        """endLease: the stay ends on ``change.end_date`` (the validator checked the notice);
        the period it falls in costs its nights, later invoices are VOID, rent paid for nights
        given up is refunded, and the freed nights go to the waiting list."""
        return await self._move_end(change.end_date)

    @end_lease.validator
    def _validate_end_lease(self, change: LeaseEndInput) -> None:
        self._check_move(change, earlier=True)

    @workflow.update
    async def renew_lease(self, change: LeaseEndInput) -> BookingState:
        """renewLease: the stay runs until ``change.end_date`` when those nights are free (the
        move's activity decides, against the exclusion constraint), with invoices for them."""
        return await self._move_end(change.end_date)

    @renew_lease.validator
    def _validate_renew_lease(self, change: LeaseEndInput) -> None:
        self._check_move(change, earlier=False)

    def _check_move(self, change: LeaseEndInput, *, earlier: bool) -> None:
        problem = self._move_problem(change, earlier=earlier)
        if problem is not None:
            raise ApplicationError(problem, type=LeaseNotChangeable.error_type, non_retryable=True)

    def _move_problem(self, change: LeaseEndInput, *, earlier: bool) -> str | None:
        status = self._state.status
        if status != APPROVED:
            return f"booking is {status}, not a paid stay"
        if self._lease_ending or self._state.lease_ended_at is not None:
            return "the stay has ended"
        if self._moving:
            return "another change of this stay's end is being written; try again"
        end, start = self._state.end_date, self._input.start_date
        if not earlier:
            if change.end_date <= end:
                return f"endDate must be after the stay's end ({end}); endLease ends it earlier"
            return None
        if change.end_date >= end:
            return f"endDate must be before the stay's end ({end}); renewLease extends it"
        if change.end_date <= start:
            return f"endDate must be after the stay's first night ({start})"
        earliest = max(change.earliest, workflow.now().date())
        if change.end_date < earliest:
            return f"endDate must be {earliest} or later (the notice this caller must give)"
        return None

    async def _move_end(self, end_date: date) -> BookingState:
        # Why flag it: the run loop must not end the lease at the old end while the new one
        # is being written, and no second move may start meanwhile.
        self._moving = True
        try:
            moved: LeaseMove = await self._step(
                MOVE_LEASE_END,
                LeaseMoveRequest(self._input.booking_id, end_date, workflow.now()),
                result_type=LeaseMove,
                summary=f"stay ends {end_date.isoformat()} (was {self._state.end_date})",
                local=False,
            )
        except ActivityError as err:
            self._moving = False
            raise _refusal(err) from None
        self._state.end_date = end_date
        self._merge_invoices(moved)
        self._moving = False
        self._mailer.send()  # the stay's new end, and any refund
        self._rent_version += 1
        if moved.outcome is not None:
            # Why: the freed nights' next tenant gets its offer's execution now.
            await self._hand_on(moved.outcome)
        return self._snapshot()

    def _merge_invoices(self, moved: LeaseMove) -> None:
        """The invoices as the move left them, keeping what the workflow knows of each
        (reminders sent); a renewal into a lease brings its first invoices and rules."""
        if moved.invoices is None:
            return
        if self._schedule is None:
            if moved.schedule is None:
                return
            self._schedule = moved.schedule
        else:
            known = {i.invoice_id: i for i in self._schedule.invoices}
            merged: list[InvoiceState] = []
            for row in moved.invoices:
                mine = known.get(row.invoice_id)
                if mine is None:
                    merged.append(row)
                    continue
                _take_row(mine, row)
                merged.append(mine)
            self._schedule.invoices = merged
        self._publish_rent()

    @pay_rent.validator
    def _validate_pay_rent(self, payment: RentPaymentInput) -> None:
        invoice = self._invoice(payment.invoice_id)
        if invoice is None:
            raise ApplicationError(
                f"invoice {payment.invoice_id} is not one of this lease's (or the lease's "
                "invoices are still being written)",
                type=ValidationError.error_type,
                non_retryable=True,
            )
        if not payment.payment_reference.strip():
            raise ApplicationError(
                "paymentReference must not be empty", type=ValidationError.error_type
            )
        problem = _invoice_problem(
            invoice, payment.amount, payment.currency, payment.payment_reference
        )
        if problem is not None:
            raise ApplicationError(problem[1], type=PaymentRejected.error_type, non_retryable=True)

    async def _release(self, reason: str) -> None:
        summary = f"release apartment {self._input.apartment_id} ({reason})"
        request = ReleaseRequest(self._input.booking_id, reason, workflow.now())
        outcome: ReleaseOutcome | None = None
        if workflow.patched(WAITLIST_PATCH):
            outcome = await self._step(
                RELEASE_AND_OFFER, request, result_type=ReleaseOutcome, summary=summary
            )
            released = outcome.released
        else:
            released = await self._step(RELEASE_BOOKING, request, result_type=bool, summary=summary)
        if reason == RESERVATION_FAILED and not released:
            return
        self._state.status = CANCELLED
        self._state.cancellation_reason = reason
        self._upsert_search_attributes()
        if outcome is not None:
            await self._hand_on(outcome)

    async def _hand_on(self, outcome: ReleaseOutcome) -> None:
        """After a release or a lease's end: tell the entries it settled that they are over
        (this booking was an offer; entries passed over), and start the next tenant's offer."""
        settled = [SettledEntry(entry, LAPSED) for entry in outcome.lapsed_entries]
        if outcome.settled_entry is not None and outcome.settled_status is not None:
            settled.append(SettledEntry(outcome.settled_entry, outcome.settled_status))
        if settled or outcome.offer is not None:
            await self._tell_waitlist(HandOn(settled, outcome.offer))

    async def _tell_waitlist(self, request: HandOn) -> None:
        await workflow.execute_activity(
            HAND_ON,
            request,
            start_to_close_timeout=ACTIVITY_TIMEOUT,
            retry_policy=ACTIVITY_RETRY,
            summary="hand the apartment on to the waiting list",
        )

    async def _sweep_reservation(self) -> None:
        """Release whatever an abandoned reserve attempt committed; the status stays REJECTED."""
        # Why wait: an attempt Temporal gave up on may still be running on a worker; it
        # commits or rolls back within the delay. Handlers run meanwhile: the caller already
        # has its rejection, and payments for a REJECTED booking are refused or only logged.
        await workflow.sleep(RESERVE_SWEEP_DELAY, summary="let abandoned reserve attempts end")
        options: dict[str, Any] = {
            "start_to_close_timeout": ACTIVITY_TIMEOUT,
            "retry_policy": ACTIVITY_RETRY,
            "summary": f"release apartment {self._input.apartment_id} ({RESERVATION_FAILED})",
        }
        request = ReleaseRequest(self._input.booking_id, RESERVATION_FAILED, workflow.now())
        outcome: ReleaseOutcome | None = None
        try:
            if workflow.patched(WAITLIST_PATCH):
                outcome = await workflow.execute_activity(
                    RELEASE_AND_OFFER, request, result_type=ReleaseOutcome, **options
                )
                released = outcome.released
            else:
                released = await workflow.execute_activity(
                    RELEASE_BOOKING, request, result_type=bool, **options
                )
        except ActivityError as err:
            workflow.logger.error("sweep of booking %s failed: %s", self._input.booking_id, err)
            return
        if outcome is not None:
            await self._hand_on(outcome)
        if released:
            workflow.logger.warning(
                "released a hold of booking %s committed by an abandoned reserve attempt",
                self._input.booking_id,
            )

    def _reject(self, error_type: str, message: str) -> None:
        self._state.status = REJECTED
        self._state.error_type = error_type
        self._state.error_message = message
        self._upsert_search_attributes(initial=True)

    async def _finish(self) -> BookingState:
        # Why: an update or signal still running (a refund, a pay() waiting for its answer)
        # must complete before the execution closes, and mail on its way with it.
        await self._mailer.settled()
        return self._snapshot()

    def _upsert_search_attributes(self, *, initial: bool = False) -> None:
        updates: list[SearchAttributeUpdate[Any]] = [BOOKING_STATUS.value_set(self._state.status)]
        if initial:
            updates += [
                APARTMENT_ID.value_set(self._input.apartment_id),
                TENANT_ID.value_set(self._input.user_id),
            ]
            if self._state.hold_expires_at is not None and self._state.status == PENDING:
                updates.append(HOLD_EXPIRES_AT.value_set(self._state.hold_expires_at))
        workflow.upsert_search_attributes(updates)

    # -- payments ----------------------------------------------------------------------------

    def _hold_open(self, at: datetime | None = None) -> bool:
        expires = self._state.hold_expires_at
        return (
            self._state.status == PENDING
            and self._accepted is None
            and not self._cancel_requested
            and not self._expiring
            and expires is not None
            and (at or workflow.now()) < expires
        )

    def _payment_problem(
        self, payment: PaymentInput, at: datetime | None = None
    ) -> tuple[str, str, str] | None:
        """(error type, refund reason, message) when this payment cannot pay the booking at
        ``at`` (default: now)."""
        status = self._state.status
        if status in (RESERVING, REJECTED):
            return (
                PaymentRejected.error_type,
                REFUND_NOT_PENDING,
                f"booking is {status}, not PENDING",
            )
        if status == APPROVED or self._accepted is not None:
            return PaymentRejected.error_type, REFUND_ALREADY_PAID, "booking is already paid"
        if status == CANCELLED and self._state.cancellation_reason == EXPIRED:
            return BookingExpired.error_type, REFUND_LATE, "the hold is over"
        if status == CANCELLED or self._cancel_requested:
            return PaymentRejected.error_type, REFUND_NOT_PENDING, "booking is cancelled"
        if not self._hold_open(at):
            return BookingExpired.error_type, REFUND_LATE, "the hold is over"
        if payment.currency != self._state.currency:
            return (
                PaymentRejected.error_type,
                REFUND_WRONG_CURRENCY,
                f"currency must be {self._state.currency}, got {payment.currency}",
            )
        if payment.amount != self._state.amount_due:
            return (
                PaymentRejected.error_type,
                REFUND_WRONG_AMOUNT,
                f"amount must be {self._state.amount_due}, got {payment.amount}",
            )
        return None

    def _accept(self, payment: PaymentInput, at: datetime | None = None) -> None:
        self._accepted = payment
        self._accepted_at = at or workflow.now()
        self._confirm_error = None

    async def _refund(self, payment: PaymentInput, reason: str) -> None:
        received_at = workflow.now()
        self._not_applied[payment.payment_reference] = f"its payment was refunded ({reason})"
        try:
            await workflow.execute_activity(
                REFUND_PAYMENT,
                RefundRequest(self._input.booking_id, payment, reason, received_at),
                result_type=RefundResult,
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary=f"refund payment {payment.payment_reference} ({reason})",
            )
            self._mailer.send()
        except ActivityError as err:
            # A refund refused for good (its reference is another booking's) must not fail the
            # booking; it is logged for an operator.
            workflow.logger.error(
                "refund of %s not recorded: %s", payment.payment_reference, err.cause
            )

    async def _refund_unplaced(self, payment: PaymentInput) -> None:
        try:
            await workflow.execute_activity(
                REFUND_UNPLACED_PAYMENT,
                RefundRequest(self._input.booking_id, payment, REFUND_NOT_PLACED, workflow.now()),
                start_to_close_timeout=ACTIVITY_TIMEOUT,
                retry_policy=ACTIVITY_RETRY,
                summary=f"refund payment {payment.payment_reference} (booking never placed)",
            )
        except ActivityError as err:
            workflow.logger.error(
                "refund of unplaced payment %s not recorded: %s",
                payment.payment_reference,
                err.cause,
            )

    @workflow.signal
    async def payment_received(self, payment: PaymentInput) -> None:
        """A payment from an asynchronous source (a provider webhook); never rejected, only
        applied or refunded. A repeated reference changes nothing."""
        terms = self._references.get(payment.payment_reference)
        if payment.invoice_id is not None and terms is None:
            self._references[payment.payment_reference] = (payment.amount, payment.currency)
            await self._rent_payment_received(payment)
            return
        if terms is not None:
            if terms != (payment.amount, payment.currency):
                workflow.logger.warning(
                    "payment %s repeated with %d %s, first seen with %d %s: ignored",
                    payment.payment_reference,
                    payment.amount,
                    payment.currency,
                    *terms,
                )
            return
        self._references[payment.payment_reference] = (payment.amount, payment.currency)
        if self._state.status == RESERVING:
            # Why: a webhook can beat the reserve activity's answer; judge it once the hold
            # is known. (Otherwise judge it now, before later updates in this task run.)
            await workflow.wait_condition(lambda: self._state.status != RESERVING)
        if self._state.status == REJECTED:
            if workflow.patched(TRUTHFUL_PAYMENTS_PATCH):
                # Why: money for a booking that was never placed is never dropped.
                await self._refund_unplaced(payment)
            else:
                workflow.logger.error(
                    "payment %s for a booking that was never placed; no row to refund against",
                    payment.payment_reference,
                )
            return
        arrival = _arrival(payment)
        problem = self._payment_problem(payment, arrival)
        if problem is None:
            self._accept(payment, arrival)
            return
        await self._refund(payment, problem[1])

    @workflow.update
    async def pay(self, payment: PaymentInput) -> BookingState:
        reference = payment.payment_reference
        if reference in self._references:
            # Why: a repeat of an accepted payment answers like the first call, once settled.
            await workflow.wait_condition(
                lambda: self._accepted is None or self._state.status != PENDING
            )
            if self._paid_reference != reference and workflow.patched(TRUTHFUL_PAYMENTS_PATCH):
                # This reference did not pay the booking: say so, never a success-shaped
                # PENDING or someone else's APPROVED.
                why = self._not_applied.get(reference, "it did not pay this booking")
                raise ApplicationError(
                    f"payment reference {reference} was used before and {why}; "
                    "pay with a new paymentReference",
                    type=PaymentRejected.error_type,
                    non_retryable=True,
                )
            return self._snapshot()
        self._references[reference] = (payment.amount, payment.currency)
        problem = self._payment_problem(payment)
        if problem is not None:
            # Only reachable when another payment or a cancel won the same workflow task after
            # our validator ran: the money is taken, so it is refunded, and the caller told.
            await self._refund(payment, problem[1])
            raise ApplicationError(
                f"{problem[2]}; the payment is refunded", type=problem[0], non_retryable=True
            )
        self._accept(payment)
        # Why: the run loop confirms the payment; answer with its outcome.
        await workflow.wait_condition(
            lambda: self._state.status != PENDING or self._accepted is not payment
        )
        if self._state.status == APPROVED and self._state.paid_at is not None:
            return self._snapshot()
        error = self._confirm_error
        raise ApplicationError(
            error.message if error else f"payment not applied: booking is {self._state.status}",
            type=PaymentRejected.error_type,
            non_retryable=True,
        )

    @pay.validator
    def _validate_pay(self, payment: PaymentInput) -> None:
        terms = self._references.get(payment.payment_reference)
        if terms is not None:
            # A reference that did not pay is refused by the handler, saying why.
            refunded = payment.payment_reference in self._not_applied
            if terms != (payment.amount, payment.currency) and not refunded:
                # A repeat must be the same request: answering the first payment's outcome
                # to a different amount would say money was taken that was not.
                raise ApplicationError(
                    f"payment reference {payment.payment_reference} was used for "
                    f"{terms[0]} {terms[1]}; a repeat must carry the same amount and currency "
                    "(pay with a new paymentReference for a new payment)",
                    type=PaymentRejected.error_type,
                    non_retryable=True,
                )
            return
        if not payment.payment_reference.strip():
            raise ApplicationError(
                "paymentReference must not be empty", type=ValidationError.error_type
            )
        problem = self._payment_problem(payment)
        if problem is not None:
            raise ApplicationError(problem[2], type=problem[0], non_retryable=True)

    # -- extending the hold ------------------------------------------------------------------

    @workflow.update
    async def extend_hold(self, request: ExtendHoldInput) -> BookingState:
        """Move the hold's end ``seconds`` later than it is now set (the validator has checked
        that it may)."""
        current = self._state.hold_expires_at
        assert current is not None
        deadline = current + timedelta(seconds=request.seconds)
        extension = self._state.hold_extensions + 1
        # Why flag it: the run loop must not let the hold expire at the old deadline while
        # the new one is being written.
        self._extending = True
        try:
            applied: bool = await self._step(
                EXTEND_HOLD,
                ExtendHoldRequest(self._input.booking_id, deadline, extension),
                result_type=bool,
                summary=f"extend hold until {deadline.isoformat()}",
            )
        finally:
            self._extending = False
        if not applied:
            # Paid or cancelled while the extension was being written: nothing to extend.
            raise ApplicationError(
                f"the hold cannot be extended: the booking is {self._state.status}",
                type=HoldNotExtendable.error_type,
                non_retryable=True,
            )
        self._state.hold_expires_at = deadline
        self._state.hold_extensions = extension
        if self._state.status == PENDING:
            workflow.upsert_search_attributes([HOLD_EXPIRES_AT.value_set(deadline)])
        return self._snapshot()

    @extend_hold.validator
    def _validate_extend_hold(self, request: ExtendHoldInput) -> None:
        if not MIN_HOLD_SECONDS <= request.seconds <= MAX_HOLD_SECONDS:
            raise ApplicationError(
                f"seconds must be between {MIN_HOLD_SECONDS} and {MAX_HOLD_SECONDS}, "
                f"got {request.seconds}",
                type=ValidationError.error_type,
                non_retryable=True,
            )
        problem = self._extension_problem(request)
        if problem is not None:
            raise ApplicationError(
                f"the hold cannot be extended: {problem}",
                type=HoldNotExtendable.error_type,
                non_retryable=True,
            )

    def _extension_problem(self, request: ExtendHoldInput) -> str | None:
        status = self._state.status
        if status != PENDING:
            return f"the booking is {status}"
        if self._accepted is not None:
            return "a payment is being applied"
        if self._cancel_requested:
            return "the booking is being cancelled"
        if not self._hold_open():
            return "the hold is over"
        if self._extending:
            return "another extension is being applied; try again"
        if self._state.hold_extensions >= request.max_extensions:
            return (
                f"it was extended {self._state.hold_extensions} time(s), the most allowed "
                f"(BOOKING_MAX_HOLD_EXTENSIONS={request.max_extensions})"
            )
        expires, started = self._state.hold_expires_at, self._hold_started
        assert expires is not None and started is not None
        room = MAX_TOTAL_HOLD - (expires - started)
        if timedelta(seconds=request.seconds) > room:
            return (
                f"a hold lasts at most 24 h in all; this one can be extended by "
                f"{max(0, int(room.total_seconds()))} s more"
            )
        return None

    # -- cancel, hold, state ----------------------------------------------------------------

    @workflow.update
    async def cancel(self) -> BookingState:
        self._cancel_requested = True
        # Why: the run loop releases the apartment; answer once it has.
        await workflow.wait_condition(lambda: self._state.status != PENDING)
        if self._state.cancellation_reason == TENANT_CANCELLED:
            return self._snapshot()
        raise ApplicationError(
            f"booking is {self._state.status}",
            type=BookingNotCancellable.error_type,
            non_retryable=True,
        )

    @cancel.validator
    def _validate_cancel(self) -> None:
        if self._cancel_requested:
            return  # a repeated cancel joins the first
        if not self._hold_open():
            status = self._state.status
            if status != PENDING:
                why = f"it is {status}"
            elif self._accepted is not None:
                why = "a payment is being applied"
            else:
                why = "the hold is over"
            raise ApplicationError(
                f"booking cannot be cancelled: {why}",
                type=BookingNotCancellable.error_type,
                non_retryable=True,
            )

    @workflow.update
    async def wait_for_hold(self) -> BookingState:
        """Answer once the reserve step is decided: the hold (PENDING) or its rejection."""
        # Why: the reserve activity runs concurrently; this returns as soon as it answers.
        await workflow.wait_condition(lambda: self._state.status != RESERVING)
        if self._state.status == REJECTED:
            raise ApplicationError(
                self._state.error_message or "booking rejected",
                type=self._state.error_type,
                non_retryable=True,
            )
        return self._snapshot()

    @workflow.query
    def state(self) -> BookingState:
        return self._snapshot()

    def _snapshot(self) -> BookingState:
        return replace(self._state)
