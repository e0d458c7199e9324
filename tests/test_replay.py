"""Replay recorded histories of every booking path against today's workflow code.

The JSON files in ``tests/histories/`` were recorded from real runs of the tests in
``tests/test_workflow.py`` and ``tests/test_workflow_race.py`` (paid and lease ended, paid by
signal, expired, cancelled, late payment refunded, duplicate payments, wrong amount and
currency, rejections, and the payment/timer race), and from ``tests/test_workflow_sweep.py``
(the sweep after a failed reserve, behind the ``reserve-sweep-after-failure`` patch). A
change to the workflow that would break executions already in flight (a command added,
removed or reordered) fails here. Never re-record an existing history: it proves that
executions of older code still replay. A new path gets a new file; to record it::

    BOOKING_RECORD_HISTORIES=1 .venv/bin/pytest tests/test_workflow_sweep.py -k <test>
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from booking.converter import DATA_CONVERTER
from tests.helpers import HISTORIES
from workflows.booking import ApartmentBookingWorkflow

EXPECTED = {
    "paid_lease_ended",
    "paid_by_signal",
    "expired",
    "tenant_cancelled",
    "late_payment_refunded",
    "duplicate_payments",
    "wrong_amount_and_currency",
    "rejected_validation",
    "rejected_not_found",
    "rejected_unavailable",
    "race_signal_with_timer",
    "race_update_with_timer",
    "race_signal_received_before_deadline",
    "rejected_after_retry_swept",
    "reservation_failed_swept",
}


def _histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"replay-{path.stem}", json.loads(path.read_text()))


def test_every_path_has_a_recorded_history() -> None:
    assert {path.stem for path in _histories()} >= EXPECTED


@pytest.mark.parametrize("path", _histories(), ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    history = _load(path)
    replayer = Replayer(workflows=[ApartmentBookingWorkflow], data_converter=DATA_CONVERTER)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
