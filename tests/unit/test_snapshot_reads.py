"""The snapshot's control state read from the columns it shows (services/snapshot_reads.py)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from metawsm.domain.agent_control import AgentControl
from metawsm.domain.control import ControlState, control_at
from metawsm.services.snapshot_reads import CONTROL_COLUMNS, shown_control

SHOWN = (
    "agent_name", "thread_id", "pending", "question", "context", "asked_at", "request_event_id",
    "completed", "validation_status", "validation_done_criteria",
)  # fmt: skip


def _state(rng: random.Random) -> ControlState:
    at = datetime(2026, 12, 6, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 10**6))
    return ControlState(
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


@pytest.mark.parametrize("seed", range(300))
def test_what_the_snapshot_shows_of_a_read_state_is_what_control_at_makes_of_the_whole(
    seed: int,
) -> None:
    rng = random.Random(seed)
    whole, epoch = _state(rng), rng.randint(1, 3)
    row = [getattr(whole, c) for c in CONTROL_COLUMNS]
    shown, expected = shown_control("agent-a", row, epoch), control_at(whole, epoch)
    for name in SHOWN:
        assert getattr(shown, name) == getattr(expected, name), name


def test_stored_text_is_read_as_its_type_a_time_as_aware_utc_a_flag_as_a_bool() -> None:
    row = dict.fromkeys(CONTROL_COLUMNS)
    row |= {"pending": 1, "asked_at": "2026-12-06 12:00:00.250000", "completion_epoch": 2}
    shown = shown_control("agent-a", list(row.values()), 2)
    assert shown.pending is True and shown.completed is True
    assert shown.asked_at == datetime(2026, 12, 6, 12, 0, 0, 250000, tzinfo=UTC)


def test_an_agent_without_a_control_row_has_the_empty_control_state() -> None:
    assert shown_control("agent-b", [None] * len(CONTROL_COLUMNS), 1) == AgentControl("agent-b")
