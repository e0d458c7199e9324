"""The calendar of an apartment: stays as ranges of nights, and what a window of them shows.

A stay covers the nights ``[start_date, end_date)``: ``end_date`` is the move-out day, not a
night of the stay (as hotels count it), so two stays touch without overlapping when one's
``end_date`` is the other's ``start_date``. The live stays of an apartment (open holds, paid
stays whose lease has not ended) never share a night: the database's exclusion constraint
``bookings_no_overlapping_stays`` refuses it whatever the code does.

This module is pure (no I/O): the store reads the stays, these functions say what they mean.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Final

# A calendar window is at most a year (and a day: 366 covers a leap year).
MAX_CALENDAR_DAYS: Final = 366

FREE: Final = "FREE"
HELD: Final = "HELD"
BOOKED: Final = "BOOKED"


@dataclass(frozen=True)
class Stay:
    """One booking's nights, as the calendar sees it."""

    booking_id: str
    user_id: str
    start_date: date
    end_date: date
    booking_status: str  # PENDING | APPROVED
    lease_ended_at: datetime | None = None

    @property
    def state(self) -> str:
        return HELD if self.booking_status == "PENDING" else BOOKED


@dataclass(frozen=True)
class CalendarRange:
    start_date: date
    end_date: date
    state: str  # FREE | HELD | BOOKED
    booking_id: str | None = None


def overlaps(a_start: date, a_end: date, b_start: date, b_end: date) -> bool:
    """Whether ``[a_start, a_end)`` and ``[b_start, b_end)`` share a night."""
    return a_start < b_end and b_start < a_end


def window_problem(start: date, end: date, *, name: str = "to", first: str = "from") -> str | None:
    """Why ``[start, end)`` is not a calendar window, or None."""
    if end <= start:
        return f"{name} must be after {first}"
    if (end - start).days > MAX_CALENDAR_DAYS:
        return f"a calendar window is at most {MAX_CALENDAR_DAYS} days, got {(end - start).days}"
    return None


def calendar_ranges(
    stays: Iterable[Stay], start: date, end: date, *, let_outside: bool = False
) -> list[CalendarRange]:
    """Consecutive ranges covering ``[start, end)``: each stay's nights inside the window
    (HELD or BOOKED, with its booking), FREE between them.

    An apartment let outside this service is BOOKED throughout, by no booking of ours. Stays
    are clipped where an ended lease's nights meet another stay's (history the exclusion
    constraint does not count), so the ranges never overlap.
    """
    if let_outside:
        return [CalendarRange(start, end, BOOKED)]
    ranges: list[CalendarRange] = []
    cursor = start
    for stay in sorted(stays, key=lambda s: (s.start_date, s.end_date)):
        first = max(stay.start_date, cursor)
        last = min(stay.end_date, end)
        if last <= first:
            continue
        if first > cursor:
            ranges.append(CalendarRange(cursor, first, FREE))
        ranges.append(CalendarRange(first, last, stay.state, stay.booking_id))
        cursor = last
    if cursor < end:
        ranges.append(CalendarRange(cursor, end, FREE))
    return ranges


def taken_message(apartment_id: str, clash: Stay, start: date, end: date) -> str:
    """Why a stay ``[start, end)`` cannot be reserved: the live stay ``clash`` has some of its
    nights (the API's read and the reserve step say it alike)."""
    return (
        f"apartment {apartment_id} is {clash.state} from {clash.start_date} to "
        f"{clash.end_date}, which shares nights with the stay asked for ({start} to {end})"
    )


def let_outside_message(apartment_id: str) -> str:
    return f"apartment {apartment_id} is let outside this service (OCCUPIED)"
