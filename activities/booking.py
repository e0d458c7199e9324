"""Activities of ApartmentBookingWorkflow and WaitlistEntryWorkflow: every database write of a
booking and of a waiting list.

Each activity is one transaction and idempotent by booking id (or payment reference): a retry
after a commit whose answer was lost finds its work done and reports it again. Constraint and
data errors are permanent (non-retryable ``ApplicationError``); anything else (a lost
connection, a restarting server, a serialization failure) propagates so Temporal retries it.
Every status change appends a ``booking_events`` row in the same transaction; the bookings
and waitlist triggers announce it with ``pg_notify``.

The waiting list: a release (``release_and_offer``) or a lease's end (``end_lease_and_offer``)
locks the apartment's row, then gives the apartment to the first WAITING entry in the same
transaction (its booking row inserted PENDING, the entry OFFERED), so the apartment never
shows VACANT while someone waits; ``join_waitlist`` takes the same row lock (shared), so a
join and a release are ordered: the join either is seen by the release or sees VACANT.

Every attempt is bounded inside the database (:class:`AttemptBounds`): it commits within
``AttemptBounds.total`` of its start or not at all. Temporal does not cancel an attempt that
runs past its ``start_to_close_timeout`` (these activities do not heartbeat), so without the
bound a slow attempt the workflow has given up on could still commit later. A lock or
statement timeout is transient: it becomes a retryable ``DatabaseBusy`` error. (A COMMIT cut
short in flight is the one outcome nobody can know; the workflow's sweep after a failed reserve
covers it.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.db_errors import permanent_db_errors
from booking.contract import (
    ACTIVITY_TIMEOUT,
    APPROVED,
    BOOKED,
    CANCELLED,
    CONFIRM_BOOKING,
    END_LEASE,
    END_LEASE_AND_OFFER,
    EXTEND_HOLD,
    HAND_ON,
    JOIN_WAITLIST,
    LAPSED,
    LEAVE_WAITLIST,
    LEFT,
    PENDING,
    REFUND_PAYMENT,
    REFUND_UNPLACED_PAYMENT,
    RELEASE_AND_OFFER,
    RELEASE_BOOKING,
    RESERVE_APARTMENT,
    TENANT_CANCELLED,
    WAITING,
    BookingInput,
    ConfirmRequest,
    EndLeaseRequest,
    ExtendHoldRequest,
    HandOn,
    JoinResult,
    LeaveResult,
    Offer,
    RefundRequest,
    RefundResult,
    ReleaseOutcome,
    ReleaseRequest,
    Reservation,
    ReserveRequest,
    WaitlistJoin,
    amount_due,
    reserve_rejection_details,
    waitlist_workflow_id_for,
)
from booking.errors import (
    ApartmentNotFound,
    ApartmentUnavailable,
    BookingNotCancellable,
    BookingNotFound,
    HoldLimitReached,
    PaymentRejected,
    UserNotFound,
    ValidationError,
    WaitlistEntryNotFound,
)
from booking.offers import hand_on, offer_next, settle_entry
from booking.store import bookings as store
from booking.store import waitlist as waitlist_store

# Even if code above were wrong, the partial unique index refuses a second open booking.
_RESERVE_CONSTRAINTS = {
    "bookings_one_active_per_apartment": (
        ApartmentUnavailable.error_type,
        "the apartment is held or let by another booking",
    ),
    "bookings_user_id_fkey": (UserNotFound.error_type, "the user does not exist"),
    "bookings_apartment_id_fkey": (ApartmentNotFound.error_type, "the apartment does not exist"),
    "bookings_check": (ValidationError.error_type, "endDate must be after startDate"),
}
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
_PAYMENT_CONSTRAINTS = {
    "payments_booking_reference_key": (
        PaymentRejected.error_type,
        "this paymentReference was already used for this booking",
    )
}


@dataclass(frozen=True)
class AttemptBounds:
    """How long one activity attempt may spend in the database.

    ``total`` covers waiting for a pooled connection and the whole transaction; it is well
    under the workflow's ``start_to_close_timeout`` so that, by the time Temporal starts a
    retry, the attempt before it has committed or rolled back for good.
    """

    acquire: timedelta = timedelta(seconds=2)
    lock: timedelta = timedelta(seconds=3)
    statement: timedelta = timedelta(seconds=3)
    total: timedelta = timedelta(seconds=9)

    def __post_init__(self) -> None:
        if not self.lock <= self.total < ACTIVITY_TIMEOUT:
            raise ValueError("attempt bounds must satisfy lock <= total < ACTIVITY_TIMEOUT")


# A lock wait or statement cut short by the bounds: the same attempt later may well succeed.
# Retryable, so it never reaches a client; the workflow's retry policy takes it.
DATABASE_BUSY = "DatabaseBusy"
_BUSY = (TimeoutError, asyncpg.LockNotAvailableError, asyncpg.QueryCanceledError)


def _permanent(message: str, error_type: str) -> ApplicationError:
    return ApplicationError(message, type=error_type, non_retryable=True)


def _ms(span: timedelta) -> int:
    return max(1, int(span.total_seconds() * 1000))


@dataclass(frozen=True)
class BookingPolicy:
    """The rules of the worker's settings that its activities apply (``Settings`` defaults).

    ``max_holds_per_tenant``: a tenant's open holds at once (None: no limit); offers of the
    waiting list are not refused by it (the tenant queued for them before).
    ``waitlist_offer_seconds``: how long an offer holds the apartment for its tenant.
    """

    max_holds_per_tenant: int | None = 3
    waitlist_offer_seconds: int = 86_400


class BookingActivities:
    """Handed the pool once; each method is one short, bounded transaction."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        bounds: AttemptBounds | None = None,
        policy: BookingPolicy | None = None,
    ) -> None:
        self._pool = pool
        self._bounds = bounds or AttemptBounds()
        self._policy = policy or BookingPolicy()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[PoolConnectionProxy[asyncpg.Record]]:
        """A pooled connection for one attempt, given up (rolled back) after ``total``."""
        bounds = self._bounds
        try:
            async with asyncio.timeout(bounds.total.total_seconds()):
                async with self._pool.acquire(timeout=bounds.acquire.total_seconds()) as conn:
                    yield conn
        except _BUSY as exc:
            raise ApplicationError(
                f"database busy ({exc.__class__.__name__}): attempt given up, will retry",
                type=DATABASE_BUSY,
            ) from exc

    @asynccontextmanager
    async def _transaction(self, conn: PoolConnectionProxy[asyncpg.Record]) -> AsyncIterator[None]:
        async with conn.transaction():
            await store.bound_transaction(
                conn,
                lock_timeout_ms=_ms(self._bounds.lock),
                statement_timeout_ms=_ms(self._bounds.statement),
            )
            yield

    @activity.defn(name=RESERVE_APARTMENT)
    async def reserve_apartment(self, request: ReserveRequest) -> Reservation:
        try:
            return await self._reserve(request)
        except ApplicationError as err:
            if not err.non_retryable:
                raise
            # Tell the workflow which attempt refused: a refusal after a retry may hide an
            # earlier attempt's commit, which the workflow then sweeps up.
            raise ApplicationError(
                err.message,
                reserve_rejection_details(err.details, activity.info().attempt),
                type=err.type,
                non_retryable=True,
            ) from err

    async def _reserve(self, request: ReserveRequest) -> Reservation:
        booking = request.booking
        async with self._connection() as conn:
            if booking.step_function_arn is not None:
                # Outside the reservation's transaction: an execution whose hold was refused
                # is still an execution the tutorial's getStepFunctions lists.
                await store.record_step_function_execution(
                    conn, request.workflow_id, booking.step_function_arn
                )
            with permanent_db_errors(
                "booking not placed",
                error_type=ValidationError.error_type,
                by_constraint=_RESERVE_CONSTRAINTS,
            ):
                async with self._transaction(conn):
                    existing = await store.get_booking(conn, booking.booking_id)
                    if existing is not None:
                        # A retry of our own commit, or an offer the waiting list placed.
                        return _existing_reservation(existing, request)
                    await self._check_hold_limit(conn, booking.user_id)
                    terms = await store.reserve_vacant_apartment(conn, booking.apartment_id)
                    if terms is None:
                        # Read again: the update may have waited on the lock of another attempt
                        # of this same booking (one Temporal gave up on but did not stop), and
                        # this statement sees what that attempt committed.
                        mine = await store.get_booking(conn, booking.booking_id)
                        if mine is not None:
                            return _existing_reservation(mine, request)
                        status = await store.apartment_status(conn, booking.apartment_id)
                        if status is None:
                            raise _permanent(
                                f"apartment {booking.apartment_id} does not exist",
                                ApartmentNotFound.error_type,
                            )
                        raise _permanent(
                            f"apartment {booking.apartment_id} is {status}, not VACANT",
                            ApartmentUnavailable.error_type,
                        )
                    due = amount_due(terms.monthly_rent, booking.start_date, booking.end_date)
                    await store.insert_booking(
                        conn,
                        booking,
                        workflow_id=request.workflow_id,
                        amount_due=due,
                        currency=terms.currency,
                        hold_expires_at=request.hold_expires_at,
                    )
                    await store.append_event(
                        conn,
                        booking.booking_id,
                        None,
                        PENDING,
                        "RESERVED",
                        {"holdExpiresAt": request.hold_expires_at.isoformat()},
                    )
        return Reservation(due, terms.currency, request.hold_expires_at, True)

    async def _check_hold_limit(self, conn: PoolConnectionProxy[asyncpg.Record], user: str) -> None:
        """Refuse a tenant's (N+1)-th open hold, counting under the user's row lock.

        The lock orders one tenant's concurrent reserves: each counts what the ones before it
        committed, so N at most get through, whoever reserves in the tenant's name.
        """
        if not await store.lock_user(conn, user):
            raise _permanent(f"user {user} does not exist", UserNotFound.error_type)
        limit = self._policy.max_holds_per_tenant
        if limit is None:
            return
        held = await store.pending_holds(conn, user)
        if held >= limit:
            raise _permanent(
                f"tenant {user} already holds {held} apartment(s), the most at once "
                f"(BOOKING_MAX_HOLDS_PER_TENANT={limit}); pay for or cancel one first",
                HoldLimitReached.error_type,
            )

    @activity.defn(name=CONFIRM_BOOKING)
    async def confirm_booking(self, request: ConfirmRequest) -> None:
        """PENDING -> APPROVED with its APPLIED payment; apartment RESERVED -> OCCUPIED."""
        payment = request.payment
        async with self._connection() as conn:
            with permanent_db_errors(
                "payment not applied",
                error_type=PaymentRejected.error_type,
                by_constraint=_PAYMENT_CONSTRAINTS,
            ):
                async with self._transaction(conn):
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None:
                        raise _permanent(
                            f"booking {request.booking_id} does not exist",
                            BookingNotFound.error_type,
                        )
                    if booking.booking_status == APPROVED:
                        return  # an earlier attempt committed
                    if booking.booking_status != PENDING:
                        raise _permanent(
                            f"booking is {booking.booking_status}, not PENDING",
                            PaymentRejected.error_type,
                        )
                    await store.approve_booking(conn, booking.id, request.paid_at)
                    await store.insert_payment(
                        conn,
                        booking_id=booking.id,
                        reference=payment.payment_reference,
                        amount=payment.amount,
                        currency=payment.currency,
                        outcome="APPLIED",
                        received_at=request.paid_at,
                    )
                    if not await store.occupy_apartment(
                        conn, booking.apartment_id, booking.user_id
                    ):
                        # The hold's RESERVED mark was changed behind the workflow's back.
                        raise _permanent(
                            f"apartment {booking.apartment_id} is no longer RESERVED",
                            ApartmentUnavailable.error_type,
                        )
                    await store.append_event(
                        conn,
                        booking.id,
                        PENDING,
                        APPROVED,
                        "PAID",
                        {"paymentReference": payment.payment_reference},
                    )
                    # A booking the waiting list offered: its entry is BOOKED.
                    await settle_entry(conn, booking.id, BOOKED, "PAID")

    @activity.defn(name=RELEASE_BOOKING)
    async def release_booking(self, request: ReleaseRequest) -> bool:
        """PENDING -> CANCELLED(reason); apartment RESERVED -> VACANT. False: nothing to do."""
        async with self._connection() as conn:
            with permanent_db_errors("booking not released"):
                async with self._transaction(conn):
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None or booking.booking_status == CANCELLED:
                        return False  # never reserved, or an earlier attempt committed
                    if booking.booking_status != PENDING:
                        raise _permanent(
                            f"booking is {booking.booking_status}, not PENDING",
                            BookingNotCancellable.error_type,
                        )
                    await store.cancel_booking(conn, booking.id, request.reason)
                    await store.release_reserved_apartment(conn, booking.apartment_id)
                    await store.append_event(conn, booking.id, PENDING, CANCELLED, request.reason)
        return True

    @activity.defn(name=RELEASE_AND_OFFER)
    async def release_and_offer(self, request: ReleaseRequest) -> ReleaseOutcome:
        """PENDING -> CANCELLED(reason), then the apartment to the first tenant waiting for it
        (an offer: a PENDING booking in the tenant's name), or VACANT when nobody waits.

        A booking that was itself an offer settles its entry: LAPSED when it expired, LEFT
        when the tenant cancelled it. A retry after a commit answers what the commit did.
        """
        async with self._connection() as conn:
            with permanent_db_errors("booking not released"):
                async with self._transaction(conn):
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None:
                        return ReleaseOutcome(False)
                    if booking.booking_status == CANCELLED:
                        return await _earlier_outcome(conn, booking.id, request.reason)
                    if booking.booking_status != PENDING:
                        raise _permanent(
                            f"booking is {booking.booking_status}, not PENDING",
                            BookingNotCancellable.error_type,
                        )
                    # The apartment first: a join waits for this transaction, or is seen by it.
                    terms = await store.lock_apartment(conn, booking.apartment_id)
                    await store.cancel_booking(conn, booking.id, request.reason)
                    settled = LEFT if request.reason == TENANT_CANCELLED else LAPSED
                    entry = await settle_entry(conn, booking.id, settled, request.reason)
                    at = request.released_at or datetime.now(UTC)
                    offer, lapsed = await offer_next(
                        conn, booking.apartment_id, terms, at, self._policy.waitlist_offer_seconds
                    )
                    if offer is None:
                        await store.release_reserved_apartment(conn, booking.apartment_id)
                    outcome = ReleaseOutcome(
                        True, offer, entry, settled if entry is not None else None, lapsed
                    )
                    await store.append_event(
                        conn,
                        booking.id,
                        PENDING,
                        CANCELLED,
                        request.reason,
                        _outcome_details(outcome),
                    )
        return outcome

    @activity.defn(name=END_LEASE_AND_OFFER)
    async def end_lease_and_offer(self, request: EndLeaseRequest) -> ReleaseOutcome:
        """Record the lease end; the apartment goes to the first tenant waiting, or VACANT."""
        async with self._connection() as conn:
            with permanent_db_errors("lease end not recorded"):
                async with self._transaction(conn):
                    booking = await _lease_to_end(conn, request.booking_id)
                    if booking is None:
                        return await _earlier_outcome(conn, request.booking_id, "LEASE_ENDED")
                    terms = await store.lock_apartment(conn, booking.apartment_id)
                    await store.end_lease(conn, booking.id, request.ended_at)
                    offer: Offer | None = None
                    lapsed: list[str] = []
                    # Only the tenant's own lease hands the apartment on (an admin may have
                    # let it to someone else meanwhile).
                    if await store.occupied_by(conn, booking.apartment_id, booking.user_id):
                        offer, lapsed = await offer_next(
                            conn,
                            booking.apartment_id,
                            terms,
                            request.ended_at,
                            self._policy.waitlist_offer_seconds,
                        )
                    if offer is None:
                        await store.vacate_after_lease(conn, booking.apartment_id, booking.user_id)
                    outcome = ReleaseOutcome(True, offer, lapsed_entries=lapsed)
                    await store.append_event(
                        conn,
                        booking.id,
                        APPROVED,
                        APPROVED,
                        "LEASE_ENDED",
                        _outcome_details(outcome),
                    )
        return outcome

    @activity.defn(name=EXTEND_HOLD)
    async def extend_hold(self, request: ExtendHoldRequest) -> bool:
        """Move a PENDING booking's hold to ``hold_expires_at``; False: it is not PENDING."""
        async with self._connection() as conn:
            with permanent_db_errors("hold not extended"):
                async with self._transaction(conn):
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None:
                        raise _permanent(
                            f"booking {request.booking_id} does not exist",
                            BookingNotFound.error_type,
                        )
                    if booking.booking_status != PENDING:
                        return False
                    if booking.hold_expires_at == request.hold_expires_at:
                        return True  # an earlier attempt committed
                    await store.extend_hold(conn, booking.id, request.hold_expires_at)
                    previous = booking.hold_expires_at
                    await store.append_event(
                        conn,
                        booking.id,
                        PENDING,
                        PENDING,
                        "HOLD_EXTENDED",
                        {
                            "from": previous.isoformat() if previous else None,
                            "to": request.hold_expires_at.isoformat(),
                            "extension": request.extension,
                        },
                    )
        return True

    @activity.defn(name=JOIN_WAITLIST)
    async def join_waitlist(self, join: WaitlistJoin) -> JoinResult:
        """A WAITING entry at the end of the apartment's list, or the tenant's live one."""
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
                    status = await store.apartment_status_for_share(conn, join.apartment_id)
                    if status is None:
                        raise _permanent(
                            f"apartment {join.apartment_id} does not exist",
                            ApartmentNotFound.error_type,
                        )
                    if status == "VACANT":
                        raise _permanent(
                            f"apartment {join.apartment_id} is VACANT: reserve it instead",
                            ValidationError.error_type,
                        )
                    live = await waitlist_store.live_entry(conn, join.apartment_id, join.user_id)
                    if live is not None:
                        return JoinResult(live, False)
                    if await store.active_holder(conn, join.apartment_id) == join.user_id:
                        raise _permanent(
                            f"apartment {join.apartment_id} is already held or let by "
                            f"{join.user_id}",
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
                        raise _permanent(
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

    @activity.defn(name=REFUND_PAYMENT)
    async def refund_payment(self, request: RefundRequest) -> RefundResult:
        """Record a payment that cannot be applied as REFUNDED, with its refunds row.

        The seam to a real payment provider: a provider call would go here, keyed by the
        refund id so that a retry never refunds twice.
        """
        payment = request.payment
        async with self._connection() as conn:
            with permanent_db_errors("refund not recorded"):
                async with self._transaction(conn):
                    existing = await store.get_payment_by_reference(
                        conn, request.booking_id, payment.payment_reference
                    )
                    if existing is None:
                        payment_id = await store.insert_payment(
                            conn,
                            booking_id=request.booking_id,
                            reference=payment.payment_reference,
                            amount=payment.amount,
                            currency=payment.currency,
                            outcome="REFUNDED",
                            received_at=request.received_at,
                        )
                    else:  # an earlier attempt recorded it
                        payment_id = existing.id
                    refund_id, created = await store.insert_refund(
                        conn,
                        payment_id=payment_id,
                        booking_id=request.booking_id,
                        amount=payment.amount,
                        currency=payment.currency,
                        reason=request.reason,
                    )
        return RefundResult(payment_id, refund_id, created)

    @activity.defn(name=REFUND_UNPLACED_PAYMENT)
    async def refund_unplaced_payment(self, request: RefundRequest) -> bool:
        """Record (and refund) money that reached a booking which was never placed.

        There is no booking row to attach it to, so it goes to ``unplaced_payments``; an
        operator (or a provider integration, at this seam) refunds it from there. False when
        an earlier attempt recorded it already.
        """
        payment = request.payment
        async with self._connection() as conn:
            with permanent_db_errors("unplaced payment not recorded"):
                async with self._transaction(conn):
                    return await store.insert_unplaced_payment(
                        conn,
                        booking_id=request.booking_id,
                        reference=payment.payment_reference,
                        amount=payment.amount,
                        currency=payment.currency,
                        received_at=payment.received_at or request.received_at,
                        reason=request.reason,
                    )

    @activity.defn(name=END_LEASE)
    async def end_lease(self, request: EndLeaseRequest) -> None:
        """Record the lease end; the tenant's apartment goes back to VACANT."""
        async with self._connection() as conn:
            with permanent_db_errors("lease end not recorded"):
                async with self._transaction(conn):
                    booking = await _lease_to_end(conn, request.booking_id)
                    if booking is None:
                        return  # an earlier attempt committed
                    await store.end_lease(conn, booking.id, request.ended_at)
                    await store.vacate_after_lease(conn, booking.apartment_id, booking.user_id)
                    await store.append_event(conn, booking.id, APPROVED, APPROVED, "LEASE_ENDED")

    def all(self) -> list[Callable[..., Any]]:
        """The bound activity methods, for ``Worker(activities=...)``."""
        return [
            self.reserve_apartment,
            self.confirm_booking,
            self.release_booking,
            self.refund_payment,
            self.refund_unplaced_payment,
            self.end_lease,
            self.release_and_offer,
            self.end_lease_and_offer,
            self.extend_hold,
            self.hand_on_waitlist,
            self.join_waitlist,
            self.leave_waitlist,
        ]


def _existing_reservation(existing: store.BookingRow, request: ReserveRequest) -> Reservation:
    """A booking row with this id exists: a retry of our own commit, or an id reused."""
    if (
        existing.booking_status == PENDING
        and existing.workflow_id == request.workflow_id
        and existing.apartment_id == request.booking.apartment_id
        and existing.hold_expires_at is not None
    ):
        return Reservation(existing.amount_due, existing.currency, existing.hold_expires_at, False)
    raise _permanent(
        f"booking {existing.id} was already placed and is {existing.booking_status}; "
        "a new booking needs a new idempotency key",
        ValidationError.error_type,
    )


async def _lease_to_end(
    conn: PoolConnectionProxy[asyncpg.Record], booking_id: str
) -> store.BookingRow | None:
    """The APPROVED booking whose lease is to end, its row locked; None: it has ended already
    (an earlier attempt committed)."""
    booking = await store.get_booking(conn, booking_id, for_update=True)
    if booking is None:
        raise _permanent(f"booking {booking_id} does not exist", BookingNotFound.error_type)
    if booking.lease_ended_at is not None:
        return None
    if booking.booking_status != APPROVED:
        raise _permanent(
            f"booking is {booking.booking_status}, not APPROVED", ValidationError.error_type
        )
    return booking


def _outcome_details(outcome: ReleaseOutcome) -> dict[str, Any]:
    """What a release did, in its event row, for a retry to answer the same."""
    details: dict[str, Any] = {}
    if outcome.offer is not None:
        booking = outcome.offer.booking
        details["offer"] = {
            "bookingId": booking.booking_id,
            "userId": booking.user_id,
            "startDate": booking.start_date.isoformat(),
            "endDate": booking.end_date.isoformat(),
            "holdSeconds": booking.hold_seconds,
            "waitlistEntryId": booking.waitlist_entry_id,
            "holdExpiresAt": outcome.offer.hold_expires_at.isoformat(),
        }
    if outcome.settled_entry is not None:
        details["settledEntry"] = {"id": outcome.settled_entry, "status": outcome.settled_status}
    if outcome.lapsed_entries:
        details["lapsedEntries"] = outcome.lapsed_entries
    return details


async def _earlier_outcome(
    conn: PoolConnectionProxy[asyncpg.Record], booking_id: str, reason: str
) -> ReleaseOutcome:
    """What the attempt that committed did (a retry after its answer was lost)."""
    details = await store.event_details(conn, booking_id, reason)
    if details is None:
        return ReleaseOutcome(False)  # released some other way (an older step, doctor)
    booking = await store.get_booking(conn, booking_id)
    assert booking is not None
    offer = None
    if "offer" in details:
        o = details["offer"]
        offer = Offer(
            BookingInput(
                booking_id=o["bookingId"],
                apartment_id=booking.apartment_id,
                user_id=o["userId"],
                start_date=date.fromisoformat(o["startDate"]),
                end_date=date.fromisoformat(o["endDate"]),
                hold_seconds=o["holdSeconds"],
                waitlist_entry_id=o["waitlistEntryId"],
            ),
            datetime.fromisoformat(o["holdExpiresAt"]),
        )
    settled = details.get("settledEntry") or {}
    return ReleaseOutcome(
        True, offer, settled.get("id"), settled.get("status"), details.get("lapsedEntries", [])
    )
