"""The retry policy every workflow gives its activities.

Transient database trouble is retried with backoff for as long as it lasts; the database rows
are the truth and every activity is idempotent, so a late success is still right. The domain
refusals are final.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

from booking.errors import (
    ApartmentNotFound,
    ApartmentUnavailable,
    BookingNotCancellable,
    BookingNotFound,
    HoldLimitReached,
    HoldNotExtendable,
    PaymentRejected,
    UserNotFound,
    ValidationError,
    WaitlistEntryNotFound,
)

NON_RETRYABLE = [
    error.error_type
    for error in (
        ApartmentUnavailable,
        ApartmentNotFound,
        ValidationError,
        UserNotFound,
        BookingNotFound,
        BookingNotCancellable,
        PaymentRejected,
        HoldLimitReached,
        HoldNotExtendable,
        WaitlistEntryNotFound,
    )
]

ACTIVITY_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=NON_RETRYABLE,
)
