"""CatalogWorkflow: the write path for users, buildings and apartments.

The API never writes to the database; it asks Temporal. A catalog write is one
activity, so the workflow is short, but it buys what the booking workflow
buys: retries of transient database errors, an audit trail in the Web UI, and
one place (the activities) that owns every write.

The API calls :func:`run_catalog_write`; a domain error (for example an e-mail
already in use) comes back as the ``ApplicationError`` type named in
``booking.errors`` inside a ``WorkflowFailureError``.

The activities are referenced by name, not imported, so that importing this
module (as the API does) never imports ``activities``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy
from temporalio.exceptions import ActivityError, ApplicationError

CatalogOperation = Literal[
    "create_user", "update_user", "delete_user", "create_building", "create_apartment"
]

# Errors that retrying cannot fix; everything else (a lost connection, a
# restarting database) is retried with backoff.
NON_RETRYABLE = [
    "ValidationError",
    "UserNotFound",
    "BuildingNotFound",
    "ApartmentNotFound",
]


@dataclass(frozen=True)
class UserData:
    id: str
    first_name: str
    last_name: str
    email: str
    verified: bool
    user_type: str  # ADMIN | TENANT | CARETAKER


@dataclass(frozen=True)
class UserUpdate:
    id: str
    first_name: str
    last_name: str
    verified: bool
    user_type: str


@dataclass(frozen=True)
class BuildingData:
    id: str
    user_id: str
    name: str
    street_address: str
    postal_code: str
    city: str
    country: str
    number_of_apartments: int


@dataclass(frozen=True)
class ApartmentData:
    id: str
    apartment_number: str
    building_id: str
    number_of_rooms: int
    kitchen: bool
    apartment_type: str  # SINGLE_ROOM | DOUBLE_ROOM | VILLA
    apartment_status: str  # VACANT | OCCUPIED (RESERVED only through a booking)
    monthly_rent: int  # minor units
    currency: str  # ISO 4217
    caretaker_id: str | None = None


@dataclass(frozen=True)
class CatalogRequest:
    """One write. Exactly the field that matches ``operation`` is set."""

    operation: CatalogOperation
    user: UserData | None = None
    user_update: UserUpdate | None = None
    user_id: str | None = None  # delete_user
    building: BuildingData | None = None
    apartment: ApartmentData | None = None

    def target_id(self) -> str:
        for candidate in (self.user, self.user_update, self.building, self.apartment):
            if candidate is not None:
                return candidate.id
        if self.user_id is not None:
            return self.user_id
        raise ValueError(f"{self.operation} request carries no record")


@dataclass(frozen=True)
class CatalogResult:
    operation: CatalogOperation
    id: str
    # False when a retried create found its row already written, or a delete
    # found nothing to delete.
    changed: bool
    at: datetime


@workflow.defn(name="CatalogWorkflow")
class CatalogWorkflow:
    @workflow.run
    async def run(self, request: CatalogRequest) -> CatalogResult:
        payload: object
        match request.operation:
            case "create_user":
                payload = request.user
            case "update_user":
                payload = request.user_update
            case "delete_user":
                payload = request.user_id
            case "create_building":
                payload = request.building
            case "create_apartment":
                payload = request.apartment
        if payload is None:
            raise ApplicationError(
                f"{request.operation} needs its record", type="ValidationError", non_retryable=True
            )
        try:
            result: CatalogResult = await workflow.execute_activity(
                request.operation,
                payload,
                result_type=CatalogResult,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=200),
                    maximum_interval=timedelta(seconds=5),
                    maximum_attempts=20,
                    non_retryable_error_types=NON_RETRYABLE,
                ),
                summary=f"{request.operation} {request.target_id()}",
            )
        except ActivityError as err:
            # Re-raise the activity's own error so that the caller sees its
            # type (ValidationError, UserNotFound, ...) and not "activity failed".
            if isinstance(err.cause, ApplicationError):
                raise ApplicationError(
                    err.cause.message, type=err.cause.type, non_retryable=True
                ) from err
            raise
        return result


def catalog_workflow_id(request: CatalogRequest) -> str:
    base = f"catalog-{request.operation}-{request.target_id()}"
    if request.operation.startswith("create_"):
        # A create is keyed by the new record's id: a retried call joins the
        # first instead of writing twice.
        return base
    # Two different updates of one record are two writes, never merged.
    return f"{base}-{uuid.uuid4()}"


async def run_catalog_write(
    client: Client, task_queue: str, request: CatalogRequest
) -> CatalogResult:
    """Run one catalog write and wait for it (typically tens of milliseconds)."""
    return await client.execute_workflow(
        CatalogWorkflow.run,
        request,
        id=catalog_workflow_id(request),
        task_queue=task_queue,
        # A retried API call for the same record joins the write in flight.
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        # Writes are short; a stuck one must not hang an API request for long.
        execution_timeout=timedelta(seconds=30),
    )
