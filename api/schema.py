"""The GraphQL schema: the operations of both AppSync schemas plus the contract's.

The resolvers live in ``api.resolvers`` by concern (accounts, catalog, bookings, the waiting
list, step functions); this module puts them together as ``Query``, ``Mutation`` and
``Subscription``
and adds the limits every document must pass (depth, tokens, aliases) and the caches of
parsed and validated documents.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial
from typing import Any

import strawberry
from graphql import GraphQLError, OperationDefinitionNode
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    ParserCache,
    SchemaExtension,
    ValidationCache,
)
from strawberry.extensions.max_aliases import create_validator as aliases_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StreamResult
from strawberry.types.graphql import OperationType

from api.context import RequestContext
from api.cost import query_cost_rule
from api.errors import AppSyncErrors
from api.metrics import OperationMetrics
from api.resolvers.accounts import AccountMutations, AccountQueries
from api.resolvers.bookings import BookingMutations, BookingQueries, BookingSubscriptions
from api.resolvers.calendar import CalendarQueries
from api.resolvers.catalog import CatalogMutations, CatalogQueries
from api.resolvers.rent import RentMutations, RentQueries, RentSubscriptions
from api.resolvers.step_functions import StepFunctionMutations, StepFunctionQueries
from api.resolvers.waitlist import WaitlistMutations, WaitlistQueries, WaitlistSubscriptions
from api.scalars import SCALAR_MAP
from booking.settings import Settings

MAX_DEPTH = 10
MAX_TOKENS = 2000
MAX_ALIASES = 30


class OperationNameRequired(SchemaExtension):
    """A document with several operations must say which to run (GraphQL spec 6.1)."""

    def on_validate(self) -> Iterator[None]:
        # Listed after ValidationCache, whose (cached) result it adds to: Strawberry decides
        # whether to run the operation before any extension's code after its yield.
        context = self.execution_context
        document = context.graphql_document
        # The name the client sent (``operation_name`` falls back to the document's first).
        if document is not None and not context._provided_operation_name:
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            if len(operations) > 1:
                context.pre_execution_errors = [
                    *(context.pre_execution_errors or []),
                    GraphQLError(
                        "the document holds several operations: operationName must name "
                        "the one to run"
                    ),
                ]
        yield


@strawberry.type
class Query(
    AccountQueries,
    BookingQueries,
    StepFunctionQueries,
    CatalogQueries,
    CalendarQueries,
    RentQueries,
    WaitlistQueries,
):
    pass


@strawberry.type
class Mutation(
    AccountMutations,
    CatalogMutations,
    BookingMutations,
    RentMutations,
    StepFunctionMutations,
    WaitlistMutations,
):
    pass


@strawberry.type
class Subscription(BookingSubscriptions, WaitlistSubscriptions, RentSubscriptions):
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


def build_schema(settings: Settings | None = None, *, traced: bool = False) -> strawberry.Schema:
    """The schema; ``traced``: with Strawberry's OpenTelemetry extension (a class: one
    instance per request, never a shared one)."""
    settings = settings or Settings()
    extensions: list[object] = [
        AppSyncErrors,
        OperationMetrics,
        # The rule classes are made once, here: ValidationCache keys on them, and
        # QueryDepthLimiter / MaxAliasesLimiter as extensions make new ones per request, so
        # every request missed the cache and was validated afresh (68 % of the API's CPU in
        # a profile of the contention scenario; BENCHMARKS.md).
        partial(
            AddValidationRules,
            [
                query_cost_rule(settings.graphql_max_cost),
                depth_validator(MAX_DEPTH, None),
                aliases_validator(MAX_ALIASES),
            ],
        ),
        partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        partial(ParserCache, maxsize=512),
        partial(ValidationCache, maxsize=512),
        OperationNameRequired,
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection)
    if traced:
        from strawberry.extensions.tracing import OpenTelemetryExtension

        extensions.append(OpenTelemetryExtension)
    return BookingSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=extensions,  # type: ignore[arg-type]
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
    )
