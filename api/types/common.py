"""What every feature's types share: the request context from ``Info``, and paging."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import strawberry
from strawberry.types import Info

if TYPE_CHECKING:
    from api.context import RequestContext


T = TypeVar("T")


def ctx(info: Info) -> RequestContext:
    context: RequestContext = info.context
    return context


def given(value: T | None) -> T | None:
    """None for an argument or input field the client left out (UNSET)."""
    return None if value is strawberry.UNSET or value is None else value


@strawberry.input
class Pagination:
    limit: int | None = strawberry.UNSET
    next_token: str | None = strawberry.UNSET
