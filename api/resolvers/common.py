"""Small helpers every resolver module uses: the typed context, optional inputs, pages."""

from __future__ import annotations

from typing import TypeVar

import strawberry
from strawberry.types import Info

from api.auth import Principal
from api.context import RequestContext
from api.pagination import decode_token, page_limit
from api.types import Pagination
from booking.errors import Unauthorized

T = TypeVar("T")


def ctx(info: Info) -> RequestContext:
    context: RequestContext = info.context
    return context


def given(value: T | None) -> T | None:
    """None for an argument or input field the client left out (UNSET)."""
    return None if value is strawberry.UNSET or value is None else value


def page(kind: str, pagination: Pagination | None) -> tuple[int, list[object] | None]:
    """(limit, decoded cursor) of a ``pagination`` argument for the list ``kind``."""
    requested = given(pagination.limit) if pagination else None
    token = given(pagination.next_token) if pagination else None
    return page_limit(requested), decode_token(kind, token)


def may_act_as(info: Info, principal: Principal, user_id: str) -> None:
    if not principal.may_act_for(user_id):
        raise Unauthorized(f"Not Authorized to call {info.field_name} in the name of another user")
