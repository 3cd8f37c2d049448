"""metawsm publishes without Celery what Celery would publish: the same Redis writes, key by key.

The workers are Celery workers, so the task message, its queue declaration and the ``task-sent``
event must be the ones Celery's ``send_task`` writes. Each test publishes one message through a
real Celery client app (configured as metawsm's clients were) and the same message through
:class:`~metawsm.transport.publisher.TaskPublisher`, into a real Redis, and compares what landed
there. Only what is fresh per message may differ: the delivery tag, the publisher id in
``reply_to``, the event's timestamp and logical clock. That a worker consumes and applies what
the publisher sends is every pipeline test's business (they all publish through it).
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from metawsm.settings import Settings
from metawsm.transport import redis_wire, resp
from metawsm.transport.publisher import make_publisher
from tests.fixtures.conditions import wait_until
from tests.fixtures.database import settings_for
from tests.fixtures.workers import client_app

# A topic per test: Celery declares a queue once per process, so a queue declared by an earlier
# test would show no declaration at all.
TOPICS = {"first": "forum.commands.wire_1", "redelivery": "forum.commands.wire_2"}
EVENT_TOPIC = "forum.commands.wire_3"
PAYLOAD = {"command_type": "open_thread", "payload": {"thread_id": "t-1", "body": "hello"}}
SUMMARY = "{'message': <open_thread cmd-1 thread=t-1>}"
FRESH = ("delivery_tag",)


def celery_send(settings: Settings, topic: str, message_id: str, kwargs: dict[str, Any]) -> None:
    """Publish as metawsm's publisher did with Celery (its send_task call, unchanged)."""
    app = client_app(settings)
    try:
        app.send_task(
            topic,
            kwargs=kwargs,
            queue=topic,
            task_id=message_id,
            argsrepr="()",
            kwargsrepr=SUMMARY,
        )
    finally:
        app.close()


def metawsm_send(settings: Settings, topic: str, message_id: str, redelivery: bool) -> None:
    publisher = make_publisher(settings)
    try:
        publisher.publish(topic, message_id, PAYLOAD, redelivery=redelivery)
    finally:
        publisher.close()


