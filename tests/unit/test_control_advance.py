"""The read model's step: ``advance`` signal by signal, read in an epoch with ``control_at``,
gives what ``fold_agent`` gives for the same signals (random stories, seeded)."""

from __future__ import annotations

import random

import pytest

from metawsm.domain.control import ControlState, advance, control_at, fold_agent, fold_state
from tests.unit.test_control_fold import Thread, _story

KINDS = ("guidance_request", "guidance_answer", "completion", "validation", "heartbeat")


def _random_thread(rng: random.Random, length: int) -> tuple[Thread, int]:
    """A thread whose epochs only grow (as the log's do: a signal carries the run's epoch)."""
    thread, epoch = Thread(), 1
    for _ in range(length):
        if rng.random() < 0.1:
            epoch += 1
        kind = rng.choice(KINDS)
        fields = {
            "guidance_request": {
                "question": f"q{rng.randint(1, 9)}",
                "context": rng.choice(("c", None)),
            },
            "completion": {"summary": f"s{rng.randint(1, 9)}"},
            "validation": {"status": rng.choice(("passed", " FAILED ")), "done_criteria": " d "},
        }.get(kind, {})
        thread.add(kind, epoch=epoch, **fields)
    return thread, epoch


@pytest.mark.parametrize("seed", range(40))
def test_advancing_each_signal_reads_as_the_fold_of_all_in_the_current_and_a_later_epoch(
    seed: int,
) -> None:
    rng = random.Random(seed)
    thread, epoch = _random_thread(rng, rng.randint(0, 30))
    state = ControlState(agent_name="alice")
    for i, record in enumerate(thread.records):
        state = advance(state, record)
        assert control_at(state, record.epoch) == fold_agent(
            "alice", thread.records[: i + 1], record.epoch
        )
    for current in (epoch, epoch + 1):  # the run's epoch, and after an iterate without signals
        assert control_at(state, current) == fold_agent("alice", thread.records, current)
    assert fold_state("alice", reversed(thread.records)) == state


def test_a_signal_advanced_twice_or_late_changes_nothing() -> None:
    thread = _story()
    state = fold_state("alice", thread.records)
    assert advance(state, thread.records[-1]) is state
    assert advance(state, thread.records[0]) is state
