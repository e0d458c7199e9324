"""What one GraphQL operation may use: the process's services, its caller and its loaders."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from api.auth import MISSING, Principal
from api.loaders import Loaders
from api.services import Services
from booking.errors import UnauthorizedException


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
    # Called once by a subscription resolver when it is live (listening, the caller checked):
    # AppSync's protocol answers ``start_ack`` then, and not before (api/realtime.py).
    on_subscribed: Callable[[], Awaitable[None]] | None = None

    async def subscribed(self) -> None:
        """Tell the transport that the subscription is live (once; later calls do nothing)."""
        callback, self.on_subscribed = self.on_subscribed, None
        if callback is not None:
            await callback()

    def for_operation(self) -> RequestContext:
        """A copy for one operation: same caller and connection, fresh DataLoaders.

        A WebSocket connection lives for hours; loaders shared by its operations
        would answer every later query from the first one's cache.
        """
        return replace(self, loaders=self.loaders.fresh())

    def caller(self) -> Principal:
        if self.principal is None:
            raise UnauthorizedException(MISSING)
        return self.principal
