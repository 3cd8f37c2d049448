"""The board's shared snapshot: callers that arrive while a build runs share the next build
(one that started after they arrived), never the one already running."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import count

import pytest

from metawsm.board.shared import Coalesced
from tests.fixtures.conditions import wait_until


class Gated:
    """A build numbered 1, 2, ... whose first run waits for :attr:`release`."""

    def __init__(self, fail_on: int | None = None) -> None:
        self.numbers = count(1)
        self.first_started = threading.Event()
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self) -> int:
        number = next(self.numbers)
        if number == 1:
            self.first_started.set()
            assert self.release.wait(15), "the test never released the first build"
        if number == self.fail_on:
            raise RuntimeError(f"build {number} failed")
        return number


def _while_the_first_build_runs(
    build: Gated, shared: Coalesced[int], pool: ThreadPoolExecutor, callers: int
) -> tuple[Future[int], list[Future[int]]]:
    first = pool.submit(shared.get)
    assert build.first_started.wait(15)
    later = [pool.submit(shared.get) for _ in range(callers)]
    wait_until(lambda: shared.waiting == callers, 15, "the later callers to wait")
    build.release.set()
    return first, later


def test_callers_arriving_during_a_build_share_the_next_one_not_the_running_one() -> None:
    build = Gated()
    shared = Coalesced(build)
    with ThreadPoolExecutor(5) as pool:
        first, later = _while_the_first_build_runs(build, shared, pool, 4)
        assert first.result(15) == 1
        assert [f.result(15) for f in later] == [2, 2, 2, 2]
    assert shared.builds == 2


def test_a_caller_after_a_build_finished_gets_a_new_build() -> None:
    shared = Coalesced(count(1).__next__)
    assert [shared.get(), shared.get(), shared.get()] == [1, 2, 3]


def test_a_failed_build_fails_every_caller_sharing_it_and_the_next_caller_builds_again() -> None:
    build = Gated(fail_on=2)
    shared = Coalesced(build)
    with ThreadPoolExecutor(4) as pool:
        first, later = _while_the_first_build_runs(build, shared, pool, 3)
        assert first.result(15) == 1
        for future in later:
            with pytest.raises(RuntimeError, match="build 2 failed"):
                future.result(15)
    assert shared.get() == 3
