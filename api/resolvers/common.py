"""Small helpers every resolver module uses: the typed context, optional inputs, pages,
who may see what, and the loop every subscription runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from typing import TypeVar

from strawberry.types import Info

from api.auth import Principal
from api.context import RequestContext
from api.pagination import decode_token, page_limit
from api.types.common import Pagination, given
from booking.errors import BookingNotFound, Unauthorized
from booking.store import Conn, reads
from booking.store.bookings import BookingRow

T = TypeVar("T")
Row = TypeVar("Row")


def ctx(info: Info) -> RequestContext:
    context: RequestContext = info.context
    return context


async def booking_row(info: Info, booking_id: str) -> BookingRow:
    """The booking's row as it is now; BookingNotFound if there is none."""
    row = await ctx(info).loaders.reader.run(reads.booking_by_id, booking_id)
    if row is None:
        raise BookingNotFound(f"booking {booking_id} does not exist")
    return row


def page(kind: str, pagination: Pagination | None) -> tuple[int, list[object] | None]:
    """(limit, decoded cursor) of a ``pagination`` argument for the list ``kind``."""
    requested = given(pagination.limit) if pagination else None
    token = given(pagination.next_token) if pagination else None
    return page_limit(requested), decode_token(kind, token)


def may_act_as(info: Info, principal: Principal, user_id: str) -> None:
    if not principal.may_act_for(user_id):
        raise Unauthorized(f"Not Authorized to call {info.field_name} in the name of another user")


def may_see(principal: Principal, owner_id: str, what: str) -> None:
    """Staff see every booking and entry; a tenant only its own (``what`` names it)."""
    if not principal.sees_all_bookings and owner_id != principal.user_id:
        raise Unauthorized(f"Not Authorized to access this {what}")


async def live_rows(
    context: RequestContext,
    key: str,
    read: Callable[[Conn, str], Awaitable[Row | None]],
    row_id: str,
    version: Callable[[Row], Hashable],
    check: Callable[[Row], None],
) -> AsyncIterator[Row]:
    """The row now, then again each time its ``version`` changes: a subscription's loop.

    Listens on ``key`` (api.notify) before the first read, so no change can fall between
    them; ``check`` (may the caller see it) runs on every row read, and the transport hears
    that the subscription is live only after the first read passed it.
    """
    broadcaster = context.services.broadcaster
    if broadcaster is None:
        raise RuntimeError("live updates are not running (lifespan not started)")
    last: Hashable | None = None
    with broadcaster.subscribe(key) as queue:
        while True:
            row = await context.loaders.reader.run(read, row_id)
            if row is not None:
                check(row)
            await context.subscribed()
            if row is not None and version(row) != last:
                last = version(row)
                # Fresh loaders: nested fields (the apartment's status) must not come from
                # the previous message's cache.
                context.loaders = context.loaders.fresh()
                yield row
            await queue.get()
            # Several notices may have queued up; one read answers them all.
            while not queue.empty():
                queue.get_nowait()
