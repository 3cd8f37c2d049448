"""The worker's heartbeat: from ``worker_ready`` on, a thread records every
``METAWSM_HEARTBEAT_INTERVAL_S`` that this process consumes its roles' queues; a clean shutdown
deletes the rows (metawsm.ops.heartbeats). Roles come from the queues the worker consumes, so a
``--role all`` worker beats for all four.
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import worker_ready, worker_shutdown

from metawsm.bootstrap import Container
from metawsm.ops.heartbeats import Heartbeat, process_name
from metawsm.transport.queues import HOUSEKEEPING_QUEUE


def roles_of(queues: list[str], container: Container) -> list[str]:
    """The worker roles whose queues are among ``queues``."""
    s = container.settings
    prefixes = {
        "commands": s.command_prefix + ".",
        "events": s.event_prefix + ".",
        "integration": s.integration_prefix + ".",
    }
    roles = {role for role, prefix in prefixes.items() if any(q.startswith(prefix) for q in queues)}
    if HOUSEKEEPING_QUEUE in queues:
        roles.add("housekeeping")
    return sorted(roles)


def install(app: Celery, container: Container) -> None:
    """Start the heartbeat when this app's worker is ready; stop it at shutdown."""
    running: list[Heartbeat] = []

    def ready(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", app) is not app or running:
            return
        queues = list(app.amqp.queues.consume_from or app.amqp.queues)
        heartbeat = Heartbeat(
            container.engine,
            process_name(getattr(sender, "hostname", None)),
            roles_of(queues, container),
            container.settings.heartbeat_interval_s,
        )
        heartbeat.start()
        running.append(heartbeat)

    def shutdown(**_: Any) -> None:
        while running:
            running.pop().stop()

    worker_ready.connect(ready, weak=False)
    worker_shutdown.connect(shutdown, weak=False)
