"""The Step Functions tutorial's operations: ``addStepFunction`` and ``getStepFunctions``.

They had no Cognito rule in AppSync (the tutorial used its API key): API keys or Admins.
"""

from __future__ import annotations

import strawberry
from strawberry.types import Info

from api.cost import MAX_LIST_ITEMS, bounded
from api.directives import ADMINS, authorize
from api.resolvers.common import ctx
from api.types.step_functions import StepFunctions, StepFunctionsInput
from booking.errors import ValidationError
from booking.store import reads


@strawberry.type
class StepFunctionQueries:
    @strawberry.field
    async def get_step_functions(self, info: Info) -> list[StepFunctions] | None:
        authorize(info, ADMINS)
        rows = await ctx(info).loaders.reader.run(
            reads.step_function_executions, limit=MAX_LIST_ITEMS + 1
        )
        return [StepFunctions.from_row(r) for r in bounded(rows, "the execution list")]


@strawberry.type
class StepFunctionMutations:
    @strawberry.field
    async def add_step_function(
        self, info: Info, input: StepFunctionsInput
    ) -> StepFunctions | None:
        authorize(info, ADMINS)
        await ctx(info).services.require_commands().add_step_function(str(input.id), input.arn)
        row = await ctx(info).loaders.reader.run(reads.step_function_execution, str(input.id))
        if row is None:
            # The execution was started by someone else under this id without an arn.
            raise ValidationError(f"an execution named {input.id!r} already exists")
        return StepFunctions.from_row(row)
