"""The booking workflow's contract: what the API, the workflow, its activities and the bench share.

``workflows.booking`` holds the workflow itself; this module holds everything the other
rooms must agree on with it, and nothing that runs:

- names: the workflow type, its ids (``booking-<booking id>``), the activity names;
- the statuses and reasons a booking moves through;
- the dataclasses that travel through Temporal (the workflow's input and state, a payment,
  and each activity's request and result), all plain and deterministic;
- :func:`booking_problem`, the one check of a booking's input, which the API runs before it
  starts a workflow and the workflow runs again on what it was started with.

It imports nothing from the project but the error names, so every room may import it.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

from temporalio.common import SearchAttributePair, TypedSearchAttributes

from booking.errors import (
    ApartmentNotFound,
    ApartmentUnavailable,
    HoldLimitReached,
    UserNotFound,
    ValidationError,
)
from booking.search_attributes import APARTMENT_ID, BOOKING_STATUS, HOLD_EXPIRES_AT, TENANT_ID

WORKFLOW_TYPE: Final = "ApartmentBookingWorkflow"

# -- statuses and reasons ------------------------------------------------------------------
# BookingState.status: the booking's own PENDING / APPROVED / CANCELLED, plus two that exist
# only in the workflow (no booking row): RESERVING (the reserve step has not answered yet)
# and REJECTED (no hold was placed; error_type / error_message say why).
RESERVING: Final = "RESERVING"
PENDING: Final = "PENDING"
APPROVED: Final = "APPROVED"
CANCELLED: Final = "CANCELLED"
REJECTED: Final = "REJECTED"

# bookings.cancellation_reason
EXPIRED: Final = "EXPIRED"
TENANT_CANCELLED: Final = "TENANT_CANCELLED"
RESERVATION_FAILED: Final = "RESERVATION_FAILED"

# waitlist_entries.status
WAITING: Final = "WAITING"
OFFERED: Final = "OFFERED"
BOOKED: Final = "BOOKED"
LAPSED: Final = "LAPSED"
LEFT: Final = "LEFT"
WAITLIST_LIVE: Final = frozenset({WAITING, OFFERED})

# refunds.reason
REFUND_LATE: Final = "HOLD_OVER"
REFUND_WRONG_AMOUNT: Final = "WRONG_AMOUNT"
REFUND_WRONG_CURRENCY: Final = "WRONG_CURRENCY"
REFUND_ALREADY_PAID: Final = "ALREADY_PAID"
REFUND_NOT_PENDING: Final = "NOT_PENDING"
REFUND_NOT_PLACED: Final = "NEVER_PLACED"
# Money for an invoice that cannot take it (VOID, already paid, wrong amount, no such invoice).
REFUND_INVOICE_VOID: Final = "INVOICE_VOID"
REFUND_NOT_AN_INVOICE: Final = "NOT_AN_INVOICE"
REFUND_REFERENCE_USED: Final = "REFERENCE_USED"  # unplaced_payments.refund_reason

# -- activities ------------------------------------------------------------------------------
# The workflow calls its activities by these names; ``activities.BookingActivities`` registers them.
RESERVE_APARTMENT: Final = "reserve_apartment"
CONFIRM_BOOKING: Final = "confirm_booking"
RELEASE_BOOKING: Final = "release_booking"
REFUND_PAYMENT: Final = "refund_payment"
REFUND_UNPLACED_PAYMENT: Final = "refund_unplaced_payment"
END_LEASE: Final = "end_lease"
# Since the waiting list (WAITLIST_PATCH): a release or a lease's end that offers the
# apartment to the first tenant waiting for it, in the same transaction.
RELEASE_AND_OFFER: Final = "release_and_offer"
END_LEASE_AND_OFFER: Final = "end_lease_and_offer"
EXTEND_HOLD: Final = "extend_hold"
# Since the calendar (STAY_START_PATCH): a paid stay booked ahead tells subscribers when its
# first night comes (the apartment's status for that day changes).
STAY_STARTED: Final = "stay_started"
# WaitlistEntryWorkflow's activities.
JOIN_WAITLIST: Final = "join_waitlist"
LEAVE_WAITLIST: Final = "leave_waitlist"
WAITLIST_WORKFLOW_TYPE: Final = "WaitlistEntryWorkflow"
# Tells entries' workflows how they ended and starts an offer's booking workflow.
HAND_ON: Final = "hand_on_waitlist"
# A lease's rent (LEASE_RENT_PATCH): its invoices written, each invoice's steps, a rent payment.
SCHEDULE_RENT: Final = "schedule_rent"
RENT_STEP: Final = "rent_step"
PAY_RENT: Final = "pay_rent"
# endLease and renewLease: the stay's end moves, its invoices follow, freed nights handed on.
MOVE_LEASE_END: Final = "move_lease_end"
# The booking workflow's query of its lease's invoices as it knows them (booking doctor).
RENT_INVOICES_QUERY: Final = "rent_invoices"
# Mail to tenants (MAIL_PATCH): the hold-ending reminder recorded, and the notifications a
# booking's (or a waiting-list entry's) transitions wrote, sent.
REMIND_HOLD: Final = "remind_hold"
SEND_MAIL: Final = "send_mail"
ENTRY_SETTLED_SIGNAL: Final = "settled"

# One attempt of any activity; ``activities.base.AttemptBounds`` keeps every attempt's
# database work well inside it.
ACTIVITY_TIMEOUT: Final = timedelta(seconds=15)

# Reserve refusals the caller of ``wait_for_hold`` sees by type (no booking row exists).
RESERVE_REJECTIONS: Final = frozenset(
    {
        ApartmentUnavailable.error_type,
        ApartmentNotFound.error_type,
        ValidationError.error_type,
        UserNotFound.error_type,
        HoldLimitReached.error_type,
    }
)

MIN_HOLD_SECONDS: Final = 1
MAX_HOLD_SECONDS: Final = 24 * 60 * 60
# A hold is never longer than this in all, extensions included.
MAX_TOTAL_HOLD: Final = timedelta(seconds=MAX_HOLD_SECONDS)
# Ids, payment references and idempotency keys: at most this long, no control characters.
MAX_TEXT_LENGTH: Final = 200
# Larger than any rent in minor units; keeps amounts inside Postgres bigint.
MAX_AMOUNT: Final = 10**12
_CURRENCY = re.compile(r"^[A-Z]{3}$")

# Each source of derived booking ids has a namespace of its own, so that no choice of
# strings in one can produce an id of the other (a user named "waitlist-offer" whose
# idempotency key is an entry's id once took that entry's future offer id).
_BOOKING_ID_NAMESPACE = uuid.UUID("6f1d6a52-5d1b-4f0e-9a57-2b0c1f5e8a11")
_OFFER_ID_NAMESPACE = uuid.UUID("0b8f3e4c-7a2d-4c55-8e1f-93d6a4b7c210")
_ATTEMPT = "attempt"


# -- what travels through Temporal ---------------------------------------------------------


@dataclass
class BookingInput:
    """The workflow's input: one booking as the caller asked for it."""

    booking_id: str
    apartment_id: str
    user_id: str
    start_date: date
    end_date: date
    hold_seconds: int
    idempotency_key: str | None = None
    step_function_arn: str | None = None
    # Set on a booking the waiting list offered (its row was inserted by the release that
    # made the offer): the entry this booking settles, whose workflow is told when it does.
    waitlist_entry_id: str | None = None
    # Set when a lease's execution continued as new: what it carries into the next run.
    lease: LeaseResume | None = None


