"""The deliberate differences between the AppSync schemas and ours, with their reasons.

This is the canonical list. The README's "Deviations from the AppSync schemas"
section shows the same entries, and ``tests/test_schema_contract.py`` checks
both that graphql-core's ``find_breaking_changes`` (from the AppSync SDL to
ours) reports exactly these and that the README lists them.

Each key is the ``description`` graphql-core gives the breaking change.
"""

from __future__ import annotations

DEVIATIONS: dict[str, str] = {
    "Field Apartment.tenant changed type from User! to User.": (
        "A vacant apartment has no tenant; AppSync's User! could not answer for it."
    ),
    "Field Apartment.caretaker changed type from User! to User.": (
        "An apartment may have no caretaker assigned yet."
    ),
}
"""graphql-core's description of each breaking change -> why we made it."""

# Additions that graphql-core classifies as "dangerous" (not breaking) are not
# deviations: a new enum value (ApartmentStatus.RESERVED) and new optional
# arguments and input fields keep every AppSync request valid.
