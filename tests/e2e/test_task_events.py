"""What monitoring sees of a message: task events from a real prefork worker, and argument reprs.

The worker flushes its task events in batches (workers/consumer.py) and the publisher replaces
the argument repr by a one-line summary (metawsm/transport/publisher.py): Flower must still see
every task, and never a post body.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Any

import pytest
import redis

from metawsm.bootstrap import build
from metawsm.services.submit import make_command, submit
from metawsm.settings import Settings
from tests.fixtures.conditions import wait_until
from tests.fixtures.database import settings_for
from tests.fixtures.redis import ControlledRedisServer
from tests.fixtures.workers import client_app, subprocess_worker

SECRET = "a post body that must not reach monitoring"


def _settings(db_url: str, redis_server: ControlledRedisServer) -> Settings:
    return settings_for(db_url, broker_url=redis_server.url)


def _open_thread(thread_id: str) -> Any:
    payload = {"thread_id": thread_id, "ticket": "TCK-1", "title": "T", "body": SECRET}
    return make_command("open_thread", payload, actor_type="agent", actor_name="agent-1")


def test_a_published_command_shows_its_kind_and_ids_but_not_its_body_to_monitoring(
    db_url: str, private_redis: ControlledRedisServer
) -> None:
    c = build(_settings(db_url, private_redis))
    try:
        command = _open_thread("t-1")
        assert submit(c.runtime, command).published
    finally:
        c.close()
    client = redis.Redis.from_url(private_redis.url)
    raw = client.lrange("forum.commands.open_thread", 0, -1)
    assert len(raw) == 1
    message = json.loads(raw[0])
    headers = message["headers"]
    assert headers["id"] == command.command_id
    assert headers["kwargsrepr"] == (
        f"{{'message': <open_thread {command.command_id} thread=t-1>}}"
    )
    assert headers["argsrepr"] == "()"
    assert SECRET not in json.dumps(headers)
    # The body itself is intact: the worker gets the whole command.
    args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
    assert args == [] and kwargs["message"]["payload"]["body"] == SECRET


@pytest.mark.parametrize("pool", ["prefork", "solo"])
def test_a_worker_reports_every_task_to_event_receivers_in_batches(
    db_url: str, private_redis: ControlledRedisServer, tmp_path: Path, pool: str
) -> None:
    settings = _settings(db_url, private_redis)
    c = build(settings)
    monitor = client_app(settings)
    seen: dict[str, set[str]] = {}
    with monitor.connection_for_read() as conn:
        receiver = monitor.events.Receiver(conn, handlers={"*": _recorder(seen)})
        listener = threading.Thread(
            target=receiver.capture, kwargs={"limit": None, "wakeup": False}, daemon=True
        )
        listener.start()
        try:
            with subprocess_worker(settings, tmp_path / "worker", pool=pool) as worker:

                def reported(ids: set[str], kinds: set[str]) -> bool:
                    assert worker.alive(), worker.log_tail()
                    return all(kinds <= seen.get(i, set()) for i in ids)

                # A first command proves the worker is up and the receiver subscribed.
                first = _open_thread("t-0")
                submit(c.runtime, first)
                done = {"task-received", "task-succeeded"}
                wait_until(lambda: reported({first.command_id}, done), 60, "the first task")
                commands = [_open_thread(f"t-{i}") for i in range(1, 6)]
                for command in commands:
                    submit(c.runtime, command)
                ids = {command.command_id for command in commands}
                every = {"task-sent", "task-received", "task-started", "task-succeeded"}
                wait_until(lambda: reported(ids, every), 30, "every event of every command")
        finally:
            receiver.should_stop = True
            listener.join(10)
            monitor.close()
            c.close()
    assert not listener.is_alive()


def _recorder(seen: dict[str, set[str]]) -> Any:
    def on_event(event: dict[str, Any]) -> None:
        kind = str(event.get("type", ""))
        if kind.startswith("task-"):
            seen.setdefault(str(event.get("uuid")), set()).add(kind)
            assert SECRET not in json.dumps(event, default=str)

    return on_event
