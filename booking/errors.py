"""Every error the service raises on purpose, in one place.

The ``error_type`` of each class is the ``errorType`` that GraphQL clients see
and the ``type`` of the Temporal ``ApplicationError`` that carries it out of a
workflow or an activity, so one name travels unchanged from the database to
the client::

    BookingServiceError
    ├── ConfigurationError         (CLI and start-up only; never reaches a client)
    └── DomainError                error_type = class name, unless noted
        ├── ValidationError        bad input: dates, amounts, hold length, ids
        ├── ApartmentNotFound
        ├── ApartmentUnavailable   its nights are taken (another hold or stay), or let outside
        ├── BookingNotFound
        ├── UserNotFound
        ├── BuildingNotFound
        ├── BookingExpired         the hold is over; the payment is refunded
        ├── PaymentRejected        wrong amount or currency, or not PENDING
        ├── BookingNotCancellable  not PENDING any more
        ├── ReservationFailed      the reserve step did not finish in time; nothing is held
        ├── HoldNotExtendable      extendHold refused: not PENDING, over, or out of extensions
        ├── HoldLimitReached       the tenant already holds BOOKING_MAX_HOLDS_PER_TENANT
        ├── LeaseNotChangeable     endLease/renewLease refused: not a running stay, too short
        │                          a notice, or a date on the wrong side of its end
        ├── WaitlistEntryNotFound
        ├── ResultTooLarge         a list longer than the API answers at once
        ├── Unauthorized           a signed-in caller touching what is not theirs
        └── UnauthorizedException  no or invalid credentials (HTTP 401)

Anything else that escapes is a bug: the API masks it as ``InternalFailure``.
"""

from __future__ import annotations

from typing import ClassVar


class BookingServiceError(Exception):
    """Root of the service's own errors."""


class ConfigurationError(BookingServiceError):
    """A setting is missing or not allowed; the message says which and why."""


class DomainError(BookingServiceError):
    error_type: ClassVar[str] = "DomainError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.error_type = cls.__name__


class ValidationError(DomainError):
    pass


class ApartmentNotFound(DomainError):
    pass


class ApartmentUnavailable(DomainError):
    pass


class BookingNotFound(DomainError):
    pass


class UserNotFound(DomainError):
    pass


class BuildingNotFound(DomainError):
    pass


class BookingExpired(DomainError):
    pass


class PaymentRejected(DomainError):
    pass


class BookingNotCancellable(DomainError):
    pass


class ReservationFailed(DomainError):
    pass


class ResultTooLarge(DomainError):
    pass


class HoldNotExtendable(DomainError):
    pass


class HoldLimitReached(DomainError):
    pass


class LeaseNotChangeable(DomainError):
    pass


class WaitlistEntryNotFound(DomainError):
    pass


class Unauthorized(DomainError):
    pass


class UnauthorizedException(DomainError):
    pass


DOMAIN_ERRORS: dict[str, type[DomainError]] = {
    cls.error_type: cls
    for cls in (
        ValidationError,
        ApartmentNotFound,
        ApartmentUnavailable,
        BookingNotFound,
        UserNotFound,
        BuildingNotFound,
        BookingExpired,
        PaymentRejected,
        BookingNotCancellable,
        ReservationFailed,
        ResultTooLarge,
        HoldNotExtendable,
        LeaseNotChangeable,
        HoldLimitReached,
        WaitlistEntryNotFound,
        Unauthorized,
        UnauthorizedException,
    )
}
"""errorType -> class, to turn an ``ApplicationError.type`` back into a DomainError."""
