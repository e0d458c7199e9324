"""User accounts: ``User`` and its inputs (AppSync's acms schema, plus an optional id)."""

from __future__ import annotations

from enum import Enum

import strawberry
from strawberry.types import Info

from api.directives import cognito
from api.scalars import AWSDateTime
from api.types.common import ctx
from booking.store.reads import UserRow


@strawberry.enum
class UserType(Enum):
    ADMIN = "ADMIN"
    TENANT = "TENANT"
    CARETAKER = "CARETAKER"


@strawberry.type(directives=[cognito()])
class User:
    id: strawberry.ID
    first_name: str
    last_name: str
    email: str
    verified: bool
    user_type: UserType
    updated_on: AWSDateTime | None
    created_on: AWSDateTime

    @classmethod
    def from_row(cls, row: UserRow) -> User:
        return cls(
            id=strawberry.ID(row.id),
            first_name=row.first_name,
            last_name=row.last_name,
            email=row.email,
            verified=row.verified,
            user_type=UserType(row.user_type),
            updated_on=AWSDateTime(row.updated_on) if row.updated_on else None,
            created_on=AWSDateTime(row.created_on),
        )


async def load_user(info: Info, user_id: str | None) -> User | None:
    """The account ``user_id`` if the caller may read it (as ``getUserAccount`` decides), else None.

    Decided before loading, so a hidden account costs no query and the
    visible ones still batch into one.
    """
    if user_id is None or not ctx(info).caller().may_read_account(user_id):
        return None
    row = await ctx(info).loaders.users.load(user_id)
    return None if row is None else User.from_row(row)


@strawberry.type(directives=[cognito()])
class UsersResult:
    items: list[User]
    next_token: str | None


@strawberry.input
class UserInput:
    first_name: str
    last_name: str
    email: str
    verified: bool
    user_type: UserType
    id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="Added: the account's id. Defaults to the caller's sub; "
        "only Admins and API keys may name another id.",
    )


@strawberry.input
class UpdateUserInput:
    first_name: str
    last_name: str
    verified: bool
    user_type: UserType
    id: strawberry.ID | None = strawberry.field(
        default=strawberry.UNSET,
        description="Added: the account to update. Defaults to the caller's own; "
        "only Admins and API keys may update another.",
    )
