"""Who is calling, and what one request may use."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from api.loaders import Loaders
    from api.services import Services


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: an API key (trusted backend) or a user's JWT."""

    user_id: str | None
    groups: frozenset[str]
    trusted: bool  # an x-api-key caller: every operation, in anyone's name

    @property
    def is_admin(self) -> bool:
        return self.trusted or "Admins" in self.groups

    @property
    def sees_all_bookings(self) -> bool:
        # Caretakers run the buildings, so they see every booking of an
        # apartment; tenants see their own only.
        return self.is_admin or "Caretakers" in self.groups

    def may_act_for(self, user_id: str) -> bool:
        return self.is_admin or self.user_id == user_id

    def may_read_account(self, user_id: str) -> bool:
        # Caretakers look after the tenants of their buildings, so they read any
        # account; tenants read their own only, wherever the account is nested.
        return self.is_admin or "Caretakers" in self.groups or self.user_id == user_id


@dataclass
class RequestContext:
    """Strawberry's context for one operation: an HTTP request, or one operation of a WebSocket.

    The view builds one per HTTP request and one per WebSocket connection;
    ``BookingSchema.stream`` copies the connection's for every operation on it,
    with fresh DataLoaders (see ``for_operation``).
    """

    services: Services
    loaders: Loaders
    request_id: str
    principal: Principal | None = None
    request: Any = None
    response: Any = None
    connection_params: dict[str, object] = field(default_factory=dict)

    def for_operation(self) -> RequestContext:
        """A copy for one operation: same caller and connection, fresh DataLoaders.

        A WebSocket connection lives for hours; loaders shared by its operations
        would answer every later query from the first one's cache.
        """
        from api.loaders import Loaders

        return replace(self, loaders=Loaders(self.loaders.reader.fresh()))

    def caller(self) -> Principal:
        from booking.errors import UnauthorizedException

        if self.principal is None:
            raise UnauthorizedException("Valid authorization header not provided.")
        return self.principal
