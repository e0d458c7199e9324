"""Turn database errors into the two kinds Temporal needs to know apart.

A constraint or data error will fail the same way on every attempt, so it
becomes a non-retryable ``ApplicationError`` whose type the client sees
(``ValidationError`` unless the caller names a better one). Anything else
(connection lost, server restarting, serialization failure, deadlock) is left
alone: the activity fails and Temporal retries it with backoff.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
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
    by_constraint: Mapping[str, tuple[str, str]] | None = None,
) -> Iterator[None]:
    """Raise a non-retryable ApplicationError for constraint and data errors.

    ``by_constraint`` maps a constraint name to the (error type, message) to use when that
    constraint is the one violated (for example a foreign key to ``users`` ->
    ``UserNotFound``, "the user does not exist"). Messages reach clients, so they name no
    constraint, table or exception class; those go into the error's details for the logs.
    """
    try:
        yield
    except _PERMANENT as exc:
        constraint = getattr(exc, "constraint_name", None) or ""
        chosen, reason = (by_constraint or {}).get(constraint, (error_type, _describe(exc)))
        raise ApplicationError(
            f"{message}: {reason}",
            {"constraint": constraint, "sqlstate": exc.sqlstate},
            type=chosen,
            non_retryable=True,
        ) from exc


def _describe(exc: asyncpg.PostgresError) -> str:
    """What went wrong, in words a client can act on."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return "a record like it already exists"
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return "it refers to a record that does not exist"
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return "a value breaks a rule of the booking store"
    return "a value cannot be stored (too long, out of range, or an invalid character)"