def pop_message(client: redis.Redis, topic: str) -> dict[str, Any]:
    raw = client.rpop(topic)
    assert raw is not None, f"nothing on {topic}"
    assert client.llen(topic) == 0
    message: dict[str, Any] = json.loads(raw)
    return message


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` without what is fresh per publish (checked for shape instead)."""
    properties = dict(message["properties"])
    for key in FRESH:
        assert properties.pop(key)
    reply_to = properties.pop("reply_to")
    assert isinstance(reply_to, str) and len(reply_to) == 36
    return {**message, "properties": properties}


def bindings(client: redis.Redis) -> dict[bytes, set[bytes]]:
    return {key: client.smembers(key) for key in client.keys("_kombu.binding*")}  # type: ignore[misc]


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.mark.parametrize("kind", sorted(TOPICS))
def test_the_task_message_and_queue_declaration_are_celerys(
    redis_url: str, broker: redis.Redis, kind: str
) -> None:
    settings = settings_for("sqlite://", redis_url, task_events=False)
    topic, redelivery = TOPICS[kind], kind == "redelivery"
    kwargs: dict[str, Any] = {"message": PAYLOAD, **({"redelivery": True} if redelivery else {})}

    celery_send(settings, topic, "cmd-1", kwargs)
    by_celery, celery_bindings = pop_message(broker, topic), bindings(broker)
    broker.flushall()
    metawsm_send(settings, topic, "cmd-1", redelivery)
    by_metawsm, metawsm_bindings = pop_message(broker, topic), bindings(broker)

    assert comparable(by_metawsm) == comparable(by_celery)
    assert metawsm_bindings == celery_bindings != {}
    # The body is the same bytes, not only the same JSON.
    assert by_metawsm["body"] == by_celery["body"]
    args, sent_kwargs, _embed = json.loads(base64.b64decode(by_metawsm["body"]))
    assert args == [] and sent_kwargs == kwargs


class EventTap:
    """Every message Redis PUBLISHes (Celery's events travel by pub/sub on Redis)."""

    def __init__(self, client: redis.Redis) -> None:
        self.pubsub = client.pubsub()
        self.pubsub.psubscribe("*")
        self.seen: list[tuple[bytes, dict[str, Any]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.stop.is_set():
            item = self.pubsub.get_message(timeout=0.05)
            if item and item["type"] == "pmessage":
                self.seen.append((item["channel"], json.loads(item["data"])))

    def take(self) -> tuple[bytes, dict[str, Any]]:
        wait_until(lambda: self.seen, 10, "a published event")
        return self.seen.pop(0)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.pubsub.close()


def test_the_task_sent_event_is_celerys(redis_url: str, broker: redis.Redis) -> None:
    settings = settings_for("sqlite://", redis_url, task_events=True)
    tap = EventTap(broker)
    try:
        wait_until(lambda: broker.pubsub_numpat() == 1, 10, "the event tap to subscribe")
        celery_send(settings, EVENT_TOPIC, "cmd-1", {"message": PAYLOAD})
        channel_celery, by_celery = tap.take()
        metawsm_send(settings, EVENT_TOPIC, "cmd-1", redelivery=False)
        channel_metawsm, by_metawsm = tap.take()
    finally:
        tap.close()

    assert channel_metawsm == channel_celery == b"/0.celeryev/task.sent"
    assert comparable_event(by_metawsm) == comparable_event(by_celery)
    event = json.loads(base64.b64decode(by_metawsm["body"]))
    assert event["type"] == "task-sent" and event["uuid"] == "cmd-1"
    assert event["kwargs"] == SUMMARY and "hello" not in json.dumps(event)


def comparable_event(message: dict[str, Any]) -> dict[str, Any]:
    properties = dict(message["properties"])
    for key in FRESH:
        assert properties.pop(key)
    body = json.loads(base64.b64decode(message["body"]))
    for key in ("timestamp", "clock"):
        assert isinstance(body.pop(key), (int, float))
    return {**message, "properties": properties, "body": body}


# The publisher writes without kombu what the kombu publisher it replaced wrote: every key and
# every event, byte for byte, once the values fresh per publish are set aside.
FRESH_VALUES = re.compile(rb'"(delivery_tag|reply_to)": "[0-9a-f-]{36}"')


def fresh_aside(raw: bytes) -> bytes:
    """``raw`` with the delivery tag and publisher id replaced by their names (checked there)."""
    found = FRESH_VALUES.findall(raw)
    assert b"delivery_tag" in found
    return FRESH_VALUES.sub(rb'"\1": "<fresh>"', raw)


def keyspace(client: redis.Redis) -> dict[bytes, Any]:
    """Every key of the database and its value, by type (lists and sets of raw bytes)."""
    out: dict[bytes, Any] = {}
    for key in client.keys("*"):  # type: ignore[union-attr]
        kind = client.type(key)
        if kind == b"list":
            out[key] = [fresh_aside(v) for v in client.lrange(key, 0, -1)]  # type: ignore[union-attr]
        elif kind == b"set":
            out[key] = sorted(client.smembers(key))  # type: ignore[arg-type]
        else:
            out[key] = (kind, client.dump(key))
    return out


def publish_with(module: Any, settings: Settings, topic: str, redelivery: bool) -> None:
    publisher = module.make_publisher(settings)
    try:
        publisher.publish(topic, "cmd-1", PAYLOAD, redelivery=redelivery)
        publisher.publish(topic, "cmd-2", {"event_type": "x", "payload": {}})  # declared once
    finally:
        publisher.close()


# A plain redis:// URL is sent by the minimal client (transport/resp.py), a URL with options
# by redis-py: both must write the same.
CLIENTS = {"": resp.RespClient, "?db=0": redis_wire.RedisPyCommands}


@pytest.mark.parametrize("query", sorted(CLIENTS), ids=["resp", "redis-py"])
@pytest.mark.parametrize("redelivery", [False, True])
def test_every_key_is_the_kombu_publishers_byte_for_byte(
    redis_url: str, broker: redis.Redis, redelivery: bool, query: str
) -> None:
    from metawsm.transport import publisher as redis_publisher
    from tests.fixtures import kombu_publisher

    settings = settings_for("sqlite://", redis_url, task_events=False)
    ours = settings.replace(broker_url=redis_url + query)
    client = redis_wire.client(ours)
    assert isinstance(client, CLIENTS[query])
    client.close()
    topic = f"forum.commands.bytes_{int(redelivery)}"
    publish_with(kombu_publisher, settings, topic, redelivery)
    by_kombu = keyspace(broker)
    broker.flushall()
    publish_with(redis_publisher, ours, topic, redelivery)
    by_redis_py = keyspace(broker)

    assert by_redis_py == by_kombu
    assert set(by_kombu) == {
        topic.encode(),
        f"_kombu.binding.{topic}".encode(),
        f"_kombu.binding_permanent.{topic}".encode(),
    }
    assert len(by_kombu[topic.encode()]) == 2


class RawTap:
    """Every message Redis PUBLISHes, as the raw channel and bytes."""

    def __init__(self, client: redis.Redis) -> None:
        self.pubsub = client.pubsub()
        self.pubsub.psubscribe("*")
        self.seen: list[tuple[bytes, bytes]] = []

    def take(self) -> tuple[bytes, bytes]:
        def got() -> bool:
            item = self.pubsub.get_message(timeout=0.05)
            if item and item["type"] == "pmessage":
                self.seen.append((item["channel"], item["data"]))
            return bool(self.seen)

        wait_until(got, 10, "a published event")
        return self.seen.pop(0)


def event_aside(raw: bytes) -> tuple[bytes, dict[str, Any]]:
    """The event envelope with its fresh values and body set aside, and the body without its
    timestamp and logical clock."""
    envelope = json.loads(raw)
    body = json.loads(base64.b64decode(envelope["body"]))
    for key in ("timestamp", "clock"):
        assert isinstance(body.pop(key), (int, float))
    return fresh_aside(raw.replace(envelope["body"].encode(), b"<body>")), body


def test_the_task_sent_event_is_the_kombu_publishers_byte_for_byte(
    redis_url: str, broker: redis.Redis
) -> None:
    from metawsm.transport import publisher as redis_publisher
    from tests.fixtures import kombu_publisher

    settings = settings_for("sqlite://", redis_url, task_events=True)
    tap = RawTap(broker)
    try:
        wait_until(lambda: broker.pubsub_numpat() == 1, 10, "the event tap to subscribe")
        events = []
        for module in (kombu_publisher, redis_publisher):
            publisher = module.make_publisher(settings)
            try:
                publisher.publish(EVENT_TOPIC, "cmd-1", PAYLOAD)
            finally:
                publisher.close()
            events.append(tap.take())
    finally:
        tap.pubsub.close()
    (channel_kombu, raw_kombu), (channel_redis_py, raw_redis_py) = events
    assert channel_redis_py == channel_kombu == b"/0.celeryev/task.sent"
    assert event_aside(raw_redis_py) == event_aside(raw_kombu)
