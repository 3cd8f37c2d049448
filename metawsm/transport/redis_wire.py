"""What kombu's Redis transport writes for one Celery publish, written with redis-py alone.

kombu 5.7 (``kombu/transport/redis.py``, ``kombu/transport/virtual/base.py``,
``kombu/messaging.py``), for a task published to queue ``Q`` on the default exchange with
queue ``Q`` declared (bound to direct exchange ``Q`` by routing key ``Q``):

* the binding, once per connection: ``MULTI; SADD _kombu.binding.Q "Q\\x06\\x16\\x06\\x16Q";
  SADD _kombu.binding_permanent.Q (same); EXEC``;
* the message: ``LPUSH Q <envelope>``, the envelope a JSON object ``body`` (base64 of the
  JSON body), ``content-encoding``, ``content-type``, ``headers``, ``properties`` (the
  message's own, then ``delivery_mode``, ``delivery_info``, ``priority``, ``body_encoding``,
  ``delivery_tag``), in that key order;
* the ``task-sent`` event (fanout exchange ``celeryev``, routing key ``task.sent``):
  ``PUBLISH /<db>.celeryev/task.sent <envelope>``.

``tests/integration/test_publisher_wire.py`` compares every key and event with kombu's, byte for
byte, so a kombu upgrade that changes any of this fails there.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from typing import Any
from urllib.parse import urlsplit

from metawsm.settings import Settings
from metawsm.transport.task_message import EVENT_EXCHANGE, TASK_SENT, TaskMessage

SEP = "\x06\x16"  # kombu's separator inside a binding
PERSISTENT = 2  # Celery's default delivery mode for tasks
TRANSIENT = 1  # and for events
_NODE_ID = uuid.uuid4().int  # kombu.common.get_node_id: one per process


def client(settings: Settings) -> Any:
    """A redis-py client of the broker with a client publisher's timeouts (as kombu's
    connection of ``transport_options(settings, client=True)``) and no retries of its own:
    :class:`~metawsm.transport.publisher.TaskPublisher` applies kombu's retry policy."""
    import redis
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return redis.Redis.from_url(
        settings.broker_url,
        socket_timeout=settings.publish_timeout_s,
        socket_connect_timeout=settings.publish_timeout_s,
        socket_keepalive=True,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=10,
    )


def fanout_prefix(broker_url: str) -> str:
    """kombu's ``keyprefix_fanout``: ``/<db>.`` (the database number of the URL, 0 by default)."""
    path = urlsplit(broker_url).path.strip("/")
    return f"/{int(path) if path.isdigit() else 0}."


def publisher_id(instance: object) -> str:
    """kombu's ``oid_from(instance, threads=True)``: the ``reply_to`` Celery sets (unused)."""
    ent = f"{_NODE_ID:x}-{os.getpid():x}-{threading.get_ident():x}-{id(instance):x}"
    return str(uuid.uuid3(uuid.NAMESPACE_OID, ent))


def bind_queue(redis: Any, queue: str) -> None:
    """Declare ``queue`` as kombu does: bound to the direct exchange of its name."""
    member = SEP.join([queue, "", queue])
    with redis.pipeline() as pipe:
        pipe.sadd(f"_kombu.binding.{queue}", member)
        pipe.sadd(f"_kombu.binding_permanent.{queue}", member)
        pipe.execute()


def push_task(redis: Any, queue: str, message: TaskMessage) -> None:
    """LPUSH the task message on ``queue`` (the default exchange: the queue is the key)."""
    properties = {**message.properties, "delivery_mode": PERSISTENT}
    envelope = _envelope(list(message.body), message.headers, properties, "", queue)
    redis.lpush(queue, envelope)


def publish_event(redis: Any, prefix: str, event: dict[str, Any], message: TaskMessage) -> None:
    """PUBLISH the ``task-sent`` event of ``message`` to Celery's event channel."""
    routing_key = TASK_SENT.replace("-", ".")
    headers = {"hostname": message.headers["origin"]}
    properties = {"delivery_mode": TRANSIENT}
    envelope = _envelope(event, headers, properties, EVENT_EXCHANGE, routing_key)
    redis.publish(f"{prefix}{EVENT_EXCHANGE}/{routing_key}", envelope)


def _envelope(
    body: Any, headers: dict[str, Any], properties: dict[str, Any], exchange: str, key: str
) -> str:
    """kombu's message envelope (prepare_message, then _inplace_augment_message), as JSON."""
    encoded = base64.b64encode(json.dumps(body).encode("utf-8")).decode("ascii")
    props = {
        **properties,
        "delivery_info": {"exchange": exchange, "routing_key": key},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    return json.dumps(
        {
            "body": encoded,
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": headers,
            "properties": props,
        }
    )


def is_unreachable(exc: BaseException) -> bool:
    """True for an error of the broker connection (refused, reset, timed out)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | TimeoutError)


def is_reset(exc: BaseException) -> bool:
    """True for a connection error worth one retry (not a timeout: a silent Redis stays so)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    timeout = isinstance(exc, RedisTimeoutError | TimeoutError)
    return isinstance(exc, RedisConnectionError) and not timeout
