"""What kombu's Redis transport writes for one Celery publish, written without kombu.

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

The commands go through :mod:`metawsm.transport.resp` (a minimal client: no redis-py import on
a command line's write), or redis-py for the URLs it does not read.
``tests/integration/test_publisher_wire.py`` compares every key and event with kombu's, byte for
byte, so a kombu upgrade that changes any of this fails there.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import uuid
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from metawsm.settings import Settings
from metawsm.transport import resp
from metawsm.transport.task_message import EVENT_EXCHANGE, TASK_SENT, TaskMessage

SEP = "\x06\x16"  # kombu's separator inside a binding
PERSISTENT = 2  # Celery's default delivery mode for tasks
TRANSIENT = 1  # and for events
_NODE_ID = uuid.uuid4().int  # kombu.common.get_node_id: one per process
HEALTH_CHECK_S = 10.0  # PING before a command after this long idle (redis-py's interval)


class Commands(Protocol):
    """The calls the publisher makes on its Redis connection (:mod:`resp` or redis-py)."""

    def execute(self, *command: str | bytes | int) -> Any:
        """Send one command; its reply."""

    def transaction(self, commands: Sequence[Sequence[str | bytes | int]]) -> list[Any]:
        """``MULTI``, ``commands``, ``EXEC``; the replies of ``commands``."""

    def close(self) -> None:
        """Close the connection."""


def client(settings: Settings) -> Commands:
    """A connection to the broker with a client publisher's timeouts (as kombu's connection of
    ``transport_options(settings, client=True)``) and no retries of its own:
    :class:`~metawsm.transport.publisher.TaskPublisher` applies kombu's retry policy.

    A plain ``redis://`` URL gets the minimal client (:mod:`metawsm.transport.resp`: no
    redis-py import); any other (``rediss://``, query options) redis-py."""
    address = resp.parse_url(settings.broker_url)
    if address is not None:
        return resp.RespClient(address, settings.publish_timeout_s, HEALTH_CHECK_S)
    return RedisPyCommands(settings)


class RedisPyCommands:
    """:class:`Commands` through redis-py, for the URLs the minimal client does not read."""

    def __init__(self, settings: Settings) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._redis = redis.Redis.from_url(
            settings.broker_url,
            socket_timeout=settings.publish_timeout_s,
            socket_connect_timeout=settings.publish_timeout_s,
            socket_keepalive=True,
            retry_on_timeout=False,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=HEALTH_CHECK_S,
        )

    def execute(self, *command: str | bytes | int) -> Any:
        """Send one command; its reply."""
        return self._redis.execute_command(*command)

    def transaction(self, commands: Sequence[Sequence[str | bytes | int]]) -> list[Any]:
        """``MULTI``, ``commands``, ``EXEC``; the replies of ``commands``."""
        with self._redis.pipeline() as pipe:
            for command in commands:
                pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            return pipe.execute()

    def close(self) -> None:
        """Close the connection."""
        self._redis.close()


def fanout_prefix(broker_url: str) -> str:
    """kombu's ``keyprefix_fanout``: ``/<db>.`` (the database number of the URL, 0 by default)."""
    path = urlsplit(broker_url).path.strip("/")
    return f"/{int(path) if path.isdigit() else 0}."


def publisher_id(instance: object) -> str:
    """kombu's ``oid_from(instance, threads=True)``: the ``reply_to`` Celery sets (unused)."""
    ent = f"{_NODE_ID:x}-{os.getpid():x}-{threading.get_ident():x}-{id(instance):x}"
    return str(uuid.uuid3(uuid.NAMESPACE_OID, ent))


def bind_queue(redis: Commands, queue: str) -> None:
    """Declare ``queue`` as kombu does: bound to the direct exchange of its name."""
    member = SEP.join([queue, "", queue])
    redis.transaction(
        [
            ("SADD", f"_kombu.binding.{queue}", member),
            ("SADD", f"_kombu.binding_permanent.{queue}", member),
        ]
    )


def push_task(redis: Commands, queue: str, message: TaskMessage) -> None:
    """LPUSH the task message on ``queue`` (the default exchange: the queue is the key)."""
    properties = {**message.properties, "delivery_mode": PERSISTENT}
    envelope = _envelope(list(message.body), message.headers, properties, "", queue)
    redis.execute("LPUSH", queue, envelope)


def publish_event(
    redis: Commands, prefix: str, event: dict[str, Any], message: TaskMessage
) -> None:
    """PUBLISH the ``task-sent`` event of ``message`` to Celery's event channel."""
    routing_key = TASK_SENT.replace("-", ".")
    headers = {"hostname": message.headers["origin"]}
    properties = {"delivery_mode": TRANSIENT}
    envelope = _envelope(event, headers, properties, EVENT_EXCHANGE, routing_key)
    redis.execute("PUBLISH", f"{prefix}{EVENT_EXCHANGE}/{routing_key}", envelope)


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
    lost, timeout = _redis_py_errors()
    return isinstance(exc, (OSError, *lost, *timeout))


def is_reset(exc: BaseException) -> bool:
    """True for a connection error worth one retry (not a timeout: a silent Redis stays so)."""
    lost, timeout = _redis_py_errors()
    return isinstance(exc, (ConnectionError, *lost)) and not isinstance(
        exc, (TimeoutError, *timeout)
    )


def _redis_py_errors() -> tuple[tuple[type[Exception], ...], tuple[type[Exception], ...]]:
    """redis-py's connection errors and timeout errors, when redis-py is loaded (else none
    can occur: it is imported only for the URLs the minimal client does not read)."""
    errors = sys.modules.get("redis.exceptions")
    if errors is None:
        return (), ()
    return (errors.ConnectionError,), (errors.TimeoutError,)
