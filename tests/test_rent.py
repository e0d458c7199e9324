"""Rent periods: the calendar of a lease's money (booking.rent), checked against the rules
and, by property, against any stay."""

from __future__ import annotations

import itertools
from dataclasses import replace
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
    Reshape,
    WrittenInvoice,
    is_lease,
    month_from,
    next_step,
    period_rent,
    prorated,
    rent_periods,
    reshape,
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


def _apply(invoices: list[WrittenInvoice], change: Reshape) -> list[WrittenInvoice]:
    """What the move activity writes, on a list (booking.store.rent does it on rows)."""
    by_id = {i.invoice_id: i for i in invoices}
    for resized in change.resized:
        by_id[resized.invoice_id] = replace(
            by_id[resized.invoice_id], period_end=resized.period_end, rent=resized.rent
        )
    for invoice_id in change.voided:
        by_id[invoice_id] = replace(by_id[invoice_id], status="VOID")
    for invoice_id, amount in change.refunds:
        invoice = by_id[invoice_id]
        by_id[invoice_id] = replace(invoice, refunded=invoice.refunded + amount)
    for period in change.added:
        invoice_id = f"i{period.seq}"
        assert invoice_id not in by_id
        by_id[invoice_id] = WrittenInvoice(
            invoice_id,
            period.seq,
            period.period_start,
            period.period_end,
            period.rent,
            0,
            "SCHEDULED",
        )
    return sorted(by_id.values(), key=lambda i: i.seq)


@given(
    start=st.dates(min_value=date(2026, 1, 1), max_value=date(2030, 12, 31)),
    nights=st.integers(min_value=1, max_value=3 * 366),
    statuses=st.lists(st.sampled_from(["PAID", "SCHEDULED", "ISSUED", "OVERDUE"]), max_size=40),
    moves=st.lists(st.integers(min_value=1, max_value=4 * 366), min_size=1, max_size=4),
    rent=st.integers(min_value=0, max_value=10**7),
    written=st.booleans(),
)
def test_moving_a_lease_end_keeps_its_invoices_tiling_the_stay(
    start: date,
    nights: int,
    statuses: list[str],
    moves: list[int],
    rent: int,
    written: bool,
) -> None:
    """Whatever notices and renewals a lease sees: the invoices still in force tile the stay
    with no gap or overlap, an unpaid one costs what its span costs, a paid one never changes
    its price (money for nights given up is refunded, never more than was paid), and a lease
    without invoices gets them for the nights a renewal adds only."""
    end = start + timedelta(days=nights)
    invoices: list[WrittenInvoice] = []
    if written:
        for period in rent_periods(start, end, rent, amount_due(rent, start, end)):
            status = (
                "PAID"
                if period.seq == 0
                else statuses[period.seq % len(statuses)]
                if (statuses)
                else "SCHEDULED"
            )
            invoices.append(
                WrittenInvoice(
                    f"i{period.seq}",
                    period.seq,
                    period.period_start,
                    period.period_end,
                    period.rent,
                    7 if status == "OVERDUE" else 0,
                    status,
                )
            )
    covered_from = start if written else end
    paid = {i.invoice_id: i.rent + i.late_fee for i in invoices if i.status == "PAID"}
    refunded: dict[str, int] = {}
    for move in moves:
        new_end = start + timedelta(days=move)
        before = {i.invoice_id: i for i in invoices}
        change = reshape(invoices, start, end, new_end, rent)
        invoices = _apply(invoices, change)
        for invoice_id, amount in change.refunds:
            refunded[invoice_id] = refunded.get(invoice_id, 0) + amount
        covered_from = min(covered_from, new_end)
        end = new_end
        live = [i for i in invoices if i.status != "VOID"]
        if live:
            assert live[0].period_start == covered_from
            assert live[-1].period_end == end
        for a, b in itertools.pairwise(live):
            assert a.period_end == b.period_start
        for invoice in live:
            if invoice.status == "PAID":
                assert invoice.rent == before[invoice.invoice_id].rent
            elif (
                invoice.invoice_id not in before or invoice.rent != before[invoice.invoice_id].rent
            ):
                assert invoice.rent == period_rent(
                    start, invoice.period_start, invoice.period_end, rent
                )
            assert 0 <= invoice.rent <= rent or invoice.seq == 0
        for invoice in invoices:
            if invoice.status == "VOID" and invoice.invoice_id in paid:
                assert invoice.refunded == paid[invoice.invoice_id]  # all of it back
            elif invoice.status == "PAID" and invoice.refunded:
                # What it keeps is what its nights cost now.
                kept = invoice.rent - invoice.refunded
                assert kept == min(
                    invoice.rent,
                    period_rent(start, invoice.period_start, invoice.period_end, rent),
                )
    for invoice_id, amount in refunded.items():
        assert 0 < amount <= paid[invoice_id]
