"""The GraphQL schema: the operations of both AppSync schemas plus the contract's.

The resolvers live in ``api.resolvers`` by concern (accounts, catalog, bookings, step
functions); this module puts them together as ``Query``, ``Mutation`` and ``Subscription``
and adds the limits every document must pass (depth, tokens, aliases) and the caches of
parsed and validated documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from typing import Any

import strawberry
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StreamResult
from strawberry.types.graphql import OperationType

from api.context import RequestContext
from api.errors import AppSyncErrors
from api.metrics import OperationMetrics
from api.resolvers.accounts import AccountMutations, AccountQueries
from api.resolvers.bookings import BookingMutations, BookingQueries, BookingSubscriptions
from api.resolvers.catalog import CatalogMutations, CatalogQueries
from api.resolvers.step_functions import StepFunctionMutations, StepFunctionQueries
from api.scalars import SCALAR_MAP
from booking.settings import Settings

MAX_DEPTH = 10
MAX_TOKENS = 2000
MAX_ALIASES = 30


@strawberry.type
class Query(AccountQueries, BookingQueries, StepFunctionQueries, CatalogQueries):
    pass


@strawberry.type
class Mutation(AccountMutations, CatalogMutations, BookingMutations, StepFunctionMutations):
    pass


@strawberry.type
class Subscription(BookingSubscriptions):
    pass


class BookingSchema(strawberry.Schema):
    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
    ) -> StreamResult:
        # The WebSocket handler passes its connection's one context to every
        # operation; each gets its own copy with fresh DataLoaders, so a later
        # query is not answered from an earlier one's cache and concurrent
        # operations never share loaders.
        if isinstance(context_value, RequestContext):
            context_value = context_value.for_operation()
        return await super().stream(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            operation_extensions=operation_extensions,
            allowed_operation_types=allowed_operation_types,
        )

    def process_errors(self, errors: object, execution_context: object = None) -> None:
        # AppSyncErrors logs the unexpected ones with the request id; domain errors
        # are answers, not incidents, and are not logged as errors.
        return None


def build_schema(settings: Settings | None = None) -> strawberry.Schema:
    introspection = settings.introspection if settings is not None else True
    extensions: list[object] = [
        AppSyncErrors,
        OperationMetrics,
        partial(QueryDepthLimiter, max_depth=MAX_DEPTH),
        partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        partial(MaxAliasesLimiter, max_alias_count=MAX_ALIASES),
        partial(ParserCache, maxsize=512),
        partial(ValidationCache, maxsize=512),
    ]
    if not introspection:
        extensions.append(DisableIntrospection)
    return BookingSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,  # type: ignore[arg-type]
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )
