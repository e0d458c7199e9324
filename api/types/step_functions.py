"""The Step Functions tutorial's two types, named as its schema names them."""

from __future__ import annotations

import strawberry

from booking.store.reads import StepFunctionRow


@strawberry.type(name="stepfunctions")
class StepFunctions:
    id: str
    arn: str

    @classmethod
    def from_row(cls, row: StepFunctionRow) -> StepFunctions:
        return cls(id=row.id, arn=row.arn)


@strawberry.input
class StepFunctionsInput:
    id: strawberry.ID
    arn: str
