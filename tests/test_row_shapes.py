"""Every row dataclass against its table: a field the table lacks, or a column nobody decided
about, fails here with its name, not at run time in a query.

``booking.store`` writes a table's shape once, as a dataclass; SELECT lists and INSERTs follow
from its fields (``columns``, ``placeholders``, ``values``). What a dataclass does not read of
its table is listed below, each with the reason, so a new column is read or listed on purpose.
"""

from __future__ import annotations

from dataclasses import fields

import asyncpg
import pytest

from booking.store.bookings import BookingRow, PaymentRow
from booking.store.catalog import ApartmentData, BuildingData, UserData
from booking.store.reads import ApartmentRow, BuildingRow, StepFunctionRow, UserRow
from booking.store.rent import RentInvoiceRow
from booking.store.waitlist import WaitlistRow

# (row dataclass, table, the table's columns it does not read, fields it computes itself)
SHAPES: list[tuple[type, str, set[str], set[str]]] = [
    # stay is start_date..end_date as a daterange (generated), for the calendar's SQL.
    (BookingRow, "bookings", {"stay"}, set()),
    (PaymentRow, "payments", {"recorded_at"}, set()),
    (UserRow, "users", set(), set()),
    (BuildingRow, "buildings", set(), set()),
    # updated_on is the audit's (catalog_events has who and when).
    # Read through apartments_on(day): the status and tenant are that day's.
    (ApartmentRow, "apartments", {"updated_on"}, set()),
    (StepFunctionRow, "step_function_executions", set(), set()),
    (RentInvoiceRow, "rent_invoices", set(), set()),
    # seq orders the list; position is computed from it (POSITION).
    (WaitlistRow, "waitlist_entries", {"seq", "stay"}, {"position"}),
    # What a create writes: the rest is the database's (timestamps) or a booking's (tenant,
    # status changes after the first).
    (UserData, "users", {"created_on", "updated_on"}, set()),
    (BuildingData, "buildings", {"created_on", "update_on"}, set()),
    (ApartmentData, "apartments", {"created_on", "updated_on", "tenant_id"}, set()),
]


async def _columns(pool: asyncpg.Pool, table: str) -> set[str]:
    rows = await pool.fetch(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND table_name = $1",
        table,
    )
    return {r["column_name"] for r in rows}


@pytest.mark.parametrize(
    ("row", "table", "unread", "computed"),
    SHAPES,
    ids=[f"{row.__name__}-{table}" for row, table, _, _ in SHAPES],
)
async def test_a_row_dataclass_is_its_table(
    pool: asyncpg.Pool, row: type, table: str, unread: set[str], computed: set[str]
) -> None:
    columns = await _columns(pool, table)
    assert columns, f"no table {table}"
    names = {f.name for f in fields(row)} - computed
    assert names - columns == set(), f"{row.__name__} has fields {table} lacks"
    assert columns - names == unread, (
        f"{table} has columns {row.__name__} neither reads nor lists as unread: "
        f"{sorted(columns - names - unread)}; unread listed but read or gone: "
        f"{sorted(unread - (columns - names))}"
    )
