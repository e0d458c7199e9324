"""Holds: placing one (reserve), moving its end (extend), and ending it unpaid (release).

A release hands the apartment to the first tenant waiting for it in the same transaction
(``booking.offers``); a retry after the commit answers what the commit did.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import asyncpg
from asyncpg.pool import PoolConnectionProxy
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.base import (
    ActivityBase,
    earlier_outcome,
    locked_booking,
    outcome_details,
    permanent,
)
from activities.db_errors import permanent_db_errors
from booking.calendar import Stay, let_outside_message, taken_message
from booking.contract import (
    CANCELLED,
    EXTEND_HOLD,
    LAPSED,
    LEFT,
    PENDING,
    RELEASE_AND_OFFER,
    RELEASE_BOOKING,
    REMIND_HOLD,
    RESERVE_APARTMENT,
    TENANT_CANCELLED,
    BookingInput,
    ExtendHoldRequest,
    HoldReminder,
    ReleaseOutcome,
    ReleaseRequest,
    Reservation,
    ReserveRequest,
    amount_due,
    reserve_rejection_details,
)
from booking.errors import (
    ApartmentNotFound,
    ApartmentUnavailable,
    BookingNotCancellable,
    HoldLimitReached,
    UserNotFound,
    ValidationError,
)
from booking.offers import offer_next, settle_entry
from booking.store import bookings as store

# Even if code above were wrong, the exclusion constraint refuses a second live stay on a night.
_RESERVE_CONSTRAINTS = {
    "bookings_no_overlapping_stays": (
        ApartmentUnavailable.error_type,
        "another stay holds some of these nights",
    ),
    "bookings_user_id_fkey": (UserNotFound.error_type, "the user does not exist"),
    "bookings_apartment_id_fkey": (ApartmentNotFound.error_type, "the apartment does not exist"),
    "bookings_check": (ValidationError.error_type, "endDate must be after startDate"),
}


class HoldActivities(ActivityBase):
    """The hold's own writes: reserve, extend, release."""

    @activity.defn(name=RESERVE_APARTMENT)
    async def reserve_apartment(self, request: ReserveRequest) -> Reservation:
        try:
            reservation = await self._reserve(request)
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
        policy = self._policy
        return replace(reservation, reminder_seconds=policy.hold_reminder_seconds, mail=policy.mail)

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
                try:
                    return await self._place_hold(conn, request)
                except (asyncpg.UniqueViolationError, asyncpg.ExclusionViolationError):
                    # The insert waited on another transaction's row and lost to it: another
                    # attempt of this same booking (one Temporal gave up on but did not stop),
                    # or another tenant's stay. Read again, outside the failed transaction.
                    mine = await store.get_booking(conn, booking.booking_id)
                    if mine is not None:
                        return _existing_reservation(mine, request)
                    raise

    async def _place_hold(
        self, conn: PoolConnectionProxy[asyncpg.Record], request: ReserveRequest
    ) -> Reservation:
        booking = request.booking
        async with self._transaction(conn):
            # The tenant's row lock orders one tenant's concurrent reserves: each counts
            # the holds the ones before it committed, so N at most get through.
            if not await store.lock_user(conn, booking.user_id):
                raise permanent(f"user {booking.user_id} does not exist", UserNotFound.error_type)
            # One round trip for every check; read after the lock, so it sees what the
            # tenant's earlier reserves committed.
            facts = await store.reservation_facts(conn, booking)
            if facts.placed:
                # A retry of our own commit, or an offer the waiting list placed.
                mine = await store.get_booking(conn, booking.booking_id)
                assert mine is not None
                return _existing_reservation(mine, request)
            self._check_hold_limit(booking.user_id, facts.held)
            terms = _rent_terms(booking, facts.terms)
            # A read, not a lock: two reserves of overlapping ranges that both read "free" meet
            # at the insert, where the exclusion constraint lets one through; disjoint ranges of
            # one apartment go through side by side.
            if facts.clash is not None:
                raise _unavailable(booking, facts.clash)
            due = amount_due(terms.monthly_rent, booking.start_date, booking.end_date)
            await store.insert_booking(
                conn,
                booking,
                workflow_id=request.workflow_id,
                amount_due=due,
                currency=terms.currency,
                hold_expires_at=request.hold_expires_at,
                monthly_rent=terms.monthly_rent,
                reason="RESERVED",
                details={"holdExpiresAt": request.hold_expires_at.isoformat()},
            )
        return Reservation(due, terms.currency, request.hold_expires_at, True)

    def _check_hold_limit(self, user: str, held: int) -> None:
        """Refuse a tenant's (N+1)-th open hold (``held``: counted under the user's lock)."""
        limit = self._policy.max_holds_per_tenant
        if limit is not None and held >= limit:
            raise permanent(
                f"tenant {user} already holds {held} apartment(s), the most at once "
                f"(BOOKING_MAX_HOLDS_PER_TENANT={limit}); pay for or cancel one first",
                HoldLimitReached.error_type,
            )

    @activity.defn(name=EXTEND_HOLD)
    async def extend_hold(self, request: ExtendHoldRequest) -> bool:
        """Move a PENDING booking's hold to ``hold_expires_at``; False: it is not PENDING."""
        async with self._connection() as conn:
            with permanent_db_errors("hold not extended"):
                async with self._transaction(conn):
                    booking = await locked_booking(conn, request.booking_id)
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

    @activity.defn(name=REMIND_HOLD)
    async def remind_hold(self, request: HoldReminder) -> bool:
        """Record, once, that the hold ending at ``hold_expires_at`` ends soon (its tenant's
        mail is written with it). False: the hold is no longer that one (paid, ended, moved)."""
        at = request.hold_expires_at.isoformat()
        async with self._connection() as conn:
            with permanent_db_errors("hold reminder not recorded"):
                async with self._transaction(conn):
                    booking = await locked_booking(conn, request.booking_id)
                    if (
                        booking.booking_status != PENDING
                        or booking.hold_expires_at != request.hold_expires_at
                    ):
                        return False
                    earlier = await store.event_details(conn, booking.id, "HOLD_ENDING")
                    if earlier is not None and earlier.get("holdExpiresAt") == at:
                        return True  # an earlier attempt committed
                    await store.append_event(
                        conn, booking.id, PENDING, PENDING, "HOLD_ENDING", {"holdExpiresAt": at}
                    )
        return True

    @activity.defn(name=RELEASE_BOOKING)
    async def release_booking(self, request: ReleaseRequest) -> bool:
        """PENDING -> CANCELLED(reason): its nights are free again. False: nothing to do."""
        async with self._connection() as conn:
            with permanent_db_errors("booking not released"):
                async with self._transaction(conn):
                    booking = await store.get_booking(conn, request.booking_id, for_update=True)
                    if booking is None or booking.booking_status == CANCELLED:
                        return False  # never reserved, or an earlier attempt committed
                    if booking.booking_status != PENDING:
                        raise permanent(
                            f"booking is {booking.booking_status}, not PENDING",
                            BookingNotCancellable.error_type,
                        )
                    await store.cancel_booking(conn, booking.id, request.reason)
                    await store.append_event(conn, booking.id, PENDING, CANCELLED, request.reason)
        return True

    @activity.defn(name=RELEASE_AND_OFFER)
    async def release_and_offer(self, request: ReleaseRequest) -> ReleaseOutcome:
        """PENDING -> CANCELLED(reason), then the freed nights to the first tenant waiting for a
        range they now make free (an offer: a PENDING booking in the tenant's name).

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
                        return await earlier_outcome(conn, booking.id, request.reason)
                    if booking.booking_status != PENDING:
                        raise permanent(
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
                        conn, booking, terms, at, self._policy.waitlist_offer_seconds
                    )
                    outcome = ReleaseOutcome(
                        True, offer, entry, settled if entry is not None else None, lapsed
                    )
                    await store.append_event(
                        conn,
                        booking.id,
                        PENDING,
                        CANCELLED,
                        request.reason,
                        outcome_details(outcome),
                    )
        return outcome


def _rent_terms(booking: BookingInput, terms: store.RentTerms | None) -> store.RentTerms:
    if terms is None:
        raise permanent(
            f"apartment {booking.apartment_id} does not exist", ApartmentNotFound.error_type
        )
    if terms.let_outside:
        raise permanent(let_outside_message(booking.apartment_id), ApartmentUnavailable.error_type)
    return terms


def _unavailable(booking: BookingInput, clash: Stay) -> ApplicationError:
    return permanent(
        taken_message(booking.apartment_id, clash, booking.start_date, booking.end_date),
        ApartmentUnavailable.error_type,
    )


def _existing_reservation(existing: store.BookingRow, request: ReserveRequest) -> Reservation:
    """A booking row with this id exists: a retry of our own commit, or an id reused."""
    if (
        existing.booking_status == PENDING
        and existing.workflow_id == request.workflow_id
        and existing.apartment_id == request.booking.apartment_id
        and existing.hold_expires_at is not None
    ):
        return Reservation(existing.amount_due, existing.currency, existing.hold_expires_at, False)
    raise permanent(
        f"booking {existing.id} was already placed and is {existing.booking_status}; "
        "a new booking needs a new idempotency key",
        ValidationError.error_type,
    )
