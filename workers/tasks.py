"""Thin task adapters: validate, count the delivery, call the service, apply the retry policy.

Each task's name is its topic (= its queue), so Flower shows lag and failures per topic.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import Celery, Task

from metawsm.composition import Container
from metawsm.errors import InvalidMessage
from metawsm.messages.commands import COMMAND_TYPES
from metawsm.messages.events import EVENT_TYPES
from metawsm.routing import INTEGRATIONS
from metawsm.services import processing
from metawsm.services.outbox import backoff_s

log = logging.getLogger("metawsm.workers")


def register(app: Celery, container: Container) -> None:
    """Register every task of metawsm on ``app``."""
    topics = container.topics
    for command_type in COMMAND_TYPES:
        _command_task(app, container, topics.command(command_type))
    for event_type in EVENT_TYPES:
        _event_task(app, container, topics.event(event_type), "projector")
    for name in INTEGRATIONS:
        _event_task(app, container, topics.integration(name), name)


def _retry(task: Task[Any, Any], attempts: int, exc: Exception, container: Container) -> Any:
    countdown = backoff_s(attempts, container.settings)
    log.warning("retrying %s in %.2fs after: %s", task.name, countdown, exc)
    return task.retry(countdown=countdown, exc=exc, max_retries=None)


def _command_task(app: Celery, container: Container, topic: str) -> None:
    @app.task(name=topic, bind=True, acks_late=True, reject_on_worker_lost=True, shared=False)
    def handle_command(self: Task[Any, Any], message: Any) -> str:
        """Handle one forum command (thin adapter over metawsm.services.processing)."""
        rt = container.runtime
        message_id = str(self.request.id)
        try:
            command = processing.validate_command(message)
        except InvalidMessage as exc:
            _dead(rt, message_id, "command", topic, message, exc, 1)
            return "dead"
        status, attempts = processing.count_command_delivery(rt, command)
        if status != "accepted":
            return status
        limit = rt.settings.retry_max_attempts
        if attempts > limit:
            # Delivered again after its last allowed attempt without finishing: an earlier
            # delivery died with its worker (SIGKILL, OOM). Running it again could loop forever.
            error = f"delivered {attempts} times (limit {limit}) without finishing"
            _dead(rt, command.command_id, "command", topic, message, error, attempts)
            return "dead"
        try:
            return processing.apply_command(rt, command)
        except Exception as exc:
            if attempts >= rt.settings.retry_max_attempts:
                _dead(rt, command.command_id, "command", topic, message, exc, attempts)
                return "dead"
            raise _retry(self, attempts, exc, container) from exc


def _event_task(app: Celery, container: Container, topic: str, subscriber: str) -> None:
    @app.task(name=topic, bind=True, acks_late=True, reject_on_worker_lost=True, shared=False)
    def handle_event(self: Task[Any, Any], message: Any) -> str:
        """Apply one event for its subscriber (thin adapter over metawsm.services)."""
        rt = container.runtime
        try:
            event = processing.validate_event(message)
        except InvalidMessage as exc:
            _dead(rt, str(self.request.id), f"event.{subscriber}", topic, message, exc, 1)
            return "dead"
        message_id = f"{event.event_id}:{subscriber}"
        attempts = processing.count_event_delivery(rt, message_id)
        try:
            applied = processing.consume_event(rt, subscriber, event, message_id)
            return "applied" if applied else "duplicate"
        except Exception as exc:
            if attempts >= rt.settings.retry_max_attempts:
                _dead(rt, message_id, f"event.{subscriber}", topic, message, exc, attempts)
                return "dead"
            raise _retry(self, attempts, exc, container) from exc


def _dead(
    rt: processing.Runtime,
    message_id: str,
    kind: str,
    topic: str,
    message: Any,
    exc: BaseException | str,
    attempts: int,
) -> None:
    log.error("dead-lettering %s on %s after %d attempt(s): %s", message_id, topic, attempts, exc)
    processing.dead_letter_message(
        rt,
        message_id=message_id,
        kind=kind,
        task_name=topic,
        payload=message,
        error=exc,
        attempts=attempts,
    )
