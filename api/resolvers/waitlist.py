"""The waiting list: join, leave, read it, and follow one entry live.

- ``joinWaitlist``: Tenants in their own name, Admins in anyone's (a held or occupied
  apartment only; a VACANT one is reserved instead); joining twice answers the entry the
  tenant already has;
- ``leaveWaitlist``: the entry's tenant or Admins; an entry holding an offer is left by
  declining the offer (its hold is cancelled and the apartment passes on);
- ``getWaitlistEntry``, ``getWaitlist``, ``onWaitlistEntryChanged``: a tenant sees its own
  entries, Admins, Caretakers and API keys all of them.

Every change goes to the entry's or the offered booking's workflow (``api.operations``);
answers are read back from the database.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator

import strawberry
from strawberry.types import Info

from api.auth import Principal
from api.cost import MAX_LIST_ITEMS, bounded
from api.directives import ADMINS, TENANTS, authorize, cognito, resolver, subscription
from api.notify import waitlist_key
from api.resolvers.common import ctx, live_rows, may_act_as, may_see
from api.types.waitlist import JoinWaitlistInput, WaitlistEntry
from booking.contract import (
    MIN_HOLD_SECONDS,
    BookingInput,
    StayLimits,
    WaitlistJoin,
    booking_problem,
)
from booking.errors import ValidationError, WaitlistEntryNotFound
from booking.store import reads
from booking.store.waitlist import WaitlistRow


def _may_see(principal: Principal, row: WaitlistRow) -> None:
    may_see(principal, row.user_id, "waiting-list entry")


async def _entry(info: Info, entry_id: str) -> WaitlistRow:
    row = await ctx(info).loaders.reader.run(reads.waitlist_entry, entry_id)
    if row is None:
        raise WaitlistEntryNotFound(f"waiting-list entry {entry_id} does not exist")
    return row


@strawberry.type
class WaitlistQueries:
    @resolver(directives=[cognito()], description="Added: one waiting-list entry.")
    async def get_waitlist_entry(self, info: Info, id: strawberry.ID) -> WaitlistEntry | None:
        principal = authorize(info)
        row = await ctx(info).loaders.reader.run(reads.waitlist_entry, str(id))
        if row is None:
            return None
        _may_see(principal, row)
        return WaitlistEntry.from_row(row)

    @resolver(
        directives=[cognito()],
        description="Added: an apartment's waiting list in joining order (a tenant: its own).",
    )
    async def get_waitlist(self, info: Info, apartment_id: str) -> list[WaitlistEntry]:
        principal = authorize(info)
        rows = await ctx(info).loaders.reader.run(
            reads.waitlist_for_apartment,
            apartment_id,
            user_id=None if principal.sees_all_bookings else principal.user_id,
            limit=MAX_LIST_ITEMS + 1,
        )
        return [WaitlistEntry.from_row(r) for r in bounded(rows, f"apartment {apartment_id}")]


@strawberry.type
class WaitlistMutations:
    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description="Added: wait for a held or occupied apartment; offered when it is released.",
    )
    async def join_waitlist(self, info: Info, input: JoinWaitlistInput) -> WaitlistEntry:
        principal = authorize(info, TENANTS, ADMINS)
        may_act_as(info, principal, input.user_id)
        join = WaitlistJoin(
            entry_id=str(uuid.uuid4()),
            apartment_id=input.apartment_id,
            user_id=input.user_id,
            start_date=input.start_date,
            end_date=input.end_date,
        )
        context = ctx(info)
        problem = _join_problem(join, context.services.require_commands().stay_limits())
        if problem is not None:
            raise ValidationError(problem)
        entry_id = await context.services.require_commands().join_waitlist(join)
        return WaitlistEntry.from_row(await _entry(info, entry_id))

    @resolver(
        directives=[cognito(TENANTS, ADMINS)],
        description="Added: leave the list (an offer held is declined and passes on).",
    )
    async def leave_waitlist(self, info: Info, id: strawberry.ID) -> WaitlistEntry:
        principal = authorize(info, TENANTS, ADMINS)
        row = await _entry(info, str(id))
        may_act_as(info, principal, row.user_id)
        context = ctx(info)
        await context.services.require_commands().leave_waitlist(row, context.loaders.reader)
        return WaitlistEntry.from_row(await _entry(info, row.id))


@strawberry.type
class WaitlistSubscriptions:
    @subscription(
        directives=[cognito()],
        description="Added: the entry now, then again on every change (its position too).",
    )
    async def on_waitlist_entry_changed(
        self, info: Info, id: strawberry.ID
    ) -> AsyncGenerator[WaitlistEntry | None, None]:
        principal = authorize(info)
        first = await _entry(info, str(id))
        _may_see(principal, first)
        rows = live_rows(
            ctx(info),
            waitlist_key(first.apartment_id),
            reads.waitlist_entry,
            first.id,
            # Positions move when one ahead leaves or gets an offer.
            version=lambda row: (row.status, row.position, row.updated_on),
            check=lambda row: _may_see(principal, row),
        )
        async for row in rows:
            yield WaitlistEntry.from_row(row)


def _join_problem(join: WaitlistJoin, limits: StayLimits) -> str | None:
    """The rules of a reserve for the same stay: an offer is a booking of these dates."""
    stay = BookingInput(
        booking_id=join.entry_id,
        apartment_id=join.apartment_id,
        user_id=join.user_id,
        start_date=join.start_date,
        end_date=join.end_date,
        hold_seconds=MIN_HOLD_SECONDS,
    )
    return booking_problem(stay, limits)
