"""Typed search attributes that make bookings listable in the Temporal Web UI.

Operators filter with, for example, ``BookingStatus = 'PENDING' AND
HoldExpiresAt < '2026-11-27T12:00:00Z'``. They must be registered on the
namespace before a workflow uses them (``booking.temporal.register_search_attributes``).
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

BOOKING_STATUS = SearchAttributeKey.for_keyword("BookingStatus")
APARTMENT_ID = SearchAttributeKey.for_keyword("ApartmentId")
TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
HOLD_EXPIRES_AT = SearchAttributeKey.for_datetime("HoldExpiresAt")

ALL_KEYS = (BOOKING_STATUS, APARTMENT_ID, TENANT_ID, HOLD_EXPIRES_AT)