@dataclass
class PaymentInput:
    amount: int  # minor units
    currency: str  # ISO 4217
    payment_reference: str
    # When our own edge (the webhook endpoint) took the money, by its clock. A signal can
    # wait in Temporal while no worker runs; judging it by this time instead of the time
    # the workflow gets to it means a tenant who paid before the deadline keeps the
    # apartment even if every worker was down at that moment. Never set from client input.
    received_at: datetime | None = None
    # Set when the payment is for one of a lease's rent invoices (the webhook's invoiceId).
    invoice_id: str | None = None


@dataclass
class BookingState:
    """What the workflow answers (its result, its query, its updates)."""

    booking_id: str
    workflow_id: str
    apartment_id: str
    user_id: str
    status: str  # RESERVING | PENDING | APPROVED | CANCELLED | REJECTED
    amount_due: int | None
    currency: str | None
    hold_expires_at: datetime | None
    paid_at: datetime | None
    cancellation_reason: str | None
    lease_ended_at: datetime | None
    start_date: date
    end_date: date
    error_type: str | None = None  # REJECTED only
    error_message: str | None = None
    hold_extensions: int = 0  # how often extendHold moved the hold


@dataclass
class ReserveRequest:
    """``reserve_apartment``: place the hold for ``booking`` until ``hold_expires_at``."""

    booking: BookingInput
    workflow_id: str
    hold_expires_at: datetime


