"""Rent periods: the calendar of a lease's money (booking.rent), checked against the rules
and, by property, against any stay."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from booking.contract import amount_due
from booking.rent import (
    DUE,
    ISSUE,
    OVERDUE,
    REMIND,
    InvoiceClock,
    RentRules,
    is_lease,
    month_from,
    next_step,
    prorated,
    rent_periods,
)


def test_periods_start_on_the_stay_day_clamped_to_the_month() -> None:
    periods = rent_periods(date(2027, 1, 31), date(2027, 5, 15), 100_000, 100_000)
    assert [(p.period_start, p.period_end) for p in periods] == [
        (date(2027, 1, 31), date(2027, 2, 28)),
        (date(2027, 2, 28), date(2027, 3, 31)),
        (date(2027, 3, 31), date(2027, 4, 30)),
        (date(2027, 4, 30), date(2027, 5, 15)),
    ]
    # Full periods cost a month; the last, 15 nights, half of one.
    assert [p.rent for p in periods] == [100_000, 100_000, 100_000, 50_000]
    assert [p.due_date for p in periods] == [p.period_start for p in periods]
    assert month_from(date(2028, 1, 31), 1) == date(2028, 2, 29)  # a leap year


def test_the_last_period_is_prorated_by_nights_rounded_up() -> None:
    # 123,457 x 7 / 30 = 28,806.63...: rounded up to the minor unit.
    periods = rent_periods(date(2027, 3, 1), date(2027, 4, 8), 123_457, 123_457)
    assert [p.rent for p in periods] == [123_457, 28_807]
    assert prorated(123_457, 31) == 123_457  # never more than a month


def test_a_stay_of_one_period_is_not_a_lease() -> None:
    assert not is_lease(date(2027, 4, 1), date(2027, 5, 1))
    assert is_lease(date(2027, 4, 1), date(2027, 5, 2))
    assert len(rent_periods(date(2027, 4, 1), date(2027, 5, 1), 90_000, 90_000)) == 1


@given(
    start=st.dates(min_value=date(2026, 1, 1), max_value=date(2030, 12, 31)),
    nights=st.integers(min_value=1, max_value=5 * 366),
    rent=st.integers(min_value=0, max_value=10**9),
)
def test_periods_tile_the_stay_and_cost_what_the_rules_say(
    start: date, nights: int, rent: int
) -> None:
    end = start + timedelta(days=nights)
    first = amount_due(rent, start, end)
    periods = rent_periods(start, end, rent, first)
    # Consecutive, no gap, no overlap, from the first night to the move-out day.
    assert periods[0].period_start == start and periods[-1].period_end == end
    for before, after in itertools.pairwise(periods):
        assert before.period_end == after.period_start
    assert [p.seq for p in periods] == list(range(len(periods)))
    assert periods[0].rent == first
    for period in periods[1:]:
        assert 0 <= period.rent <= rent
        full = period.period_end == month_from(start, period.seq + 1)
        assert period.rent == (
            rent if full else prorated(rent, (period.period_end - period.period_start).days)
        )
    # Every period but the last is a whole month of the anchor's calendar.
    for period in periods[:-1]:
        assert period.period_end == month_from(start, period.seq + 1)
    assert (len(periods) > 1) == is_lease(start, end)


def test_each_invoice_steps_through_issue_due_overdue_and_reminders() -> None:
    rules = RentRules(issue_days=7, grace_days=5, reminder_days=3, late_fee_flat=2_500)
    due = date(2031, 3, 1)
    clock = InvoiceClock("inv", due, 100_000, "SCHEDULED")
    at = datetime(2031, 2, 22, tzinfo=UTC)
    assert next_step(clock, rules) == (at, ISSUE)
    clock = InvoiceClock("inv", due, 100_000, "ISSUED")
    assert next_step(clock, rules) == (datetime(2031, 3, 1, tzinfo=UTC), DUE)
    clock = InvoiceClock("inv", due, 100_000, "ISSUED", reminded_due=True)
    assert next_step(clock, rules) == (datetime(2031, 3, 6, tzinfo=UTC), OVERDUE)
    last = datetime(2031, 3, 6, tzinfo=UTC)
    clock = InvoiceClock("inv", due, 100_000, "OVERDUE", True, last)
    assert next_step(clock, rules) == (datetime(2031, 3, 9, tzinfo=UTC), REMIND)
    capped = InvoiceClock("inv", due, 100_000, "OVERDUE", True, last, reminders=5)
    assert next_step(capped, rules) is None  # five reminders, then an operator's
    for done in ("PAID", "VOID"):
        assert next_step(InvoiceClock("inv", due, 100_000, done), rules) is None


def test_the_late_fee_is_flat_or_a_share_of_the_rent_rounded_up() -> None:
    assert RentRules(late_fee_flat=2_500).late_fee(100_000) == 2_500
    assert RentRules(late_fee_percent=5).late_fee(123_457) == 6_173  # 6,172.85 rounded up
    assert RentRules().late_fee(100_000) == 0
