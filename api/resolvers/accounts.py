"""User accounts: AppSync's acms operations on ``User``.

A signed-in user reads, updates and deletes its own account; Admins (and Caretakers, for
reads) any; ``getAllUserAccounts`` needs Admins or Caretakers. Writes are one checked
transaction each (``booking.catalog``).

What a caller who is not an Admin writes on its own account must be true of it (refused as
Unauthorized otherwise, :func:`_self_service_problem`):

- ``userType`` is the one its groups give (CARETAKER for Caretakers, else TENANT): groups come
  from the token, so an ADMIN record would give no access, but it would lie;
- ``verified`` is never turned on by the account's owner (an Admin verifies);
- ``email`` on a new account is the token's own ``email`` claim (ID tokens carry it), so that
  creating an account cannot be used to ask whether some other address is registered. With a
  token that carries none (an access token), an Admin creates the account.
"""

from __future__ import annotations

import uuid

import strawberry
from strawberry.types import Info

from api.auth import Principal
from api.directives import ADMINS, CARETAKERS, authorize, cognito, resolver
from api.pagination import encode_token
from api.resolvers.common import ctx, may_act_as, page
from api.types.accounts import UpdateUserInput, User, UserInput, UsersResult
from api.types.common import Pagination, given
from booking import catalog
from booking.contract import text_problem
from booking.errors import Unauthorized, UserNotFound, ValidationError
from booking.store import reads
from booking.store.catalog import UserData, UserUpdate


async def _account(info: Info, user_id: str) -> User:
    """The account as it is now (read back for a mutation's answer)."""
    rows = await ctx(info).loaders.reader.run(reads.users_by_ids, [user_id])
    if not rows:
        raise UserNotFound(f"user {user_id} does not exist")
    return User.from_row(rows[0])


def _self_service_problem(
    principal: Principal, user_type: str, verified: bool, was_verified: bool = False
) -> str | None:
    """Why a caller who is not an Admin may not write these values on its own account."""
    if principal.is_admin:
        return None
    own_type = "CARETAKER" if "Caretakers" in principal.groups else "TENANT"
    if user_type != own_type:
        return f"your account's userType is {own_type} (your groups say so), not {user_type}"
    if verified and not was_verified:
        return "only an Admin marks an account verified"
    return None


@strawberry.type
class AccountQueries:
    @resolver(directives=[cognito()])
    async def get_user_account(self, info: Info, id: strawberry.ID) -> User:
        principal = authorize(info)
        if not principal.may_read_account(str(id)):
            raise Unauthorized("Not Authorized to read another user's account")
        row = await ctx(info).loaders.users.load(str(id))
        if row is None:
            raise UserNotFound(f"user {id} does not exist")
        return User.from_row(row)

    @resolver(directives=[cognito(ADMINS, CARETAKERS)])
    async def get_all_user_accounts(
        self, info: Info, pagination: Pagination | None = strawberry.UNSET
    ) -> UsersResult:
        authorize(info, ADMINS, CARETAKERS)
        limit, cursor = page("users", pagination)
        after = str(cursor[0]) if cursor else None
        rows = await ctx(info).loaders.reader.run(reads.users_page, limit=limit + 1, after_id=after)
        items = rows[:limit]
        token = encode_token("users", [items[-1].id]) if len(rows) > limit else None
        return UsersResult(items=[User.from_row(r) for r in items], next_token=token)


@strawberry.type
class AccountMutations:
    @resolver(directives=[cognito()])
    async def create_user_account(self, info: Info, input: UserInput) -> User:
        principal = authorize(info)
        if given(input.id) is not None:
            user_id = str(input.id)
            problem = text_problem("id", user_id)
            if problem is not None:
                raise ValidationError(problem)
            may_act_as(info, principal, user_id)
        elif principal.user_id is not None:
            user_id = principal.user_id
        else:
            user_id = str(uuid.uuid4())
        problem = _self_service_problem(principal, input.user_type.value, input.verified)
        if problem is None and not principal.is_admin:
            if principal.email is None:
                problem = (
                    "your token carries no email claim (sign in with an ID token), or ask an "
                    "Admin to create your account"
                )
            elif principal.email.casefold() != input.email.casefold():
                problem = "email must be the one your sign-in token carries"
        if problem is not None:
            raise Unauthorized(problem)
        record = UserData(
            id=user_id,
            first_name=input.first_name,
            last_name=input.last_name,
            email=input.email,
            verified=input.verified,
            user_type=input.user_type.value,
        )
        await ctx(info).services.write(catalog.create_user, record, actor=principal.actor)
        return await _account(info, user_id)

    @resolver(directives=[cognito()])
    async def update_user_account(self, info: Info, input: UpdateUserInput) -> User:
        principal = authorize(info)
        if given(input.id) is not None:
            user_id = str(input.id)
        elif principal.user_id is not None:
            user_id = principal.user_id
        else:
            raise ValidationError("input.id is required when calling with an API key")
        may_act_as(info, principal, user_id)
        if not principal.is_admin:
            current = await _account(info, user_id)
            problem = _self_service_problem(
                principal, input.user_type.value, input.verified, current.verified
            )
            if problem is not None:
                raise Unauthorized(problem)
        record = UserUpdate(
            id=user_id,
            first_name=input.first_name,
            last_name=input.last_name,
            verified=input.verified,
            user_type=input.user_type.value,
        )
        await ctx(info).services.write(catalog.update_user, record, actor=principal.actor)
        return await _account(info, user_id)

    @resolver(directives=[cognito()])
    async def delete_user_account(self, info: Info, id: strawberry.ID) -> bool:
        principal = authorize(info)
        may_act_as(info, principal, str(id))
        await ctx(info).services.write(catalog.delete_user, str(id), actor=principal.actor)
        return True