@dataclass
class Reservation:
    amount_due: int
    currency: str
    hold_expires_at: datetime
    created: bool  # False: an earlier attempt had already committed it
    # How long before the hold's end the tenant is reminded (the worker's
    # BOOKING_HOLD_REMINDER_SECONDS; 0 or None: never), and whether the worker delivers mail
    # (BOOKING_SMTP_HOST set). Answered by the worker so that the workflow keeps them in its
    # history.
    reminder_seconds: int | None = None
    mail: bool = False


@dataclass
class ConfirmRequest:
    booking_id: str
    payment: PaymentInput
    paid_at: datetime


@dataclass
class ReleaseRequest:
    booking_id: str
    reason: str  # EXPIRED | TENANT_CANCELLED | RESERVATION_FAILED
    # The workflow's clock at the release (release_and_offer times an offer's hold from it);
    # None in requests of executions older than the waiting list.
    released_at: datetime | None = None


@dataclass
class RefundRequest:
    booking_id: str
    payment: PaymentInput
    reason: str
    received_at: datetime


@dataclass
class RefundResult:
    payment_id: int
    refund_id: int
    created: bool


@dataclass
class EndLeaseRequest:
    booking_id: str
    ended_at: datetime


@dataclass
class StayStartRequest:
    booking_id: str
    started_at: datetime


@dataclass
class ExtendHoldInput:
    """The ``extend_hold`` update: move the hold ``seconds`` later than it is now set.

    ``max_extensions`` is the API's ``BOOKING_MAX_HOLD_EXTENSIONS`` when it asked.
    """

    seconds: int
    max_extensions: int


@dataclass
class ExtendHoldRequest:
    """``extend_hold`` activity: the booking's hold now ends at ``hold_expires_at``."""

    booking_id: str
    hold_expires_at: datetime
    extension: int  # 1 for the first extension, ...


@dataclass
class Offer:
    """A hold the waiting list placed: its booking (row already inserted) and its entry."""

    booking: BookingInput
    hold_expires_at: datetime


@dataclass
class ReleaseOutcome:
    """What ``release_and_offer`` / ``end_lease_and_offer`` did."""

    released: bool  # False: nothing to do (an earlier attempt committed, or never reserved)
    offer: Offer | None = None  # the apartment went to the first tenant waiting for it
    # The waiting-list entry this booking settled (it was an offer), and how: LAPSED or LEFT.
    settled_entry: str | None = None
    settled_status: str | None = None
    # Entries passed over because their stay had begun (now LAPSED).
    lapsed_entries: list[str] = field(default_factory=list)


@dataclass
class SettledEntry:
    entry_id: str
    status: str  # BOOKED | LAPSED | LEFT


@dataclass
class HandOn:
    """The ``hand_on_waitlist`` activity: tell ``settled`` entries' workflows that they are
    over, and start the booking workflow of ``offer`` (its row is already in place)."""

    settled: list[SettledEntry]
    offer: Offer | None = None


@dataclass
class WaitlistJoin:
    """WaitlistEntryWorkflow's input: a tenant asks to be offered an apartment."""

    entry_id: str
    apartment_id: str
    user_id: str
    start_date: date
    end_date: date


@dataclass
class WaitlistState:
    """What WaitlistEntryWorkflow answers; the entry itself is read from its row."""

    entry_id: str
    status: str  # JOINING | WAITING | OFFERED | BOOKED | LAPSED | LEFT | REJECTED
    # The live entry this join found instead (the tenant was already on the list).
    existing_entry_id: str | None = None
    offered_booking_id: str | None = None
    error_type: str | None = None
    error_message: str | None = None


@dataclass
class JoinResult:
    entry_id: str  # the new entry, or the tenant's live one already on this list
    created: bool
    mail: bool = False  # the worker delivers mail (see Reservation.mail)


@dataclass
class LeaveResult:
    status: str  # the entry's status after leaving (LEFT), or as it stood (OFFERED, ...)
    offered_booking_id: str | None


@dataclass
class EntrySettled:
    """Signal to WaitlistEntryWorkflow: the entry is over (BOOKED, LAPSED or LEFT)."""

    status: str


# -- ids -------------------------------------------------------------------------------------


def workflow_id_for(booking_id: str) -> str:
    return f"booking-{booking_id}"


def waitlist_workflow_id_for(entry_id: str) -> str:
    return f"waitlist-{entry_id}"


def offer_booking_id_for(entry_id: str) -> str:
    """The booking an entry's offer makes: the same on every retry of the release."""
    return str(uuid.uuid5(_OFFER_ID_NAMESPACE, entry_id))


