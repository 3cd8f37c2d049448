"""The broker adapter: publishes messages as Celery tasks by their stable names, with kombu alone.

metawsm never imports the worker code: ``topic`` is the task name and the queue. The message is
the Celery protocol-2 task message the workers consume (:mod:`metawsm.transport.task_message`),
published the way a Celery app publishes it — same kombu connection options, queue declaration,
serializer, delivery mode and retry policy — but without importing Celery, which a CLI write
would otherwise spend ~100 ms loading (docs/performance.md, "Command-line start-up").

Every process publishes through a publisher of its own, a worker too: a worker's consumer needs
socket timeouts longer than its BRPOP waits, a publish must give up after
``publish_timeout_s``. Whatever is published is already durable in the outbox, so a publish that
fails (or is skipped by the circuit breaker after a failure) only leaves the row to the drainer;
no caller waits on a Redis that does not answer for longer than that timeout.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

from kombu import Connection, Exchange, Producer, Queue
from kombu.common import oid_from
from kombu.exceptions import KombuError, OperationalError

from metawsm.errors import BrokerUnreachable
from metawsm.settings import Settings, mask_url
from metawsm.transport import kombu_redis_patch
from metawsm.transport.celery_config import CLIENT_PUBLISH_RETRY, transport_options
from metawsm.transport.circuit_breaker import CircuitBreaker
from metawsm.transport.task_message import (
    EVENT_EXCHANGE,
    TASK_SENT,
    TaskMessage,
    task_message,
    task_sent_event,
)

PERSISTENT = 2  # Celery's default delivery mode for tasks
TRANSIENT = 1  # and for events
# On Redis, Celery turns its topic event exchange into a fanout one (PUBLISH to subscribers).
EVENTS = Exchange(EVENT_EXCHANGE, type="fanout", delivery_mode=TRANSIENT)


def make_publisher(settings: Settings) -> TaskPublisher:
    """A publisher with its own broker connection, the publish timeout and the circuit breaker
    of ``settings`` (module docstring)."""
    return TaskPublisher(settings, CircuitBreaker(settings.publish_breaker_s))


def _summary(message_id: str, payload: dict[str, Any]) -> str:
    kind = payload.get("command_type") or payload.get("event_type") or "message"
    thread = payload.get("thread_id") or (payload.get("payload") or {}).get("thread_id")
    where = f" thread={thread}" if thread else ""
    return f"{{'message': <{kind} {message_id}{where}>}}"


def task_queue(topic: str) -> Queue:
    """The queue of ``topic`` as Celery declares a queue it was not configured with: bound to a
    direct exchange of the same name by the same routing key."""
    return Queue(topic, Exchange(topic), topic)


class TaskPublisher:
    """Publishes outbox messages as Celery task messages over one kombu connection.

    After a broker failure ``breaker`` refuses publishes for a few seconds (they fail at once,
    the rows go to the drainer), then lets one through as a trial. With ``settings.task_events``
    each publish also sends the ``task-sent`` event monitoring shows. Thread-safe: publishes
    from several threads take turns on the connection.
    """

    def __init__(self, settings: Settings, breaker: CircuitBreaker) -> None:
        kombu_redis_patch.install()
        options = transport_options(settings, client=True)
        self._connection = Connection(
            settings.broker_url,
            transport_options=options,
            connect_timeout=options["socket_connect_timeout"],
        )
        self._producer = Producer(self._connection, serializer="json", auto_declare=False)
        self._where = mask_url(settings.broker_url)
        self._breaker = breaker
        self._task_events = settings.task_events
        self._lock = threading.Lock()
        self._clock = itertools.count(1)

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
            reply_to=oid_from(self, threads=True),
        )
        try:
            with self._lock:
                self._send(topic, message)
        except (OperationalError, KombuError, OSError, TimeoutError) as exc:
            raise self._unreachable(exc) from exc
        except Exception as exc:
            # redis-py raises its own ConnectionError/TimeoutError types through kombu.
            if type(exc).__module__.startswith("redis"):
                raise self._unreachable(exc) from exc
            raise
        self._breaker.succeeded()

    def _send(self, topic: str, message: TaskMessage) -> None:
        self._producer.publish(
            message.body,
            exchange="",
            routing_key=topic,
            declare=[task_queue(topic)],
            headers=message.headers,
            delivery_mode=PERSISTENT,
            retry=True,
            retry_policy=CLIENT_PUBLISH_RETRY,
            **message.properties,
        )
        if self._task_events:
            self._producer.publish(
                task_sent_event(message, topic, next(self._clock)),
                exchange=EVENTS.name,
                routing_key=TASK_SENT.replace("-", "."),
                declare=[EVENTS],
                headers={"hostname": message.headers["origin"]},
                delivery_mode=TRANSIENT,
                retry=True,
                retry_policy=CLIENT_PUBLISH_RETRY,
            )

    def _unreachable(self, exc: BaseException) -> BrokerUnreachable:
        self._breaker.failed(str(exc))
        return BrokerUnreachable(f"broker unreachable at {self._where}: {exc}")

    def close(self) -> None:
        """Release the broker connection."""
        with self._lock:
            self._connection.release()
