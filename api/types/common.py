"""What every feature's types share: the request context from ``Info``, and paging."""

from __future__ import annotations

from typing import TYPE_CHECKING

import strawberry
from strawberry.types import Info

if TYPE_CHECKING:
    from api.context import RequestContext


def ctx(info: Info) -> RequestContext:
    context: RequestContext = info.context
    return context


@strawberry.input
class Pagination:
    limit: int | None = strawberry.UNSET
    next_token: str | None = strawberry.UNSET
