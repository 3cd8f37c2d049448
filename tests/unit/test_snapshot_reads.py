"""The snapshot's control state read from the columns it shows (services/snapshot_reads.py)."""

from __future__ import annotations

import random
from dataclasses import fields
from datetime import UTC, datetime, timedelta

import pytest

from metawsm.domain.control import ControlState, control_at, control_of
from metawsm.services.snapshot_reads import CONTROL_COLUMNS, stored_state

SHOWN = ("thread_id", "pending", "question", "context", "asked_at", "request_event_id",
         "completed", "validation_status", "validation_done_criteria")  # fmt: skip


def test_each_column_read_lands_in_its_control_state_field_and_the_others_are_none() -> None:
    asked = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    row = [asked if c == "asked_at" else 1 if c == "pending" else c for c in CONTROL_COLUMNS]
    state = stored_state("agent-a", row)
    names = [f.name for f in fields(ControlState)]
    assert len(state) == len(names)
    for name, value in zip(names, state, strict=True):
        if name == "agent_name":
            assert value == "agent-a"
        elif name == "pending":
            assert value is True
        elif name == "asked_at":
            assert value == asked
        elif name in CONTROL_COLUMNS:
            assert value == name
        else:
            assert value is None, name


def test_a_stored_time_is_read_as_aware_utc_and_a_missing_one_as_none() -> None:
    row = [None] * len(CONTROL_COLUMNS)
    row[CONTROL_COLUMNS.index("pending")] = 0
    row[CONTROL_COLUMNS.index("asked_at")] = "2026-12-06 12:00:00.250000"
    asked = stored_state("a", row)[[f.name for f in fields(ControlState)].index("asked_at")]
    assert asked == datetime(2026, 12, 6, 12, 0, 0, 250000, tzinfo=UTC)
    row[CONTROL_COLUMNS.index("asked_at")] = None
    state = stored_state("a", row)
    assert state[[f.name for f in fields(ControlState)].index("asked_at")] is None
    assert state[[f.name for f in fields(ControlState)].index("pending")] is False


@pytest.mark.parametrize("seed", range(200))
def test_what_the_snapshot_shows_of_a_read_state_is_what_control_at_makes_of_the_whole(
    seed: int,
) -> None:
    rng = random.Random(seed)
    epoch = rng.randint(1, 3)
    at = datetime(2026, 12, 6, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**6))
    whole = ControlState(
        agent_name="agent-a",
        thread_id=rng.choice([None, "fctrl-1"]),
        pending=rng.random() < 0.5,
        question=rng.choice([None, "which database?"]),
        context=rng.choice([None, "ctx"]),
        asked_at=rng.choice([None, at]),
        request_event_id=rng.choice([None, "fevt-1"]),
        request_seq=rng.randint(0, 9),
        completion_epoch=rng.choice([None, 1, 2, 3]),
        summary=rng.choice([None, "done"]),
        validation_epoch=rng.choice([None, 1, 2, 3]),
        validation_status=rng.choice([None, "passed", "failed"]),
        validation_done_criteria=rng.choice([None, "tests pass"]),
        last_signal_at=at,
        last_event_id="fevt-2",
        last_thread_seq=rng.randint(0, 9),
    )
    row = [getattr(whole, c) for c in CONTROL_COLUMNS]
    shown, expected = control_of(stored_state("agent-a", row), epoch), control_at(whole, epoch)
    for name in SHOWN:
        assert getattr(shown, name) == getattr(expected, name), name
