"""AppSync-shaped errors: every error a client sees says what kind it is, nothing more.

AppSync's error object has ``message``, ``errorType``, ``errorInfo``, ``path``,
``locations`` and ``data``. Domain errors keep their type and message, whether
raised here or carried out of Temporal as an ``ApplicationError`` (its
``type`` is the ``errorType``). Parse and validation errors are
``ValidationError``; Temporal not answering in time is ``ServiceUnavailable``.
Anything else is a bug: the client gets ``InternalFailure`` with the request
id, and the log gets the traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.execution import ExecutionResult as StrawberryExecutionResult
from temporalio.exceptions import ApplicationError

from booking.errors import DOMAIN_ERRORS, DomainError, UnauthorizedException, ValidationError

log = logging.getLogger("api.errors")


class ServiceUnavailable(DomainError):
    """Temporal did not answer a call within BOOKING_TEMPORAL_CALL_TIMEOUT_SECONDS.

    No worker polls the task queue, or it is saturated. The API's own answer,
    never carried inside Temporal, so it lives here rather than in
    ``booking.errors``; retrying with the same idempotencyKey or
    paymentReference is safe.
    """


INTERNAL_FAILURE = "InternalFailure"  # no class: it names a bug, never raised on purpose
VALIDATION_ERROR = ValidationError.error_type
_APPSYNC_KEYS = ("errorType", "errorInfo", "data")


def domain_error_from(exc: BaseException | None) -> DomainError | None:
    """The domain error inside ``exc``: itself, or a cause Temporal wrapped around it.

    ``WorkflowUpdateFailedError``, ``WorkflowFailureError``, ``ActivityError``
    and ``ChildWorkflowError`` keep the original failure as ``cause``.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DomainError):
            return exc
        if isinstance(exc, ApplicationError) and exc.type in DOMAIN_ERRORS:
            return DOMAIN_ERRORS[exc.type](exc.message)
        if isinstance(exc, GraphQLError):
            exc = exc.original_error
            continue
        exc = getattr(exc, "cause", None) or exc.__cause__
    return None


def classify(error: GraphQLError) -> tuple[str, str, dict[str, Any] | None, bool]:
    """(errorType, message, errorInfo, unexpected) for one error."""
    original = error.original_error
    domain = domain_error_from(original)
    if domain is not None:
        return domain.error_type, domain.message, None, False
    if isinstance(original, InvalidOperationTypeError):
        # A query or mutation sent where only subscriptions run (/graphql/realtime).
        return VALIDATION_ERROR, original.as_http_error_reason("this endpoint"), None, False
    if error.path is None and (
        original is None
        or isinstance(original, GraphQLError | ValueError | TypeError | CannotGetOperationTypeError)
    ):
        # Raised before execution: the document or the variables are wrong.
        return VALIDATION_ERROR, error.message, None, False
    return INTERNAL_FAILURE, "", None, True


class AppSyncErrors(SchemaExtension):
    """Rewrites every error into AppSync's shape, masking the unexpected ones.

    The AppSync keys travel in ``extensions`` until :func:`appsync_error`
    lifts them to the top level of the response (HTTP and WebSocket alike).
    """

    def _convert(self, error: GraphQLError) -> GraphQLError:
        if error.extensions and "errorType" in error.extensions:
            return error  # already converted (a stream's last result is seen twice)
        error_type, message, info, unexpected = classify(error)
        context = self.execution_context.context
        request_id = getattr(context, "request_id", "-")
        if unexpected:
            log.error(
                "unexpected error (request id %s) at %s: %s",
                request_id,
                error.path,
                error.message,
                exc_info=error.original_error or error,
            )
            message = f"An internal error occurred. Request id: {request_id}"
            info = {"requestId": request_id}
        metrics = getattr(getattr(context, "services", None), "metrics", None)
        if metrics is not None:
            metrics.graphql_errors.labels(error_type=error_type).inc()
        return GraphQLError(
            message=message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            original_error=None,
            extensions={"errorType": error_type, "errorInfo": info, "data": None},
        )

    def _process(self, result: object) -> None:
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = [self._convert(e) for e in errors]  # type: ignore[attr-defined]

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        if isinstance(result, GraphQLExecutionResult | StrawberryExecutionResult):
            self._process(result)
        elif (initial := getattr(result, "initial_result", None)) is not None:
            self._process(initial)
        # Errors that never reach ``result`` (validation of a subscription).
        pre = self.execution_context.pre_execution_errors
        if pre:
            self.execution_context.pre_execution_errors = [self._convert(e) for e in pre]

    def on_stream_result(self, result: Any) -> Iterator[None]:
        self._process(result)
        yield None


def appsync_error(formatted: dict[str, Any]) -> dict[str, Any]:
    """One formatted GraphQL error in AppSync's layout."""
    extensions = dict(formatted.get("extensions") or {})
    error_type = extensions.pop("errorType", VALIDATION_ERROR)
    shaped: dict[str, Any] = {
        "path": formatted.get("path"),
        "data": extensions.pop("data", None),
        "errorType": error_type,
        "errorInfo": extensions.pop("errorInfo", None),
        "locations": [{**loc, "sourceName": None} for loc in formatted.get("locations") or []],
        "message": formatted.get("message", ""),
    }
    return shaped


def unauthorized_body(message: str) -> dict[str, Any]:
    """The HTTP 401 body AppSync sends when credentials are missing or wrong."""
    return {"errors": [{"errorType": UnauthorizedException.error_type, "message": message}]}


def request_error_body(message: str, error_type: str = VALIDATION_ERROR) -> dict[str, Any]:
    """A request refused before GraphQL could read it (bad JSON, wrong method)."""
    return {
        "data": None,
        "errors": [
            {
                "path": None,
                "data": None,
                "errorType": error_type,
                "errorInfo": None,
                "locations": [],
                "message": message,
            }
        ],
    }
