"""The estimated size of a query's result, refused above ``BOOKING_GRAPHQL_MAX_COST``.

Before anything runs, every operation's selection is walked with the schema's types:
each field value counts 1, times the number of list elements above it. A list's length is

- for the paginated lists (``items`` of ``getAllBuildings``, ``getAllUserAccounts``,
  ``listBookingsPerApartment``, and ``searchApartments`` whose ``input`` carries its
  ``limit``): the ``pagination.limit`` given inline, else the largest
  page (:data:`api.pagination.MAX_LIMIT`), since a variable's value is not known while the
  document is validated (the check then caches with the document);
- for every other list: :data:`MAX_LIST_ITEMS`, a bound the resolvers also enforce (a list
  that would be longer is refused with an error that says so, never cut short).

So ``{getAllApartmentsPerBuilding(buildingId: B){building{apartments{id}}}}`` costs
500 x (1 + 1 + 500 x 2) = 501,000 and is refused (the default limit is 25,000), while a
building's apartments with two dozen fields each, or the tenant page's reads, pass.
The refusal is a ``ValidationError`` naming the limit and the estimate, sent before any
resolver or database call. One query can therefore not make the API serialize more than
about ``BOOKING_GRAPHQL_MAX_COST`` values, which keeps every request a short stretch of the
event loop.
"""

from __future__ import annotations

from typing import Any, Final, TypeVar

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    InlineFragmentNode,
    IntValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)

from api.pagination import DEFAULT_LIMIT, MAX_LIMIT
from booking.errors import ResultTooLarge

T = TypeVar("T")

# The longest list any unpaginated field answers (a building's apartments, an apartment's
# bookings, the Step Functions executions).
MAX_LIST_ITEMS: Final = 500


def bounded(rows: list[T], what: str) -> list[T]:
    """``rows`` when at most :data:`MAX_LIST_ITEMS` long; else ResultTooLarge (never cut short)."""
    if len(rows) > MAX_LIST_ITEMS:
        raise ResultTooLarge(
            f"{what} has more than {MAX_LIST_ITEMS} entries, more than one answer holds; "
            "use the paginated query"
        )
    return rows


# The arguments a page's ``limit`` comes in: ``pagination`` for the lists, and the search's
# ``input`` (AppSync-style: its filters, ``limit`` and ``nextToken`` in one input).
_PAGE_ARGUMENTS: Final = {"pagination": "", "input": "searchApartments"}


def _page_limit(field: FieldNode) -> int | None:
    """The page size a field asks for with ``pagination: {limit: N}`` (or the search's
    ``input: {limit: N}``), or None (no such argument)."""
    for argument in field.arguments or ():
        owner = _PAGE_ARGUMENTS.get(argument.name.value)
        if owner is None or (owner and field.name.value != owner):
            continue
        value = argument.value
        if isinstance(value, ObjectValueNode):
            for item in value.fields:
                if item.name.value == "limit":
                    if isinstance(item.value, IntValueNode):
                        return min(int(item.value.value), MAX_LIMIT)
                    return MAX_LIMIT  # a variable: the largest it may be
            return DEFAULT_LIMIT
        return MAX_LIMIT  # the whole argument is a variable
    return None


class _Estimator:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode], schema: Any) -> None:
        self._fragments = fragments
        self._schema = schema

    def selection(
        self,
        selection_set: SelectionSetNode | None,
        parent: GraphQLObjectType,
        page: int | None,
        seen: frozenset[str],
    ) -> int:
        if selection_set is None:
            return 0
        total = 0
        for node in selection_set.selections:
            if isinstance(node, FieldNode):
                total += self.field(node, parent, page, seen)
            elif isinstance(node, InlineFragmentNode):
                target = parent
                if node.type_condition is not None:
                    named = self._schema.get_type(node.type_condition.name.value)
                    target = named if isinstance(named, GraphQLObjectType) else parent
                total += self.selection(node.selection_set, target, page, seen)
            elif isinstance(node, FragmentSpreadNode):
                name = node.name.value
                fragment = self._fragments.get(name)
                if fragment is None or name in seen:
                    continue  # other rules report unknown or cyclic fragments
                named = self._schema.get_type(fragment.type_condition.name.value)
                target = named if isinstance(named, GraphQLObjectType) else parent
                total += self.selection(fragment.selection_set, target, page, seen | {name})
        return total

    def field(
        self, node: FieldNode, parent: GraphQLObjectType, page: int | None, seen: frozenset[str]
    ) -> int:
        definition = parent.fields.get(node.name.value)
        if definition is None:
            return 1  # __typename, or a field other rules report
        kind: Any = definition.type
        length = 1
        while isinstance(kind, GraphQLNonNull | GraphQLList):
            if isinstance(kind, GraphQLList):
                # A paginated result's items are one page long; other lists are bounded.
                length *= (
                    page if page is not None and node.name.value == "items" else MAX_LIST_ITEMS
                )
            kind = kind.of_type
        named: GraphQLNamedType = kind
        inner = 0
        if isinstance(named, GraphQLObjectType):
            inner = self.selection(node.selection_set, named, _page_limit(node), seen)
        return length * (1 + inner)


def query_cost_rule(max_cost: int) -> type[ValidationRule]:
    """A validation rule refusing operations whose estimated result exceeds ``max_cost``."""

    class QueryCost(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            document = context.document
            self._fragments = {
                d.name.value: d
                for d in document.definitions
                if isinstance(d, FragmentDefinitionNode)
            }

        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> None:
            schema = self.context.schema
            root = schema.get_root_type(node.operation)
            if root is None:
                return
            cost = _Estimator(self._fragments, schema).selection(
                node.selection_set, root, None, frozenset()
            )
            if cost > max_cost:
                self.report_error(
                    GraphQLError(
                        f"query cost {cost:,} exceeds the limit of {max_cost:,} "
                        "(BOOKING_GRAPHQL_MAX_COST): each list multiplies what is selected "
                        f"below it (pages by their limit, other lists by {MAX_LIST_ITEMS}); "
                        "ask for fewer fields, smaller pages or fewer aliases",
                        node,
                    )
                )

    return QueryCost


def estimate(document: Any, schema: Any, operation: OperationDefinitionNode) -> int:
    """The cost of one operation of a parsed document (for tests and the README's examples)."""
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    root = schema.get_root_type(operation.operation)
    return _Estimator(fragments, schema).selection(operation.selection_set, root, None, frozenset())
