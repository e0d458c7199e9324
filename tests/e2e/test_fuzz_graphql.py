"""Property-based fuzzing of the real GraphQL API with hypothesis-graphql.

Queries and mutations are generated from the committed schema (api/schema.graphql): valid
documents with arbitrary argument values (``Mode.POSITIVE``) and documents with one schema
violation (``Mode.NEGATIVE``). Each is sent over real HTTP as a trusted API-key caller, the
most powerful one. Properties:

- never HTTP 500, and always a JSON body;
- every error is AppSync-shaped with an ``errorType``, and never ``InternalFailure`` (an
  unexpected exception, even masked, is a bug) nor a trace of our internals;
- afterwards the database is consistent for everything the fuzzer touched (checked when
  each fuzz test ends, by its ``fuzz_run`` fixture, for the rows that test touched).

Case counts come from the Hypothesis profile: ``HYPOTHESIS_PROFILE=bench`` runs 1,000
cases per test (the benchmark run), the default ``ci`` profile fewer.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes

from booking.doctor import examine
from tests.e2e.helpers import E2EStack, Gql

pytestmark = pytest.mark.e2e

SCHEMA = (Path(__file__).resolve().parents[2] / "api" / "schema.graphql").read_text()
INTERNAL_MARKERS = ("Traceback", "asyncpg", 'File "', "temporalio.", "RPCError", "NoneType")

_BASE = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.register_profile("ci", parent=_BASE, max_examples=60)
settings.register_profile("bench", parent=_BASE, max_examples=1000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# AppSync's scalars: mostly well-formed values, sometimes anything at all.
SCALARS = {
    "AWSDate": st.one_of(
        st.dates().map(lambda d: nodes.String(d.isoformat())),
        st.text(max_size=20).map(nodes.String),
    ),
    "AWSDateTime": st.one_of(
        st.datetimes(timezones=st.just(UTC)).map(lambda d: nodes.String(d.isoformat())),
        st.text(max_size=30).map(nodes.String),
    ),
}


@dataclass
class FuzzRun:
    """One fuzz test's cases: when they began and how many were sent."""

    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    cases: int = 0


async def _assert_consistent_since(stack: E2EStack, started: datetime) -> str:
    """What was touched since ``started`` is consistent; returns a summary line."""
    pool = stack.pool
    touched_apartments = {
        r["id"]
        for r in await pool.fetch("SELECT id FROM apartments WHERE updated_on >= $1", started)
    }
    touched_bookings = {
        r["id"] for r in await pool.fetch("SELECT id FROM bookings WHERE created_on >= $1", started)
    }
    reserved_without_hold = await pool.fetch(
        """SELECT a.id FROM apartments a
            WHERE a.id = ANY($1::text[]) AND a.apartment_status = 'RESERVED'
              AND NOT EXISTS (SELECT 1 FROM bookings b
                               WHERE b.apartment_id = a.id AND b.booking_status = 'PENDING')""",
        list(touched_apartments),
    )
    assert reserved_without_hold == []
    findings = await examine(pool, stack.client)
    mine = [
        f
        for f in findings
        if f.apartment_id in touched_apartments or f.booking_id in touched_bookings
    ]
    assert mine == [], mine
    return f"touched {len(touched_apartments)} apartments, {len(touched_bookings)} bookings"


@pytest.fixture
async def fuzz_run(stack: E2EStack) -> AsyncIterator[FuzzRun]:
    """Shared by every example of one fuzz test; checks the database after the last."""
    run = FuzzRun()
    yield run
    assert run.cases > 0, "no fuzz case was sent"
    print(f"fuzz cases: {run.cases}; " + await _assert_consistent_since(stack, run.started))


async def _send(admin: Gql, run: FuzzRun, document: str, mode: str) -> None:
    run.cases += 1
    response = await admin.http.post("/graphql", json={"query": document})
    assert response.status_code != 500, (document, response.text)
    assert response.status_code in (200, 400), (document, response.status_code, response.text)
    body: dict[str, Any] = response.json()
    assert "data" in body or "errors" in body, body
    for error in body.get("errors") or []:
        assert set(error) >= {"message", "errorType"}, error
        assert error["errorType"] != "InternalFailure", (document, error)
        text = str(error)
        for marker in INTERNAL_MARKERS:
            assert marker not in text, (marker, document, error)
    if mode == "negative":
        # A document that breaks the schema is refused as a whole.
        assert body.get("errors"), (document, body)


@given(document=from_schema(SCHEMA, custom_scalars=SCALARS, allow_x00=True))
async def test_valid_documents_with_arbitrary_values(
    admin: Gql, fuzz_run: FuzzRun, document: str
) -> None:
    await _send(admin, fuzz_run, document, "positive")


@given(document=from_schema(SCHEMA, custom_scalars=SCALARS, allow_x00=True, mode=Mode.NEGATIVE))
async def test_documents_breaking_the_schema(admin: Gql, fuzz_run: FuzzRun, document: str) -> None:
    await _send(admin, fuzz_run, document, "negative")
