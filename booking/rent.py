"""A lease's rent: its periods and what each costs. Pure (no I/O), used by the workflow.

A paid stay longer than one period is a lease. Its periods start on the stay's start day each
month, clamped to the month's last day (a lease from 31 January has periods from 28 or 29
February, 31 March, 30 April, ...); the last period ends at the stay's ``end_date``. A full
period costs the ``monthly_rent`` the stay was booked at; a shorter last one its nights,
``monthly_rent x nights / 30`` rounded up to the minor unit (never more than a month). The
first period is what paying the booking paid (``amount_due``).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from booking.contract import MONTH_NIGHTS


@dataclass(frozen=True)
class RentPeriod:
    seq: int  # 0 for the period the booking's payment paid
    period_start: date
    period_end: date  # the first day after the period
    rent: int  # minor units

    @property
    def due_date(self) -> date:
        """Rent is due on the period's first day."""
        return self.period_start


def month_from(anchor: date, months: int) -> date:
    """``anchor`` ``months`` calendar months later, on the anchor's day, clamped to the
    month's last day (31 January + 1 month = 28 or 29 February; + 2 months = 31 March)."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def prorated(monthly_rent: int, nights: int) -> int:
    """The rent of ``nights`` nights: a share of a 30-night month, rounded up, at most a month."""
    return min(monthly_rent, -(-monthly_rent * nights // MONTH_NIGHTS))


def rent_periods(start: date, end: date, monthly_rent: int, first_rent: int) -> list[RentPeriod]:
    """Every period of the stay ``[start, end)``; the first costs ``first_rent`` (what paying
    the booking took), the others a month, the last (when shorter) its nights."""
    periods: list[RentPeriod] = []
    seq = 0
    period_start = start
    while period_start < end:
        full_end = month_from(start, seq + 1)
        period_end = min(full_end, end)
        if seq == 0:
            rent = first_rent
        elif period_end == full_end:
            rent = monthly_rent
        else:
            rent = prorated(monthly_rent, (period_end - period_start).days)
        periods.append(RentPeriod(seq, period_start, period_end, rent))
        seq += 1
        period_start = period_end
    return periods


def is_lease(start: date, end: date) -> bool:
    """Whether the stay has more than one rent period (it runs past one month)."""
    return end > month_from(start, 1)


# -- what a lease's workflow does next, per invoice -------------------------------------------

ISSUE = "ISSUE"  # SCHEDULED -> ISSUED, and its reminder
DUE = "DUE"  # the due date came, unpaid: a reminder
OVERDUE = "OVERDUE"  # the grace period passed, unpaid: OVERDUE, the late fee, a reminder
REMIND = "REMIND"  # still overdue: another reminder


@dataclass(frozen=True)
class RentRules:
    """The lease's rules, from the worker's settings when the lease began (carried in the
    workflow's state, so that replay never reads configuration)."""

    issue_days: int = 7
    grace_days: int = 5
    reminder_days: int = 3
    late_fee_flat: int = 0  # minor units
    late_fee_percent: int = 0  # of the rent, whole percent
    # Reminders of one overdue invoice, at most (then it is an operator's: RentStatus OVERDUE).
    max_reminders: int = 5

    def late_fee(self, rent: int) -> int:
        """The fee an overdue invoice gets once: the flat amount, or a share of its rent
        (rounded up to the minor unit), never compounding."""
        return self.late_fee_flat + -(-rent * self.late_fee_percent // 100)


@dataclass(frozen=True)
class InvoiceClock:
    """What the workflow knows of one invoice to decide its next step."""

    invoice_id: str
    due_date: date
    rent: int
    status: str  # SCHEDULED | ISSUED | PAID | OVERDUE | VOID
    reminded_due: bool = False
    last_reminder: datetime | None = None
    reminders: int = 0  # sent while overdue


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def next_step(invoice: InvoiceClock, rules: RentRules) -> tuple[datetime, str] | None:
    """When this invoice's next step falls, and which; None once it is PAID or VOID."""
    if invoice.status == "SCHEDULED":
        return _midnight(invoice.due_date - timedelta(days=rules.issue_days)), ISSUE
    if invoice.status == "ISSUED":
        if not invoice.reminded_due:
            return _midnight(invoice.due_date), DUE
        return _midnight(invoice.due_date + timedelta(days=rules.grace_days)), OVERDUE
    if invoice.status == "OVERDUE":
        if invoice.reminders >= rules.max_reminders:
            return None
        last = invoice.last_reminder or _midnight(invoice.due_date)
        return last + timedelta(days=rules.reminder_days), REMIND
    return None
