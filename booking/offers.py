"""The waiting list's hand-over: offering a freed apartment to the first tenant waiting for it.

One function for every way an apartment is freed, so that none of them can forget the
waiting list: a hold released or a lease ended (the worker's activities) and the repairs of
``booking doctor``. Each runs inside the caller's transaction, with the apartment's row
already locked, and writes the offer (a PENDING booking in the tenant's name, its entry
OFFERED, the events) or nothing; starting the offer's booking workflow and telling entries'
workflows is the caller's next step, after the commit.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from temporalio.client import Client
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from booking.contract import (
    ENTRY_SETTLED_SIGNAL,
    LAPSED,
    OFFERED,
    PENDING,
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
from booking.store import waitlist as waitlist_store


async def offer_next(
    conn: Conn,
    apartment_id: str,
    terms: store.RentTerms | None,
    now: datetime,
    offer_seconds: int,
) -> tuple[Offer | None, list[str]]:
    """Offer the apartment (whose row the caller has locked, reading its ``terms``) to the
    first waiting tenant, its hold timed from ``now`` and lasting ``offer_seconds``.

    An entry whose stay has already begun can no longer be booked: it lapses (its id is
    returned with the offer, for its workflow to be told), and the next one is asked.
    """
    lapsed: list[str] = []
    while True:
        entry = await waitlist_store.first_waiting(conn, apartment_id)
        if entry is None:
            return None, lapsed
        if entry.start_date < now.date():
            await waitlist_store.set_status(conn, entry.id, WAITING, LAPSED)
            await store.append_event(
                conn, None, WAITING, LAPSED, "STAY_STARTED", waitlist_entry_id=entry.id
            )
            lapsed.append(entry.id)
            continue
        assert terms is not None  # the apartment of an entry exists (a foreign key)
        booking = BookingInput(
            booking_id=offer_booking_id_for(entry.id),
            apartment_id=apartment_id,
            user_id=entry.user_id,
            start_date=entry.start_date,
            end_date=entry.end_date,
            hold_seconds=offer_seconds,
            waitlist_entry_id=entry.id,
        )
        hold_expires_at = now + timedelta(seconds=offer_seconds)
        await store.hold_for_offer(conn, apartment_id)
        await store.insert_booking(
            conn,
            booking,
            workflow_id=workflow_id_for(booking.booking_id),
            amount_due=amount_due(terms.monthly_rent, entry.start_date, entry.end_date),
            currency=terms.currency,
            hold_expires_at=hold_expires_at,
        )
        await waitlist_store.set_status(
            conn, entry.id, WAITING, OFFERED, offered_booking_id=booking.booking_id
        )
        await store.append_event(
            conn,
            booking.booking_id,
            None,
            PENDING,
            "WAITLIST_OFFER",
            {"holdExpiresAt": hold_expires_at.isoformat(), "waitlistEntryId": entry.id},
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
        return Offer(booking, hold_expires_at), lapsed


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
