"""Replay recorded histories of every booking path against today's workflow code.

The JSON files in ``tests/histories/`` were recorded from real runs of the tests in
``tests/test_workflow.py`` and ``tests/test_workflow_race.py`` (paid and lease ended, paid by
signal, expired, cancelled, late payment refunded, duplicate payments, wrong amount and
currency, rejections, and the payment/timer race), and from ``tests/test_workflow_sweep.py``
(the sweep after a failed reserve, behind the ``reserve-sweep-after-failure`` patch). A
change to the workflow that would break executions already in flight (a command added,
removed or reordered) fails here.

Two generations of every path are kept. The files without a prefix ran reserve, confirm and
release as ordinary activities (``ActivityTask*`` events); the ``local_*`` files were recorded
behind the ``reserve-confirm-release-as-local-activities`` patch, where those steps are local
activities (``core_local_activity`` markers) and refunds, the lease end and the sweep's release
stay ordinary activities. Both must keep replaying, and each history must show its steps run
the way its patch markers say.

Never re-record an existing history: it proves that executions of older code still replay
(``record_history`` refuses to overwrite). A new path, or a path the workflow now runs
differently, gets a new name in its test's ``record_history`` call and in ``EXPECTED``; to
record it::

    BOOKING_RECORD_HISTORIES=1 .venv/bin/pytest tests/test_workflow.py -k <test>
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from booking.converter import DATA_CONVERTER
from tests.helpers import HISTORIES, activity_steps
from workflows.booking import (
    LEASE_INVOICES_AT_PAYMENT_PATCH,
    LEASE_RENT_PATCH,
    LOCAL_STEPS_PATCH,
    RENT_LOCAL_STEPS_PATCH,
    STAY_START_PATCH,
    TRUTHFUL_PAYMENTS_PATCH,
    WAITLIST_PATCH,
    ApartmentBookingWorkflow,
)
from workflows.mail import MAIL_PATCH
from workflows.waitlist import WaitlistEntryWorkflow

# What the old executions ran as ordinary activities and the patched ones run as local ones.
LOCAL_STEPS = {
    "reserve_apartment",
    "confirm_booking",
    "release_booking",
    "release_and_offer",
    "extend_hold",
}
# Where a booking ends, before and since WAITLIST_PATCH.
ENDINGS = {"release_booking", "end_lease"}
ENDINGS_AND_OFFERS = {"release_and_offer", "end_lease_and_offer"}

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
    # Recorded behind LOCAL_STEPS_PATCH: reserve, confirm and release as local activities.
    "local_paid_lease_ended",
    "local_paid_by_signal",
    "local_expired",
    "local_tenant_cancelled",
    "local_late_payment_refunded",
    "local_duplicate_payments",
    "local_wrong_amount_and_currency",
    "local_rejected_validation",
    "local_rejected_not_found",
    "local_rejected_unavailable",
    "local_race_signal_with_timer",
    "local_race_update_with_timer",
    "local_race_signal_received_before_deadline",
    "local_rejected_after_retry_swept",
    "local_reservation_failed_swept",
    # Recorded behind TRUTHFUL_PAYMENTS_PATCH: a refunded reference repeated is refused, money
    # for a booking never placed is recorded for refund.
    "local_truthful_reused_reference_refused",
    "local_truthful_unplaced_payment_refunded",
    # Recorded behind WAITLIST_PATCH: a release or a lease's end also offers the apartment to
    # the first tenant waiting for it, in the same transaction.
    "waitlist_paid_lease_ended",
    "waitlist_paid_by_signal",
    "waitlist_expired",
    "waitlist_tenant_cancelled",
    "waitlist_late_payment_refunded",
    "waitlist_duplicate_payments",
    "waitlist_wrong_amount_and_currency",
    "waitlist_race_signal_with_timer",
    "waitlist_race_update_with_timer",
    "waitlist_rejected_after_retry_swept",
    "waitlist_reservation_failed_swept",
    "waitlist_truthful_reused_reference_refused",
    # A reference repeated with another amount or currency: the update refused (no event),
    # the signal ignored.
    "waitlist_reference_repeated_with_other_terms",
    # Holds extended (the extend_hold update moving the durable timer).
    "waitlist_extended_then_paid",
    "waitlist_extended_then_expired",
    "waitlist_race_extension_with_timer",
    # A waiting list: an offer made on release, paid; an offer that lapsed and passed on.
    "waitlist_offer_made_on_expiry",
    "waitlist_offer_paid",
    "waitlist_offer_lapsed",
    "entry_offered_then_booked",
    "entry_left_while_waiting",
    # Recorded behind STAY_START_PATCH: a stay paid ahead wakes at its first night
    # (stay_started), and its lease ends at its move-out day.
    "calendar_paid_stay_started_lease_ended",
    # Recorded behind LEASE_RENT_PATCH: a lease's invoices issued, one paid, one overdue with
    # its fee then paid, the last paid ahead, the end.
    "lease_rent_issued_overdue_paid",
    # A lease renewed (its cut-short last period made whole, new periods invoiced; a renewal
    # into another stay's nights refused), two invoices paid ahead, notice inside the third
    # (prorated, part refunded, later ones VOID), webhook money for a VOID invoice refunded.
    "lease_renewed_then_ended_with_notice",
    # Recorded behind LEASE_INVOICES_AT_PAYMENT_PATCH and RENT_LOCAL_STEPS_PATCH: a lease paid
    # ahead writes its invoices at the payment; its rent steps run as local activities.
    "lease_invoices_at_payment_issued_overdue_paid",
    # Recorded behind MAIL_PATCH (a worker that delivers mail): a hold mailed when placed,
    # reminded before its end (remind_hold, local), expired, a late payment refunded.
    "mail_hold_reminded_expired_refunded",
    # A lease's receipt, its rent issued, due, overdue with the fee, paid late, then notice.
    "mail_lease_receipt_rent_overdue_paid_ended_early",
    # A waiting-list offer mailed, reminded and lapsed; an entry lapsed because its stay began.
    "mail_offer_reminded_lapsed",
    "entry_lapsed_mailed",
}

# Histories of the waiting-list entry's own workflow.
ENTRY_PREFIX = "entry_"


def _histories() -> list[Path]:
    return sorted(HISTORIES.glob("*.json"))


def _load(path: Path) -> WorkflowHistory:
    return WorkflowHistory.from_json(f"replay-{path.stem}", json.loads(path.read_text()))


def _patches(history: WorkflowHistory) -> set[str]:
    """Ids of the patches the execution recorded (``core_patch`` markers)."""
    ids = set()
    for event in history.events:
        marker = event.marker_recorded_event_attributes
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and (
            marker.marker_name == "core_patch"
        ):
            (payload,) = marker.details["patch-data"].payloads
            ids.add(str(json.loads(payload.data)["id"]))
    return ids


def test_every_path_has_a_recorded_history() -> None:
    assert {path.stem for path in _histories()} >= EXPECTED


def test_both_ways_of_running_the_steps_are_covered() -> None:
    steps = [step for path in _histories() for step in activity_steps(_load(path))]
    reserves = [step for step in steps if step.name == "reserve_apartment"]
    assert any(step.local for step in reserves), "no history runs reserve as a local activity"
    assert any(not step.local for step in reserves), "no history runs reserve as an activity"


def _booking_histories() -> list[Path]:
    return [path for path in _histories() if not path.stem.startswith(ENTRY_PREFIX)]


@pytest.mark.parametrize("path", _booking_histories(), ids=lambda p: p.stem)
def test_steps_run_the_way_the_patch_says(path: Path) -> None:
    history = _load(path)
    patches = _patches(history)
    patched = LOCAL_STEPS_PATCH in patches
    mailed = path.stem.startswith("mail_")
    # Only leases collect rent; a stay paid ahead also wakes at its first night.
    lease = path.stem.startswith(("lease_", "mail_lease"))
    since_calendar = path.stem.startswith(("calendar_", "lease_", "mail_lease"))
    since_waitlist = path.stem.startswith(("waitlist_", "calendar_")) or lease or mailed
    assert patched == (path.stem.startswith("local_") or since_waitlist)
    if "truthful" in path.stem:
        assert TRUTHFUL_PAYMENTS_PATCH in patches
    elif not since_waitlist:
        assert TRUTHFUL_PAYMENTS_PATCH not in patches
    names = {step.name for step in activity_steps(history)}
    # Only the calendar's histories wake at a stay's first night; only leases collect rent.
    assert ("stay_started" in names) == since_calendar, names
    assert (STAY_START_PATCH in patches) == since_calendar, patches
    # A lease writes its invoices at its first night (LEASE_RENT_PATCH) or, paid ahead, at
    # its payment (LEASE_INVOICES_AT_PAYMENT_PATCH).
    rent_patches = {LEASE_RENT_PATCH, LEASE_INVOICES_AT_PAYMENT_PATCH} & patches
    assert bool(rent_patches) == lease, patches
    assert ("schedule_rent" in names) == lease, names
    # Only leases move their end (endLease, renewLease).
    moved = "renewed" in path.stem or "ended_early" in path.stem
    assert ("move_lease_end" in names) == moved, names
    # Only executions whose worker delivers mail send it, and remind of a hold's end.
    assert (MAIL_PATCH in patches) == mailed, patches
    assert ("send_mail" in names) == mailed, names
    assert ("remind_hold" in names) == ("reminded" in path.stem), names
    if since_waitlist:
        assert WAITLIST_PATCH in patches
        assert not names & ENDINGS, names
    else:
        assert WAITLIST_PATCH not in patches
        assert not names & ENDINGS_AND_OFFERS, names
    steps = activity_steps(history)
    assert not steps or steps[0].name == "reserve_apartment", steps
    # A release after a failed reserve is the sweep's, always an ordinary activity.
    reserved = bool(steps) and steps[0].outcome == "completed"
    for step in steps:
        if step.name == "rent_step":
            # A lease's rent steps decide their own way (RENT_LOCAL_STEPS_PATCH).
            assert step.local == (RENT_LOCAL_STEPS_PATCH in patches), step
            continue
        if step.name in ("send_mail", "remind_hold"):
            # Mail in the background as an ordinary activity; the reminder's record, local.
            assert step.local == (step.name == "remind_hold"), step
            continue
        if step.name == "schedule_rent":
            # Written with the payment (a local activity) when the lease was paid ahead.
            assert step.local == (LEASE_INVOICES_AT_PAYMENT_PATCH in patches), step
            continue
        released = step.name in ("release_booking", "release_and_offer")
        local = step.name in LOCAL_STEPS and (not released or reserved)
        assert step.local == (patched and local), step


@pytest.mark.parametrize("path", _histories(), ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    history = _load(path)
    replayer = Replayer(
        workflows=[ApartmentBookingWorkflow, WaitlistEntryWorkflow], data_converter=DATA_CONVERTER
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
