"""When a loop must look again although no data changed: the next SLA tier or stale run."""

from __future__ import annotations

from datetime import timedelta

from metawsm.domain.snapshot import Snapshot, next_due
from tests.fixtures.snapshots import NOW
from tests.unit.test_watch_classify import guidance, snap, thread


def due(*runs: object, stale_after_s: int | None = None) -> object:
    return next_due(
        Snapshot(generated_at=NOW, runs=list(runs)),  # type: ignore[arg-type]
        sla_minutes=30,
        human_minutes=60,
        stale_after_s=stale_after_s,
    )


def test_nothing_waiting_and_no_stale_rule_is_never_due() -> None:
    assert due(snap()) is None
    assert due() is None


def test_a_waiting_thread_is_due_at_its_next_tier_not_at_one_already_reached() -> None:
    # Waiting since NOW - 40 min: the operator tier (30) is behind it, the human tier (60) ahead.
    assert due(snap(open_threads=[thread()])) == NOW + timedelta(minutes=20)


def test_an_answered_thread_never_escalates() -> None:
    assert due(snap(open_threads=[thread(state="answered")])) is None


def test_a_guidance_request_is_due_at_its_first_tier() -> None:
    assert due(snap(pending_guidance=[guidance()])) == NOW + timedelta(minutes=25)


def test_the_earliest_of_every_run_wins_and_a_signal_driven_run_turns_stale() -> None:
    runs = [snap(open_threads=[thread()]), snap(run_id="r2", pending_guidance=[guidance()])]
    assert due(*runs) == NOW + timedelta(minutes=20)
    # Last event a minute ago, stale after ten: due in nine minutes.
    assert due(*runs, stale_after_s=600) == NOW + timedelta(minutes=9)
    assert due(snap(status="paused"), stale_after_s=600) is None
