"""Every write of booking state, as activities of the workflows, grouped by feature.

=================  ==============================================================
``holds``          reserve (place the hold), extend it, release it unpaid
``payments``       confirm with its payment, refund what cannot be applied
``leases``         a paid stay's end: its move-out day, notice and renewal
``rent``           a lease's invoices, each invoice's steps, rent payments
``waitlist``       join, leave, and the hand-on after a release committed
``base``           what they share: bounds in the database, policy, base class
=================  ==============================================================

:class:`BookingActivities` is all of them on one pool: what the worker registers.
"""

from __future__ import annotations

from activities.base import AttemptBounds, BookingPolicy
from activities.holds import HoldActivities
from activities.leases import LeaseActivities
from activities.payments import PaymentActivities
from activities.rent import RentActivities
from activities.waitlist import WaitlistActivities

__all__ = ["AttemptBounds", "BookingActivities", "BookingPolicy"]


class BookingActivities(
    HoldActivities, PaymentActivities, LeaseActivities, RentActivities, WaitlistActivities
):
    """Every activity of the booking and waiting-list workflows, handed one pool."""
