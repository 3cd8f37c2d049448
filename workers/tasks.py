"""Thin task adapters: read the delivery info, call the delivery function, map its result.

Each task's name is its topic (= its queue), so Flower shows lag and failures per topic. What a
delivery does (counting, limits, retries, dead letters) is :mod:`metawsm.services.delivery`;
here a result becomes an ack (applied, rejected, duplicate), a Celery retry (retry, wait) or a
task failure (dead: Flower counts it as failed).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, Task

from metawsm.bootstrap import Container
from metawsm.errors import DeadLettered
from metawsm.messages.commands import COMMAND_TYPES
from metawsm.messages.events import EVENT_TYPES
from metawsm.runtime import Runtime
from metawsm.services.delivery import (
    Delivery,
    Result,
    deliver_command,
    deliver_event,
    refuse_call,
)
from metawsm.services.messagebus import MessageBus
from metawsm.topics import PROJECTOR

log = logging.getLogger("metawsm.workers")
TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    "shared": False,
    # The delivery function decides when to stop (METAWSM_RETRY_MAX_ATTEMPTS): Celery must never
    # stop retrying on its own (its default is 3).
    "max_retries": None,
    # Dead-lettering is an outcome, not a crash: logged without a traceback.
    "throws": (DeadLettered,),
}
KNOWN_ARGUMENTS = {"message", "redelivery", "waited"}


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


def _delivery(task: Task[Any, Any], kwargs: dict[str, Any]) -> Delivery:
    """The delivery as the broker tells it. It may have been worked on before when Redis marks
    it ``redelivered`` (a lost worker, a visibility timeout), when it is a retry after a failed
    attempt, or when the outbox re-drove it (``redelivery``); a retry that only waited for a
    predecessor (``waited``) is delivered as a first delivery."""
    info = task.request.delivery_info or {}
    retried = bool(task.request.retries) and not kwargs.get("waited")
    seen = bool(kwargs.get("redelivery")) or bool(info.get("redelivered")) or retried
    return Delivery(str(task.request.id), str(task.name), seen)


def _wrong_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    unknown = sorted(set(kwargs) - KNOWN_ARGUMENTS)
    if args or unknown or "message" not in kwargs:
        return (
            f"task called with wrong arguments: {len(args)} positional, keywords"
            f" {sorted(kwargs)} (expected message=<JSON object>, optional redelivery, waited)"
        )
    return None


def _outcome(task: Task[Any, Any], message: Any, result: Result) -> str:
    """Ack with the status, fail the task when dead-lettered, or retry after the backoff."""
    if result.dead:
        raise DeadLettered(f"{task.request.id} dead-lettered: {result.error or 'see dlq show'}")
    if result.retry_in_s is None:
        return result.status
    waited = result.status == "wait"
    level = logging.INFO if waited else logging.WARNING
    log.log(level, "%s %s in %.2fs: %s", result.status, task.name, result.retry_in_s, result.error)
    raise task.retry(
        kwargs={"message": message, "waited": waited},
        countdown=result.retry_in_s,
        exc=result.error,
    )


Deliver = Callable[[Runtime, MessageBus, Any, Delivery], Result]


def _command_task(app: Celery, container: Container, topic: str) -> None:
    _task(app, container, topic, "command", deliver_command)


def _event_task(app: Celery, container: Container, topic: str, subscriber: str) -> None:
    def deliver(rt: Runtime, bus: MessageBus, message: Any, delivery: Delivery) -> Result:
        return deliver_event(rt, bus, subscriber, message, delivery)

    _task(app, container, topic, f"event.{subscriber}", deliver)


def _task(app: Celery, container: Container, topic: str, kind: str, deliver: Deliver) -> None:
    @app.task(name=topic, **TASK_OPTIONS)
    def deliver_message(self: Task[Any, Any], *args: Any, **kwargs: Any) -> str:
        """Deliver one message of this topic (thin adapter over metawsm.services.delivery)."""
        rt, delivery = container.runtime, _delivery(self, kwargs)
        wrong = _wrong_arguments(args, kwargs)
        if wrong is not None:
            call = {"args": list(args), "kwargs": kwargs}
            return _outcome(self, None, refuse_call(rt, kind, delivery, call, wrong))
        message = kwargs["message"]
        return _outcome(self, message, deliver(rt, container.bus, message, delivery))
