"""AppSync's ``@aws_cognito_user_pools`` directive, printed in our SDL where AppSync has it.

The directive documents who may call a field; :func:`require_groups` (called
first thing in each guarded resolver) enforces the same rule, and
``tests/test_schema_contract.py`` checks that the directives we print match the
AppSync SDL field for field.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import strawberry
from strawberry.schema_directive import Location
from strawberry.types import Info

from api.auth import Principal
from api.context import RequestContext
from booking.errors import Unauthorized

F = TypeVar("F", bound=Callable[..., Any])

ADMINS = "Admins"
TENANTS = "Tenants"
CARETAKERS = "Caretakers"


@strawberry.schema_directive(
    locations=[Location.OBJECT, Location.FIELD_DEFINITION], name="aws_cognito_user_pools"
)
class AwsCognitoUserPools:
    cognito_groups: list[str | None] | None = strawberry.directive_field(name="cognito_groups")


def cognito(*groups: str) -> Any:
    """The directive for a field or type: any signed-in user, or one of ``groups``."""
    return AwsCognitoUserPools(cognito_groups=list(groups) if groups else strawberry.UNSET)


def authorize(info: Info, *groups: str) -> Principal:
    """The caller, if it may use this field: any signed-in caller, or one in ``groups``.

    API keys are trusted callers and pass every check, as in AppSync's
    API_KEY + Cognito setups where the backend holds the key.
    """
    context: RequestContext = info.context
    principal = context.caller()
    if principal.trusted or not groups or set(groups) & principal.groups:
        return principal
    raise Unauthorized(f"Not Authorized to access {info.field_name} on type {info.path.typename}")


def resolver(
    *, directives: Sequence[object] = (), description: str | None = None
) -> Callable[[F], F]:
    """``strawberry.field(...)`` as a typed decorator (strawberry's own is untyped with args)."""
    return cast(
        "Callable[[F], F]", strawberry.field(directives=directives, description=description)
    )


def subscription(
    *, directives: Sequence[object] = (), description: str | None = None
) -> Callable[[F], F]:
    return cast(
        "Callable[[F], F]",
        strawberry.subscription(directives=directives, description=description),
    )
