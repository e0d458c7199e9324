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

# A lease's rent: CURRENT (nothing owed), ISSUED (an invoice issued, not yet due or paid),
# OVERDUE (an invoice past its grace period), ENDED; and the next unpaid invoice's due date.
# "Every lease with an overdue invoice" is RentStatus = 'OVERDUE'.
RENT_STATUS = SearchAttributeKey.for_keyword("RentStatus")
NEXT_RENT_DUE = SearchAttributeKey.for_datetime("NextRentDue")

ALL_KEYS = (BOOKING_STATUS, APARTMENT_ID, TENANT_ID, HOLD_EXPIRES_AT, RENT_STATUS, NEXT_RENT_DUE)
