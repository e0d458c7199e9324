"""The ids of the demo data that `booking seed` loads.

Kept apart from ``booking.seed`` (which writes through the activities) so that the API,
which never imports ``activities``, can name them too: ``addStepFunction`` books the demo
apartment for the demo tenant, and the dev sign-in button signs in the demo tenant.
"""

from __future__ import annotations

from typing import Final

DEMO_TENANT_ID: Final = "demo-tenant"
DEMO_ADMIN_ID: Final = "demo-admin"
DEMO_CARETAKER_ID: Final = "demo-caretaker"
DEMO_BUILDING_ID: Final = "demo-building"
# The id the original tutorial hard-coded in its state machine.
DEMO_APARTMENT_ID: Final = "1234567"
