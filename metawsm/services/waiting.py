"""Waiting for a command's outcome, or for its events in the read models, by polling.

A command-line write waits until its command is applied (or projected) by polling one small
read. The pauses between polls are short while an answer is likely soon — a running stack
applies a command within tens of milliseconds, and each millisecond a poll arrives late is
added to the write's wall time — then grow, so a long wait (no worker running) costs little.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from metawsm.errors import WaitTimeout

if TYPE_CHECKING:
    from metawsm.services.accept import Outcome

FIRST_PAUSE_S = 0.002
# While an answer is likely soon (the first QUICK_S seconds), at most QUICK_PAUSE_S between
# polls: a poll costs a fraction of a millisecond, arriving late costs the whole pause.
QUICK_S = 2.0
QUICK_PAUSE_S = 0.01
MAX_PAUSE_S = 0.1


def pauses(clock: Callable[[], float] = time.monotonic) -> Iterator[float]:
    """The pauses between polls, seconds: from FIRST_PAUSE_S growing by half each time, to at
    most QUICK_PAUSE_S during the first QUICK_S seconds, then to at most MAX_PAUSE_S."""
    started = clock()
    pause = FIRST_PAUSE_S
    while True:
        yield pause
        ceiling = QUICK_PAUSE_S if clock() - started < QUICK_S else MAX_PAUSE_S
        pause = min(pause * 1.5, ceiling)


def wait_until_final(
    read: Callable[[], Outcome | None], command_id: str, timeout_s: float
) -> Outcome:
    """Poll ``read`` until the command is applied, rejected or dead.

    Raises:
        WaitTimeout: the command is still in flight after ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    for pause in pauses():
        outcome = read()
        if outcome is not None and outcome.final:
            return outcome
        if time.monotonic() >= deadline:
            state = outcome.status if outcome else "unknown"
            raise WaitTimeout(
                f"command {command_id} still {state} after {timeout_s:g} s;"
                " it stays accepted and will be applied when workers and Redis are available"
            )
        time.sleep(pause)  # polling a condition with a deadline, not synchronising on time
    raise AssertionError("pauses() never ends")


def wait_until_projected(projected: Callable[[], bool], command_id: str, timeout_s: float) -> None:
    """Poll ``projected`` until the read models show every event the (applied) command wrote.

    Raises:
        WaitTimeout: an event of the command is still not projected after ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    for pause in pauses():
        if projected():
            return
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"command {command_id} is applied but its events are not in the read models"
                f" after {timeout_s:g} s; they will show once an events worker projects them"
            )
        time.sleep(pause)  # polling a condition with a deadline, not synchronising on time
