"""The pauses between the polls of a wait: short while an outcome is likely soon, then longer."""

from __future__ import annotations

from itertools import islice

import pytest

from metawsm.services.waiting import (
    FIRST_PAUSE_S,
    MAX_PAUSE_S,
    QUICK_PAUSE_S,
    QUICK_S,
    pauses,
)


class Clock:
    """Seconds that move only when the test moves them."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_pauses_grow_from_the_first_to_the_quick_ceiling() -> None:
    clock = Clock()
    first = list(islice(pauses(clock), 12))
    assert first[0] == FIRST_PAUSE_S
    assert first == sorted(first) and first[1] == pytest.approx(FIRST_PAUSE_S * 1.5)
    assert max(first) == QUICK_PAUSE_S == first[-1]


def test_after_the_quick_window_the_pauses_grow_to_the_longest() -> None:
    clock = Clock()
    schedule = pauses(clock)
    for _ in range(10):
        assert next(schedule) <= QUICK_PAUSE_S
    clock.now += QUICK_S
    later = list(islice(schedule, 10))
    assert later[0] > QUICK_PAUSE_S and later[-1] == MAX_PAUSE_S
