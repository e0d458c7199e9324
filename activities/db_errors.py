"""Turn database errors into the two kinds Temporal needs to know apart.

A constraint or data error will fail the same way on every attempt, so it
becomes a non-retryable ``ApplicationError`` whose type the client sees
(``ValidationError`` unless the caller names a better one). Anything else
(connection lost, server restarting, serialization failure, deadlock) is left
alone: the activity fails and Temporal retries it with backoff.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
from temporalio.exceptions import ApplicationError

from booking.errors import ValidationError

_PERMANENT = (
    asyncpg.IntegrityConstraintViolationError,  # unique, foreign key, check, not null
    asyncpg.DataError,  # value too long, out of range, bad format
)


@contextmanager
def permanent_db_errors(
    message: str,
    *,
    error_type: str = ValidationError.error_type,
    by_constraint: dict[str, str] | None = None,
) -> Iterator[None]:
    """Raise a non-retryable ApplicationError for constraint and data errors.

    ``by_constraint`` maps a constraint name to the error type to use when that
    constraint is the one violated (for example a foreign key to ``users`` ->
    ``UserNotFound``).
    """
    try:
        yield
    except _PERMANENT as exc:
        constraint = getattr(exc, "constraint_name", None) or ""
        chosen = (by_constraint or {}).get(constraint, error_type)
        raise ApplicationError(
            f"{message}: {_describe(exc)}",
            {"constraint": constraint, "sqlstate": exc.sqlstate},
            type=chosen,
            non_retryable=True,
        ) from exc


def _describe(exc: asyncpg.PostgresError) -> str:
    # The constraint name says what was wrong without echoing row data.
    if isinstance(exc, asyncpg.UniqueViolationError):
        return f"already exists ({exc.constraint_name})"
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return f"refers to a record that does not exist ({exc.constraint_name})"
    if isinstance(exc, asyncpg.CheckViolationError):
        return f"breaks rule {exc.constraint_name}"
    return exc.__class__.__name__