def booking_id_for(user_id: str, idempotency_key: str | None) -> str:
    """Same user and key -> same booking id (so a retried reserve joins the first).

    One (user, key) pair per id: neither may hold a control character (the API refuses them
    in keys, and in a token's ``sub``), so the NUL between them cannot be forged.
    """
    if idempotency_key is None:
        return str(uuid.uuid4())
    return str(uuid.uuid5(_BOOKING_ID_NAMESPACE, f"{user_id}\x00{idempotency_key}"))


# -- the one check of a booking's input ----------------------------------------------------


@dataclass(frozen=True)
class StayLimits:
    """How far ahead a stay may start and how long it may be (from the API's settings)."""

    today: date
    max_stay_days: int
    max_advance_days: int


def text_problem(name: str, value: str) -> str | None:
    """Why ``value`` cannot be an id, a payment reference or an idempotency key, or None."""
    if not value.strip():
        return f"{name} must not be empty"
    if len(value) > MAX_TEXT_LENGTH:
        return f"{name} must be at most {MAX_TEXT_LENGTH} characters"
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in value):
        return f"{name} must not contain control characters"
    return None


def booking_problem(input: BookingInput, limits: StayLimits | None = None) -> str | None:
    """Why this booking cannot be attempted, or None.

    The API calls it with the configured :class:`StayLimits` before it starts a workflow; the
    workflow calls it without (its checks must not depend on a configuration that may differ
    between the worker that started an execution and the one that replays it).
    """
    if not MIN_HOLD_SECONDS <= input.hold_seconds <= MAX_HOLD_SECONDS:
        return (
            f"holdSeconds must be between {MIN_HOLD_SECONDS} and {MAX_HOLD_SECONDS}, "
            f"got {input.hold_seconds}"
        )
    if input.end_date <= input.start_date:
        return "endDate must be after startDate"
    texts = [
        ("bookingId", input.booking_id),
        ("apartmentId", input.apartment_id),
        ("userId", input.user_id),
    ]
    if input.idempotency_key is not None:
        texts.append(("idempotencyKey", input.idempotency_key))
    for name, value in texts:
        problem = text_problem(name, value)
        if problem is not None:
            return problem
    if limits is None:
        return None
    return stay_problem(input.start_date, input.end_date, limits)


def stay_problem(start: date, end: date, limits: StayLimits) -> str | None:
    """Why the nights ``[start, end)`` cannot be a stay booked today, or None (a reserve and
    a search of free apartments ask the same)."""
    if end <= start:
        return "endDate must be after startDate"
    if start < limits.today:
        return "startDate must not be in the past"
    if (start - limits.today).days > limits.max_advance_days:
        return (
            f"startDate must be at most {limits.max_advance_days} days ahead "
            "(BOOKING_MAX_ADVANCE_DAYS)"
        )
    if (end - start).days > limits.max_stay_days:
        return f"a stay may last at most {limits.max_stay_days} days (BOOKING_MAX_STAY_DAYS)"
    return None


# A stay this long or longer pays one month's rent to confirm; shorter ones a share of it.
MONTH_NIGHTS: Final = 30


