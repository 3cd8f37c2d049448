"""Time limits inside a supervised solo worker (``metawsm worker --pool solo``).

Celery's solo pool enforces neither time limit. In a process started by
:class:`metawsm.transport.worker_supervisor.WorkerSupervisor` (it sets
``METAWSM_WATCHDOG_SLOT``) this module

* records in the shared slot when each task starts and ends, so the supervisor can SIGKILL a task
  that outlives the hard limit;
* when the worker is ready (Celery's ``worker_ready``), writes its stdout and stderr directly
  again (until then the supervisor reads them, ``child_output.py``) and marks the slot, so the
  supervisor counts a death from then on as a crash, never as a failure to start;
* arms a one-shot ``SIGALRM`` for the soft limit, which raises ``SoftTimeLimitExceeded`` in the
  task, as a prefork pool child would: the task's failure path counts the attempt and retries or
  dead-letters it.
"""

from __future__ import annotations

import os
import signal
import time
from types import FrameType
from typing import Any

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import task_postrun, task_prerun, worker_ready

from metawsm.transport.child_output import OUTPUT_ENV, restore_output
from metawsm.transport.task_slots import SLOT_ENV, SlotFile, slot_from_env


class TaskWatch:
    """Publishes readiness and task start/end to the slot, raises the soft limit (module
    docstring)."""

    def __init__(self, slots: SlotFile, index: int, soft_limit_s: float) -> None:
        self._slots = slots
        self._index = index
        self._soft_limit_s = soft_limit_s
        self._running = False

    def install(self) -> None:
        """Connect to Celery's worker and task signals and take over SIGALRM (this process runs
        tasks)."""
        signal.signal(signal.SIGALRM, self._on_alarm)
        worker_ready.connect(self.on_ready, weak=False)
        task_prerun.connect(self.on_prerun, weak=False)
        task_postrun.connect(self.on_postrun, weak=False)

    def on_ready(self, **_: Any) -> None:
        """The worker consumes: write the log directly, then tell the supervisor (idle slot)."""
        restore_output(os.environ.pop(OUTPUT_ENV, None))  # once: it closes those descriptors
        self._slots.write(self._index, 0.0)

    def on_prerun(self, **_: Any) -> None:
        """A task starts: publish its start and arm the soft limit."""
        self._running = True
        self._slots.write(self._index, time.monotonic())
        signal.setitimer(signal.ITIMER_REAL, self._soft_limit_s)

    def on_postrun(self, **_: Any) -> None:
        """The task ended: disarm the soft limit and mark the slot idle."""
        self._running = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._slots.write(self._index, 0.0)

    def _on_alarm(self, _signum: int, _frame: FrameType | None) -> None:
        if self._running:  # an alarm that lands between tasks has nothing to stop
            raise SoftTimeLimitExceeded(f"soft time limit ({self._soft_limit_s:g} s) exceeded")


def install_if_supervised(app: Celery) -> TaskWatch | None:
    """Install the task watch when this process was started by a solo pool supervisor."""
    found = slot_from_env(os.environ.get(SLOT_ENV))
    if found is None:
        return None
    slots, index = found
    watch = TaskWatch(slots, index, float(app.conf.task_soft_time_limit))
    watch.install()
    return watch
