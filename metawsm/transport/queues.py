"""Which Redis queues carry what: the housekeeping queue and task names, and each role's queues.

A topic is also the Celery queue and the task name that consumes it (see :mod:`metawsm.topics`);
housekeeping jobs scheduled by beat share one queue of their own.
"""

from __future__ import annotations

from metawsm.topics import Topics

HOUSEKEEPING_QUEUE = "metawsm.housekeeping"
DRAIN_TASK = "metawsm.outbox.drain"
RECONCILE_TASK = "metawsm.outbox.reconcile"
ESCALATE_TASK = "metawsm.sla.escalate"
HOUSEKEEPING_TASKS = (DRAIN_TASK, RECONCILE_TASK, ESCALATE_TASK)
ROLES = ("commands", "events", "integration", "housekeeping", "all")


def queues_for_role(topics: Topics, role: str) -> list[str]:
    """Queues a worker of ``role`` (commands|events|integration|housekeeping|all) consumes."""
    by_role = {
        "commands": topics.command_topics(),
        "events": topics.event_topics(),
        "integration": topics.integration_topics(),
        "housekeeping": [HOUSEKEEPING_QUEUE],
    }
    if role == "all":
        return [q for queues in by_role.values() for q in queues]
    return by_role[role]