def amount_due(monthly_rent: int, start_date: date, end_date: date) -> int:
    """What paying a hold costs, in minor units: the product rule.

    Paying confirms the booking, so the payment is the first month's rent: one monthly rent
    for a stay of :data:`MONTH_NIGHTS` nights or more (a lease's later months are its rent
    invoices, ``booking.rent``), and for a shorter stay the rent of its nights,
    ``monthly_rent * nights / 30``, rounded up to the minor unit.
    """
    nights = (end_date - start_date).days
    if nights >= MONTH_NIGHTS:
        return monthly_rent
    return -(-monthly_rent * nights // MONTH_NIGHTS)


def payment_problem(payment: PaymentInput) -> str | None:
    """Why ``payment`` cannot be a payment at all (whatever booking it is for), or None."""
    amount = payment.amount
    # bool is an int in Python; true is not an amount.
    if isinstance(amount, bool) or not isinstance(amount, int):
        return "amount must be an integer (minor units)"
    if not 0 < amount <= MAX_AMOUNT:
        return f"amount must be between 1 and {MAX_AMOUNT} (minor units)"
    if not isinstance(payment.currency, str) or not _CURRENCY.match(payment.currency):
        return "currency must be an ISO 4217 code such as EUR"
    return text_problem("paymentReference", payment.payment_reference)


def start_search_attributes(
    input: BookingInput, hold_expires_at: datetime | None
) -> TypedSearchAttributes:
    """Search attributes for the start call, so that a booking is listable from its first moment."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(BOOKING_STATUS, RESERVING),
        SearchAttributePair(APARTMENT_ID, input.apartment_id),
        SearchAttributePair(TENANT_ID, input.user_id),
    ]
    if hold_expires_at is not None:
        pairs.append(SearchAttributePair(HOLD_EXPIRES_AT, hold_expires_at))
    return TypedSearchAttributes(pairs)


# -- between the workflow and its reserve activity -----------------------------------------


def reserve_rejection_details(details: Sequence[Any], attempt: int) -> dict[str, Any]:
    """Details of a refused reserve: the refusal's own (a dict, if any) and which attempt it was."""
    base = details[0] if details and isinstance(details[0], dict) else {}
    return {**base, _ATTEMPT: attempt}


def refusing_attempt(details: Sequence[Any]) -> int | None:
    """The attempt that refused, or None when the activity did not say (an older worker)."""
    if details and isinstance(details[0], dict):
        attempt = details[0].get(_ATTEMPT)
        if isinstance(attempt, int):
            return attempt
    return None


# -- a lease's rent (booking.rent) ----------------------------------------------------------


@dataclass
class InvoiceState:
    """One rent invoice as the lease's workflow tracks it (the row has the rest)."""

    invoice_id: str
    seq: int
    period_start: date
    period_end: date
    due_date: date
    rent: int
    late_fee: int
    currency: str
    status: str  # SCHEDULED | ISSUED | PAID | OVERDUE | VOID
    reminded_due: bool = False
    last_reminder: datetime | None = None
    payment_reference: str | None = None
    reminders: int = 0  # sent while overdue (booking.rent.RentRules.max_reminders at most)

    @property
    def amount_due(self) -> int:
        return self.rent + self.late_fee


@dataclass
class RentSchedule:
    """What ``schedule_rent`` answers: the lease's invoices and the rules it follows (taken
    from the worker's settings once, so that replay never reads configuration)."""

    invoices: list[InvoiceState]
    issue_days: int
    grace_days: int
    reminder_days: int
    late_fee_flat: int
    late_fee_percent: int


@dataclass
class RentStepRequest:
    booking_id: str
    invoice_id: str
    step: str  # booking.rent.ISSUE | DUE | OVERDUE | REMIND
    at: datetime
    late_fee: int = 0


@dataclass
class RentPaymentInput:
    """payRent, or the webhook's payment of an invoice."""

    invoice_id: str
    amount: int
    currency: str
    payment_reference: str
    received_at: datetime | None = None


@dataclass
class RentPaymentRequest:
    booking_id: str
    payment: RentPaymentInput
    paid_at: datetime


@dataclass
class LeaseEndInput:
    """endLease / renewLease as the workflow's updates take them: the new move-out day, and
    the earliest one this caller may choose (today for staff, the notice period for a
    tenant: the API knows who asks and its settings)."""

    end_date: date
    earliest: date


@dataclass
class LeaseMoveRequest:
    booking_id: str
    end_date: date
    at: datetime


@dataclass
class LeaseMove:
    """What moving a lease's end did: the lease's invoices as they now stand (None: it has
    none), and for an earlier end the hand-over of the freed nights."""

    invoices: list[InvoiceState] | None
    outcome: ReleaseOutcome | None = None
    refunded: int = 0  # paid rent given back for nights the lease no longer has
    # The lease's rules, when this move gave it its first invoices (a renewal into a lease).
    schedule: RentSchedule | None = None


@dataclass
class LeaseResume:
    """What a lease's execution carries across continue-as-new (its history stays bounded)."""

    state: BookingState
    schedule: RentSchedule
    # Payment references seen, as [reference, amount, currency], and why some did not pay.
    references: list[list[Any]]
    not_applied: dict[str, str]
    paid_reference: str | None
    mail: bool = False  # the lease's tenant is mailed (Reservation.mail, when it was placed)


@dataclass
class HoldReminder:
    """Record that the hold ending at ``hold_expires_at`` is about to end (once)."""

    booking_id: str
    hold_expires_at: datetime


@dataclass
class MailRequest:
    """Send what is pending for a booking, or (``booking_id`` None) for a waiting-list entry."""

    booking_id: str | None = None
    waitlist_entry_id: str | None = None


def hold_reminder_at(
    hold_started: datetime, hold_expires_at: datetime, reminder_seconds: int | None
) -> datetime | None:
    """When to remind the tenant of a hold ending at ``hold_expires_at``: ``reminder_seconds``
    before it, and only for a hold that lasts more than twice that (a five-minute hold gets
    no "five minutes left"); None: no reminder."""
    if not reminder_seconds:
        return None
    lead = timedelta(seconds=reminder_seconds)
    if hold_expires_at - hold_started <= 2 * lead:
        return None
    return hold_expires_at - lead
