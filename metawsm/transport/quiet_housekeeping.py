"""Housekeeping out of sight: beat's drain, reconciliation and SLA tasks send no task events and
log at DEBUG, so Flower's task list and the INFO logs show the forum's work.

Beat sends a drain every ``METAWSM_DRAIN_INTERVAL_S`` (5 s), a reconciliation every 30 s and an
SLA pass every 30 s: at INFO each one wrote three lines (beat's "Sending due task", the worker's
"received" and "succeeded") and three task events, so on an idle stack 19 of every 20 lines and
tasks Flower showed were housekeeping that did nothing. Now:

- the housekeeping tasks are declared with ``send_events=False`` (the worker emits no
  received/started/succeeded events for them; see :func:`beat.jobs.register`), and beat's own
  process sends no ``task-sent`` events (:func:`install` turns them off when beat starts: beat
  publishes nothing else);
- Celery's per-task INFO lines for them (beat's "Sending due task", the worker's "received" and
  "succeeded") are logged at DEBUG; warnings and errors (a failed or retried task) keep their level;
- the jobs themselves log one INFO line when they did something (rows published, re-driven,
  escalations raised): recovery work stays visible, idle passes do not.

What the housekeeping does is measured by the metrics exporter (outbox backlog, publish failures,
re-drives), not by counting its tasks.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from celery import Celery
from celery.signals import beat_init

from metawsm.transport.queues import HOUSEKEEPING_TASKS

# Celery's loggers that write one INFO line per task, and where the task's name is in the record.
_PER_TASK_LOGGERS = ("celery.app.trace", "celery.worker.strategy", "celery.beat")


class HousekeepingAtDebug(logging.Filter):
    """Demotes Celery's per-task INFO lines about housekeeping tasks to DEBUG.

    A demoted record is dropped unless its logger is enabled for DEBUG (``--loglevel DEBUG``).
    """

    def __init__(self, task_names: Collection[str]) -> None:
        super().__init__()
        self.task_names = frozenset(task_names)

    def filter(self, record: logging.LogRecord) -> bool:
        """False for an INFO line about a housekeeping task unless DEBUG is on; else True."""
        if record.levelno != logging.INFO or not self._names_housekeeping(record.args):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    def _names_housekeeping(self, args: Any) -> bool:
        # celery.app.trace / strategy log ``fmt % {"name": ..., "id": ...}``; beat logs
        # ``"... %s (%s)" % (entry name, task name)``.
        if isinstance(args, dict):
            return args.get("name") in self.task_names
        if isinstance(args, tuple):
            return any(isinstance(a, str) and a in self.task_names for a in args)
        return False


def install(app: Celery) -> None:
    """Quiet the housekeeping tasks of ``app`` (see the module docstring); idempotent."""
    quiet = HousekeepingAtDebug(HOUSEKEEPING_TASKS)
    for name in _PER_TASK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, HousekeepingAtDebug) for f in logger.filters):
            logger.addFilter(quiet)

    def no_sent_events_from_beat(sender: Any = None, **_: Any) -> None:
        # Beat publishes only housekeeping tasks: none of them should show in Flower.
        app.conf.task_send_sent_event = False

    beat_init.connect(no_sent_events_from_beat, weak=False)
