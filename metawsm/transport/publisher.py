"""The broker adapter: publishes messages as Celery tasks by their stable names, over Redis.

metawsm never imports the worker code: ``topic`` is the task name and the queue. The message is
the Celery protocol-2 task message the workers consume (:mod:`metawsm.transport.task_message`),
written to Redis exactly as kombu's Redis transport writes what a Celery app publishes (same
envelope, body encoding, queue binding, ``task-sent`` event channel; the redis commands are in
:mod:`metawsm.transport.redis_wire`, sent by the minimal client of
:mod:`metawsm.transport.resp`), but without importing Celery, kombu or redis-py, which a CLI
write would otherwise spend ~100-200 ms loading (docs/performance.md, "Command-line start-up").
``tests/integration/test_publisher_wire.py`` compares every Redis key it writes, byte for byte,
with kombu's and Celery's.

Every process publishes through a publisher of its own, a worker too: a worker's consumer needs
socket timeouts longer than its BRPOP waits, a publish must give up after
``publish_timeout_s``. Whatever is published is already durable in the outbox, so a publish that
fails (or is skipped by the circuit breaker after a failure) only leaves the row to the drainer;
no caller waits on a Redis that does not answer for longer than that timeout.
"""

from __future__ import annotations

import itertools
import threading
import time
from typing import Any

from metawsm.errors import BrokerUnreachable
from metawsm.settings import Settings, mask_url
from metawsm.transport import redis_wire
from metawsm.transport.circuit_breaker import CircuitBreaker
from metawsm.transport.task_message import TaskMessage, task_message, task_sent_event

# kombu's retry policy for a client publish (celery_config.CLIENT_PUBLISH_RETRY): one retry,
# 0.1 s after a reset connection; none after a timeout.
RETRY_AFTER_RESET_S = 0.1


def make_publisher(settings: Settings) -> TaskPublisher:
    """A publisher with its own broker connection, the publish timeout and the circuit breaker
    of ``settings`` (module docstring)."""
    return TaskPublisher(settings, CircuitBreaker(settings.publish_breaker_s))


def _summary(message_id: str, payload: dict[str, Any]) -> str:
    kind = payload.get("command_type") or payload.get("event_type") or "message"
    thread = payload.get("thread_id") or (payload.get("payload") or {}).get("thread_id")
    where = f" thread={thread}" if thread else ""
    return f"{{'message': <{kind} {message_id}{where}>}}"


class TaskPublisher:
    """Publishes outbox messages as Celery task messages over one Redis connection.

    After a broker failure ``breaker`` refuses publishes for a few seconds (they fail at once,
    the rows go to the drainer), then lets one through as a trial. With ``settings.task_events``
    each publish also sends the ``task-sent`` event monitoring shows. Thread-safe: publishes
    from several threads take turns on the connection.
    """

    def __init__(self, settings: Settings, breaker: CircuitBreaker) -> None:
        self._client = redis_wire.client(settings)
        self._fanout_prefix = redis_wire.fanout_prefix(settings.broker_url)
        self._where = mask_url(settings.broker_url)
        self._breaker = breaker
        self._task_events = settings.task_events
        self._lock = threading.Lock()
        self._clock = itertools.count(1)
        self._declared: set[str] = set()  # as kombu's maybe_declare: once per connection

    def publish(
        self, topic: str, message_id: str, payload: dict[str, Any], redelivery: bool = False
    ) -> None:
        """Send ``payload`` as task ``topic`` on queue ``topic`` with task id ``message_id``.

        A ``redelivery`` carries ``redelivery=True`` beside the message: the task counts it
        before any work.

        Raises:
            BrokerUnreachable: Redis refused, dropped the connection or did not answer within
                the publish timeout; or a publish failed less than the breaker's spell ago and
                this one was not attempted.
        """
        refusal = self._breaker.refusal()
        if refusal is not None:
            raise BrokerUnreachable(f"broker unreachable at {self._where}: {refusal}")
        kwargs: dict[str, Any] = {"message": payload}
        if redelivery:
            kwargs["redelivery"] = True
        message = task_message(
            topic,
            message_id,
            kwargs,
            # What task events, Flower and worker logs show of the arguments: the ids, not
            # the bodies (no post text in monitoring), and no repr of the whole payload on
            # every publish (docs/performance.md).
            argsrepr="()",
            kwargsrepr=_summary(message_id, payload),
            reply_to=redis_wire.publisher_id(self),
        )
        try:
            with self._lock:
                self._send_retrying(topic, message)
        except Exception as exc:
            if redis_wire.is_unreachable(exc):
                self._breaker.failed(str(exc))
                raise BrokerUnreachable(f"broker unreachable at {self._where}: {exc}") from exc
            raise
        self._breaker.succeeded()

    def _send_retrying(self, topic: str, message: TaskMessage) -> None:
        try:
            self._send(topic, message)
        except Exception as exc:
            if not redis_wire.is_reset(exc):
                raise
            time.sleep(RETRY_AFTER_RESET_S)  # kombu's interval_start before its one retry
            self._send(topic, message)

    def _send(self, topic: str, message: TaskMessage) -> None:
        if topic not in self._declared:
            redis_wire.bind_queue(self._client, topic)
            self._declared.add(topic)
        redis_wire.push_task(self._client, topic, message)
        if self._task_events:
            event = task_sent_event(message, topic, next(self._clock))
            redis_wire.publish_event(self._client, self._fanout_prefix, event, message)

    def close(self) -> None:
        """Release the broker connection."""
        with self._lock:
            self._client.close()
