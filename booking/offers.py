"""The waiting list's hand-over: offering freed nights to the first tenant waiting for them.

An entry asks for a range of nights. When a stay is released, the first WAITING entry (in
joining order) among those asking for some of the freed nights whose whole range is now free
gets an offer; the others keep their place.

One function for every way nights are freed, so that none of them can forget the
waiting list: a hold released or a lease ended (the worker's activities) and the repairs of
``booking doctor``. Each runs inside the caller's transaction, with the apartment's row
already locked, and writes the offer (a PENDING booking in the tenant's name, its entry
OFFERED, the events) or nothing; starting the offer's booking workflow and telling entries'
workflows is the caller's next step, after the commit.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from booking.contract import (
    ENTRY_SETTLED_SIGNAL,
    LAPSED,
    OFFERED,
    WAITING,
    WORKFLOW_TYPE,
    BookingInput,
    EntrySettled,
    HandOn,
    Offer,
    amount_due,
    offer_booking_id_for,
    start_search_attributes,
    waitlist_workflow_id_for,
    workflow_id_for,
)
from booking.store import Conn
from booking.store import bookings as store
from booking.store import calendar as calendar_store
from booking.store import waitlist as waitlist_store


class Nights(Protocol):
    """The nights a release freed: a booking row, or any range of an apartment."""

    @property
    def apartment_id(self) -> str: ...
    @property
    def start_date(self) -> date: ...
    @property
    def end_date(self) -> date: ...


@dataclass(frozen=True)
class FreedNights:
    """Nights of an apartment a stay no longer has (its end moved earlier)."""

    apartment_id: str
    start_date: date
    end_date: date


async def offer_next(
    conn: Conn,
    freed: Nights,
    terms: store.RentTerms | None,
    now: datetime,
    offer_seconds: int,
) -> tuple[Offer | None, list[str]]:
    """Offer the nights ``freed`` released (of an apartment whose row the caller has locked,
    reading its ``terms``) to the first tenant waiting for a range they make free: its whole
    range must now be free of live stays. Its hold is timed from ``now`` and lasts
    ``offer_seconds``.

    Entries that asked for some of these nights but whose range is still partly taken keep
    their place. An entry whose stay has already begun can no longer be booked: it lapses (its
    id is returned with the offer, for its workflow to be told).
    """
    lapsed: list[str] = []
    apartment_id = freed.apartment_id
    if terms is None or terms.let_outside:
        return None, lapsed
    for entry in await waitlist_store.waiting_for(
        conn, apartment_id, freed.start_date, freed.end_date
    ):
        if entry.start_date < now.date():
            await waitlist_store.set_status(conn, entry.id, WAITING, LAPSED)
            await store.append_event(
                conn, None, WAITING, LAPSED, "STAY_STARTED", waitlist_entry_id=entry.id
            )
            lapsed.append(entry.id)
            continue
        if await calendar_store.live_overlap(conn, apartment_id, entry.start_date, entry.end_date):
            continue  # still partly taken: the entry keeps its place
        return await _offer(conn, entry, terms, now, offer_seconds), lapsed
    return None, lapsed


async def _offer(
    conn: Conn,
    entry: waitlist_store.WaitlistRow,
    terms: store.RentTerms,
    now: datetime,
    offer_seconds: int,
) -> Offer:
    """The entry's range as a PENDING booking in its tenant's name, the entry OFFERED."""
    booking = BookingInput(
        booking_id=offer_booking_id_for(entry.id),
        apartment_id=entry.apartment_id,
        user_id=entry.user_id,
        start_date=entry.start_date,
        end_date=entry.end_date,
        hold_seconds=offer_seconds,
        waitlist_entry_id=entry.id,
    )
    hold_expires_at = now + timedelta(seconds=offer_seconds)
    await store.insert_booking(
        conn,
        booking,
        workflow_id=workflow_id_for(booking.booking_id),
        amount_due=amount_due(terms.monthly_rent, entry.start_date, entry.end_date),
        currency=terms.currency,
        hold_expires_at=hold_expires_at,
        monthly_rent=terms.monthly_rent,
        reason="WAITLIST_OFFER",
        details={"holdExpiresAt": hold_expires_at.isoformat(), "waitlistEntryId": entry.id},
    )
    await waitlist_store.set_status(
        conn, entry.id, WAITING, OFFERED, offered_booking_id=booking.booking_id
    )
    await store.append_event(
        conn,
        booking.booking_id,
        WAITING,
        OFFERED,
        "OFFERED",
        {"holdExpiresAt": hold_expires_at.isoformat()},
        waitlist_entry_id=entry.id,
    )
    return Offer(booking, hold_expires_at)


async def settle_entry(conn: Conn, booking_id: str, status: str, reason: str) -> str | None:
    """OFFERED -> ``status`` for the entry whose offer this booking was; its id, or None."""
    entry = await waitlist_store.entry_offered(conn, booking_id)
    if entry is None:
        return None
    await waitlist_store.set_status(conn, entry.id, OFFERED, status)
    await store.append_event(conn, booking_id, OFFERED, status, reason, waitlist_entry_id=entry.id)
    return entry.id


async def hand_on(client: Client, task_queue: str, request: HandOn) -> None:
    """After the commit: tell the settled entries' workflows how they ended, and start the
    offer's booking workflow on ``task_queue``.

    Both are idempotent: an entry's workflow already gone is fine (its row says how it ended),
    and an offer already started is left running.
    """
    for settled in request.settled:
        handle = client.get_workflow_handle(waitlist_workflow_id_for(settled.entry_id))
        try:
            await handle.signal(ENTRY_SETTLED_SIGNAL, EntrySettled(settled.status))
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
    offer = request.offer
    if offer is None:
        return
    booking = offer.booking
    # Started before only on a repeat of this step.
    with contextlib.suppress(WorkflowAlreadyStartedError):
        await client.start_workflow(
            WORKFLOW_TYPE,
            booking,
            id=workflow_id_for(booking.booking_id),
            task_queue=task_queue,
            search_attributes=start_search_attributes(booking, offer.hold_expires_at),
            static_summary=(
                f"waiting-list offer: apartment {booking.apartment_id} for {booking.user_id}"
            ),
        )
