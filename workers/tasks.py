"""Thin task adapters: read the delivery info, call the delivery function, map its result.

Each task's name is its topic (= its queue), so Flower shows lag and failures per topic. What a
delivery does (counting, limits, retries, dead letters) is :mod:`metawsm.services.delivery`.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from metawsm.bootstrap import Container
from metawsm.messages.commands import COMMAND_TYPES
from metawsm.messages.events import EVENT_TYPES
from metawsm.services.delivery import Delivery, Result, deliver_command, deliver_event
from metawsm.topics import PROJECTOR

log = logging.getLogger("metawsm.workers")
TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "shared": False,
}


def register(app: Celery, container: Container) -> None:
    """Register every task of metawsm on ``app``: one per command topic, one per event topic
    (the projector), one per integration subscriber of the bus."""
    topics = container.topics
    for command_type in COMMAND_TYPES:
        _command_task(app, container, topics.command(command_type))
    for event_type in EVENT_TYPES:
        _event_task(app, container, topics.event(event_type), PROJECTOR)
    for name in topics.integrations:
        _event_task(app, container, topics.integration(name), name)


def _delivery(task: Task[Any, Any], redelivery: bool) -> Delivery:
    """The delivery as the broker tells it. It may have been worked on before when Redis marks
    it ``redelivered`` (a lost worker, a visibility timeout), when it is a retry, or when the
    outbox re-drove it (``redelivery``)."""
    info = task.request.delivery_info or {}
    seen = redelivery or bool(info.get("redelivered")) or bool(task.request.retries)
    return Delivery(str(task.request.id), str(task.name), seen)


def _outcome(task: Task[Any, Any], result: Result) -> str:
    """Ack with the status, or ask Celery to deliver it again after the backoff."""
    if result.retry_in_s is None:
        return result.status
    log.warning("retrying %s in %.2fs after: %s", task.name, result.retry_in_s, result.error)
    raise task.retry(countdown=result.retry_in_s, exc=result.error, max_retries=None)


def _command_task(app: Celery, container: Container, topic: str) -> None:
    @app.task(name=topic, **TASK_OPTIONS)
    def handle_command(self: Task[Any, Any], message: Any, redelivery: bool = False) -> str:
        """Deliver one forum command (thin adapter over metawsm.services.delivery)."""
        result = deliver_command(
            container.runtime, container.bus, message, _delivery(self, redelivery)
        )
        return _outcome(self, result)


def _event_task(app: Celery, container: Container, topic: str, subscriber: str) -> None:
    @app.task(name=topic, **TASK_OPTIONS)
    def handle_event(self: Task[Any, Any], message: Any, redelivery: bool = False) -> str:
        """Deliver one event to its subscriber (thin adapter over metawsm.services.delivery)."""
        result = deliver_event(
            container.runtime, container.bus, subscriber, message, _delivery(self, redelivery)
        )
        return _outcome(self, result)
