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
from metawsm.services import processing
from metawsm.services.outbox import backoff_s
from metawsm.topics import INTEGRATIONS

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


def _seen_before(task: Task[Any, Any], redelivery: bool) -> bool:
    """True when this message may have been worked on before: Redis marks every message it
    restores (a lost worker, a visibility timeout) ``redelivered``, a retry is a new message of a
    delivery that failed, and the drainer marks what reconciliation re-drives (``redelivery``).
    Such deliveries are counted before any work."""
    info = task.request.delivery_info or {}
    return redelivery or bool(info.get("redelivered")) or bool(task.request.retries)


def _command_task(app: Celery, container: Container, topic: str) -> None:
    @app.task(name=topic, bind=True, acks_late=True, reject_on_worker_lost=True, shared=False)
    def handle_command(self: Task[Any, Any], message: Any, redelivery: bool = False) -> str:
        """Handle one forum command (thin adapter over metawsm.services.processing)."""
        rt = container.runtime
        message_id = str(self.request.id)
        try:
            command = processing.validate_command(message)
        except InvalidMessage as exc:
            _dead(rt, message_id, "command", topic, message, exc, 1)
            return "dead"
        if not _seen_before(self, redelivery):
            # First delivery: the handling transaction counts it itself.
            try:
                status = processing.apply_command(rt, command, count_delivery=True)
            except Exception as exc:
                # The handling transaction rolled back with its count: count it now.
                status, attempts = processing.count_command_delivery(rt, command)
                if status != "accepted":
                    return status
                return _failed(
                    self, container, "command", command.command_id, topic, message, exc, attempts
                )
            if status != processing.PAST_LIMIT:
                return status
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
            return _failed(
                self, container, "command", command.command_id, topic, message, exc, attempts
            )


def _failed(
    task: Task[Any, Any],
    container: Container,
    kind: str,
    message_id: str,
    topic: str,
    message: Any,
    exc: Exception,
    attempts: int,
) -> str:
    """After a failed attempt: dead-letter at the limit, else retry with backoff."""
    rt = container.runtime
    if attempts >= rt.settings.retry_max_attempts:
        _dead(rt, message_id, kind, topic, message, exc, attempts)
        return "dead"
    raise _retry(task, attempts, exc, container) from exc


def _event_task(app: Celery, container: Container, topic: str, subscriber: str) -> None:
    @app.task(name=topic, bind=True, acks_late=True, reject_on_worker_lost=True, shared=False)
    def handle_event(self: Task[Any, Any], message: Any, redelivery: bool = False) -> str:
        """Apply one event for its subscriber (thin adapter over metawsm.services)."""
        rt = container.runtime
        try:
            event = processing.validate_event(message)
        except InvalidMessage as exc:
            _dead(rt, str(self.request.id), f"event.{subscriber}", topic, message, exc, 1)
            return "dead"
        message_id, kind = f"{event.event_id}:{subscriber}", f"event.{subscriber}"
        # A first delivery to a consumer whose transaction counts it is counted there.
        counted = _seen_before(self, redelivery) or subscriber not in processing.COUNTING_CONSUMERS
        if counted:
            attempts = processing.count_event_delivery(rt, message_id)
            limit = rt.settings.retry_max_attempts
            if attempts > limit:
                error = f"delivered {attempts} times (limit {limit}) without finishing"
                _dead(rt, message_id, kind, topic, message, error, attempts)
                return "dead"
        try:
            applied = processing.consume_event(
                rt, subscriber, event, message_id, count_delivery=not counted
            )
            return "applied" if applied else "duplicate"
        except Exception as exc:
            if not counted:
                attempts = processing.count_event_delivery(rt, message_id)
            return _failed(self, container, kind, message_id, topic, message, exc, attempts)


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
