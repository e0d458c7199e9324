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

from booking.contract import MONTH_NIGHTS, InvoiceState, RentSchedule


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


def schedule_of(invoices: list[InvoiceState], rules: RentRules) -> RentSchedule:
    """A lease's invoices with the rules it follows, as its workflow carries them."""
    return RentSchedule(
        invoices=invoices,
        issue_days=rules.issue_days,
        grace_days=rules.grace_days,
        reminder_days=rules.reminder_days,
        late_fee_flat=rules.late_fee_flat,
        late_fee_percent=rules.late_fee_percent,
    )


def rules_of(schedule: RentSchedule) -> RentRules:
    """The rules a lease's schedule carries (those of the worker that wrote it)."""
    return RentRules(
        issue_days=schedule.issue_days,
        grace_days=schedule.grace_days,
        reminder_days=schedule.reminder_days,
        late_fee_flat=schedule.late_fee_flat,
        late_fee_percent=schedule.late_fee_percent,
    )


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


# -- moving a lease's end: notice (earlier) and renewal (later) ------------------------------

UNPAID = ("SCHEDULED", "ISSUED", "OVERDUE")


@dataclass(frozen=True)
class WrittenInvoice:
    """What reshaping needs of an invoice already written."""

    invoice_id: str
    seq: int
    period_start: date
    period_end: date
    rent: int
    late_fee: int
    status: str
    refunded: int = 0  # paid money already given back


@dataclass(frozen=True)
class Resized:
    invoice_id: str
    period_end: date
    rent: int


@dataclass(frozen=True)
class Reshape:
    """The invoice changes that move a lease's end; applied in one transaction."""

    resized: list[Resized]  # a period cut short (notice) or made whole again (renewal)
    voided: list[str]  # periods from the new end on
    refunds: list[tuple[str, int]]  # (invoice id, amount): money paid for nights given up
    added: list[RentPeriod]  # the renewal's new periods (seq continuing the lease's)


def anchor_on_or_after(start: date, day: date) -> date:
    """The first period boundary (the stay's start day in some month) on or after ``day``."""
    months = (day.year - start.year) * 12 + day.month - start.month
    boundary = month_from(start, max(months - 1, 0))
    while boundary < day:
        months += 1
        boundary = month_from(start, max(months - 1, 0))
    return boundary


def period_rent(start: date, period_start: date, period_end: date, monthly_rent: int) -> int:
    """A whole period (boundary to boundary) costs a month; any other span its nights."""
    if period_start == anchor_on_or_after(start, period_start) and period_end == (
        anchor_on_or_after(start, period_start + timedelta(days=1))
    ):
        return monthly_rent
    return prorated(monthly_rent, (period_end - period_start).days)


def reshape(
    invoices: list[WrittenInvoice],
    start: date,
    old_end: date,
    new_end: date,
    monthly_rent: int,
) -> Reshape:
    """The changes that make a lease ``[start, old_end)`` end at ``new_end`` instead.

    Earlier (notice): periods from ``new_end`` on are VOID, the one it falls in ends there and
    costs its nights; money already paid for nights no longer in the stay is refunded.
    Later (renewal): a last period that was cut short is made whole again when it is unpaid
    (else the nights after it get an invoice of their own), then one invoice per period up
    to ``new_end``. A lease without invoices (a stay from before leases collected rent, or a
    short stay renewed into a lease) counts as paid up to ``old_end``.
    """
    live = sorted((i for i in invoices if i.status != "VOID"), key=lambda i: i.period_start)
    resized: list[Resized] = []
    voided: list[str] = []
    refunds: list[tuple[str, int]] = []
    added: list[RentPeriod] = []
    if new_end < old_end:
        for invoice in live:
            paid = invoice.status == "PAID"
            if invoice.period_start >= new_end:
                voided.append(invoice.invoice_id)
                if paid:
                    refunds.append(
                        (invoice.invoice_id, invoice.rent + invoice.late_fee - invoice.refunded)
                    )
            elif invoice.period_end > new_end:
                rent = min(
                    invoice.rent,
                    period_rent(start, invoice.period_start, new_end, monthly_rent),
                )
                resized.append(Resized(invoice.invoice_id, new_end, invoice.rent if paid else rent))
                if paid and rent < invoice.rent - invoice.refunded:
                    refunds.append((invoice.invoice_id, invoice.rent - invoice.refunded - rent))
        return Reshape(resized, voided, refunds, added)
    if new_end == old_end:
        return Reshape(resized, voided, refunds, added)
    covered = old_end
    last = live[-1] if live else None
    boundary = anchor_on_or_after(start, old_end)
    if (
        last is not None
        and last.status in UNPAID
        and last.seq != 0
        and last.period_end == old_end
        and boundary > old_end
    ):
        covered = min(boundary, new_end)
        rent = period_rent(start, last.period_start, covered, monthly_rent)
        resized.append(Resized(last.invoice_id, covered, rent))
    seq = max((i.seq for i in invoices), default=0) + 1
    while covered < new_end:
        period_end = min(anchor_on_or_after(start, covered + timedelta(days=1)), new_end)
        rent = period_rent(start, covered, period_end, monthly_rent)
        added.append(RentPeriod(seq, covered, period_end, rent))
        seq += 1
        covered = period_end
    return Reshape(resized, voided, refunds, added)
