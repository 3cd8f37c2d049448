"""No element of a queue stops a worker: bad ones are quarantined as dead letters.

Elements are pushed straight into Redis (LPUSH, as a broken or hostile producer would) in front
of a real ``metawsm worker``: not JSON, not UTF-8, JSON that is no message, a pickled message, a
message naming no known task. Each lands in ``forum_dead_letters`` (kind ``quarantine``, the
element kept as it was, the reason, the queue), the worker's processes stay the same, and a
valid command submitted afterwards is applied. Nothing is ever unpickled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from sqlalchemy import select

from metawsm.bootstrap import Container
from metawsm.messages.commands import AnyCommand
from metawsm.services import deadletters
from metawsm.services.submit import make_command, read_outcome, submit
from metawsm.settings import Settings
from metawsm.storage.models import ForumDeadLetter
from metawsm.storage.uow import unit_of_work
from metawsm.transport.redis_server import RedisServer
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import (
    FAST,
    SubprocessWorker,
    all_final,
    client_container,
    settled,
    subprocess_worker,
    wait_until,
)

pytestmark = pytest.mark.fault

QUEUE = "forum.commands.add_post"
GARBAGE_IN_A_ROW = 20  # four times what makes the supervisor give up on a crashing worker


class _CreatesFile:
    """Pickles to a call of ``open(path, "w")``: the file exists only if someone unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.path, "w"))


def _envelope(
    body: bytes, content_type: str, encoding: str, task: Any, **header_changes: Any
) -> bytes:
    """A Celery protocol 2 message as kombu's Redis transport stores it; a header changed to
    ``None`` is left out."""
    task_id = str(uuid.uuid4())
    headers = {
        "lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
        "group": None, "retries": 0, "eta": None, "expires": None, "timelimit": [None, None],
        "argsrepr": "()", "kwargsrepr": "{}", "origin": "test", "ignore_result": True,
    }  # fmt: skip
    headers.update(header_changes)
    headers = {key: value for key, value in headers.items() if value is not None}
    properties = {
        "correlation_id": task_id,
        "reply_to": "",
        "delivery_mode": 2,
        "delivery_info": {"exchange": "", "routing_key": QUEUE},
        "priority": 0,
        "body_encoding": "base64",
        "delivery_tag": str(uuid.uuid4()),
    }
    message = {
        "body": base64.b64encode(body).decode("ascii"),
        "content-encoding": encoding,
        "content-type": content_type,
        "headers": headers,
        "properties": properties,
    }
    return json.dumps(message).encode()


EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
JSON_BODY = json.dumps([[], {"message": {"x": 1}}, EMBED]).encode()


def _bad_elements(marker: Path) -> dict[str, tuple[bytes, str]]:
    """Each kind of bad element, with a fragment of the reason its dead letter must give."""
    pickled = pickle.dumps(((), {"message": _CreatesFile(marker)}, EMBED))
    return {
        "garbage": (b"garbage", "not JSON"),
        "invalid UTF-8": (b"\xff\xfe garbage \x80\x00", "not UTF-8"),
        "JSON but no message": (b'{"x": 1}', "not a kombu message"),
        "pickled": (
            _envelope(pickled, "application/x-python-serialize", "binary", QUEUE),
            "application/x-python-serialize",
        ),
        "unknown task": (
            _envelope(JSON_BODY, "application/json", "utf-8", "forum.commands.no_such_task"),
            "forum.commands.no_such_task",
        ),
    }


def _malformed_messages() -> dict[str, tuple[bytes, str]]:
    """Elements that get further into kombu and celery before they fail, with their reasons."""
    valid = json.loads(_envelope(JSON_BODY, "application/json", "utf-8", QUEUE))
    not_base64 = json.dumps({**valid, "body": "!not base64!"}).encode()
    return {
        "a JSON list": (b"[1, 2]", "not a kombu message envelope"),
        "JSON nested too deep": (b"[" * 10_000, "not JSON"),
        "a body that is not base64": (not_base64, "not a kombu message envelope"),
        "no task name": (_envelope(JSON_BODY, "application/json", "utf-8", None), "no task"),
        "a task name that is a list": (
            _envelope(JSON_BODY, "application/json", "utf-8", [QUEUE]),
            "not a task message this worker can read",
        ),
        "a known task without an id": (
            _envelope(JSON_BODY, "application/json", "utf-8", QUEUE, id=None),
            "not a task message this worker can read",
        ),
        "a known task whose body is a number": (
            _envelope(b"5", "application/json", "utf-8", QUEUE),
            "not a task message this worker can read",
        ),
        "a known task with a garbage eta": (
            _envelope(JSON_BODY, "application/json", "utf-8", QUEUE, eta="tomorrow-ish"),
            "invalid ETA value",
        ),
    }


def _quarantine_id(raw: bytes) -> str:
    return "quarantine-" + hashlib.sha256(raw).hexdigest()[:24]


def _raw(letter: dict[str, Any]) -> bytes:
    """The element a dead letter kept, as bytes."""
    payload = letter["payload"]
    if payload["raw_encoding"] == "base64":
        return base64.b64decode(payload["raw"])
    return str(payload["raw"]).encode()


def _quarantined(engine: Any) -> dict[str, dict[str, Any]]:
    with unit_of_work(engine, readonly=True) as s:
        rows = s.execute(select(ForumDeadLetter).where(ForumDeadLetter.kind == "quarantine"))
        return {row.message_id: deadletters.as_dict(row, full=True) for row in rows.scalars()}


def _command(command_type: str, **payload: str) -> AnyCommand:
    return make_command(command_type, dict(payload), actor_type="agent", actor_name="agent-1")


def _apply(ops: Container, worker: SubprocessWorker, command: AnyCommand) -> None:
    assert submit(ops.runtime, command).published
    wait_until(
        lambda: all_final(ops.engine, [command.command_id]) and settled(ops.engine),
        45,
        f"the worker to apply {command.command_type}; log:\n{worker.log_tail()}",
    )
    outcome = read_outcome(ops.engine, command.command_id)
    assert outcome is not None and outcome.status == "applied", outcome


@contextmanager
def _stack(
    settings: Settings, tmp_path: Path, pool: str
) -> Iterator[tuple[Container, SubprocessWorker, redis.Redis]]:
    """A client container, a worker that has applied one open (thread t-1), a Redis client."""
    broker = redis.Redis.from_url(settings.broker_url)
    with (
        client_container(settings) as ops,
        subprocess_worker(settings, tmp_path / "w", pool=pool) as worker,
    ):
        opened = _command("open_thread", thread_id="t-1", ticket="TCK-1", title="T", body="?")
        _apply(ops, worker, opened)
        try:
            yield ops, worker, broker
        finally:
            broker.close()


def _assert_unharmed(worker: SubprocessWorker, pids: set[int]) -> None:
    assert worker.alive(), worker.log_tail()
    assert worker.group_pids() == pids, f"a worker process died or restarted:\n{worker.log_tail()}"
    assert "Unrecoverable error" not in worker.log_path.read_text(errors="replace")


@pytest.fixture
def bad_settings(db_url: str, private_redis: RedisServer) -> Settings:
    return settings_for(db_url, private_redis.url, **FAST)


@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_every_kind_of_bad_element_is_quarantined_and_the_worker_consumes_on(
    bad_settings: Settings, tmp_path: Path, pool: str
) -> None:
    marker = tmp_path / "unpickled"
    bad = {**_bad_elements(marker), **_malformed_messages()}
    with _stack(bad_settings, tmp_path, pool) as (ops, worker, broker):
        pids = worker.group_pids()
        for raw, _reason in bad.values():
            broker.lpush(QUEUE, raw)
        letters = wait_until(
            lambda: (found := _quarantined(ops.engine)) and len(found) >= len(bad) and found,
            30,
            f"every bad element to be quarantined; log:\n{worker.log_tail()}",
        )
        _apply(ops, worker, _command("add_post", thread_id="t-1", body="after the bad ones"))
        _assert_unharmed(worker, pids)
    assert len(letters) == len(bad)
    for name, (raw, reason) in bad.items():
        letter = letters.get(_quarantine_id(raw))
        assert letter is not None, f"{name}: no dead letter with the id of its bytes"
        assert (letter["kind"], letter["status"], letter["attempts"]) == ("quarantine", "dead", 1)
        assert letter["topic"] == QUEUE, name
        assert reason in letter["error"], (name, letter["error"])
        assert letter["payload"]["queue"] == QUEUE, name
        assert letter["payload"]["truncated"] is False, name
        assert letter["payload"]["raw_bytes"] == len(raw), name
        assert _raw(letter) == raw, name
    assert not marker.exists(), "the pickled message was deserialised"


def test_twenty_garbage_elements_in_a_row_are_one_dead_letter_and_stop_nothing(
    bad_settings: Settings, tmp_path: Path
) -> None:
    with _stack(bad_settings, tmp_path, "solo") as (ops, worker, broker):
        pids = worker.group_pids()
        broker.lpush(QUEUE, *[b"garbage"] * GARBAGE_IN_A_ROW)

        def attempts() -> int:
            letter = _quarantined(ops.engine).get(_quarantine_id(b"garbage"))
            return int(letter["attempts"]) if letter else 0

        wait_until(
            lambda: attempts() == GARBAGE_IN_A_ROW,
            30,
            f"{GARBAGE_IN_A_ROW} attempts on one dead letter; log:\n{worker.log_tail()}",
        )
        _apply(ops, worker, _command("add_post", thread_id="t-1", body="after the garbage"))
        _assert_unharmed(worker, pids)
    assert list(_quarantined(ops.engine)) == [_quarantine_id(b"garbage")]


@contextmanager
def _write_lock(settings: Settings) -> Iterator[None]:
    """Hold SQLite's write lock (what a long transaction of another process does)."""
    conn = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"), isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_a_bad_element_met_while_the_database_is_locked_is_quarantined_once_it_is_free(
    sqlite_url: str, private_redis: RedisServer, tmp_path: Path
) -> None:
    settings = settings_for(sqlite_url, private_redis.url, **{**FAST, "db_busy_timeout_ms": 200})
    with _stack(settings, tmp_path, "solo") as (ops, worker, broker):
        pids = worker.group_pids()
        with _write_lock(settings):
            broker.lpush(QUEUE, b"garbage")
            wait_until(
                lambda: "could not record" in worker.log_path.read_text(errors="replace"),
                30,
                f"the worker to fail recording it; log:\n{worker.log_tail()}",
            )
            assert _quarantined(ops.engine) == {}
        letter = wait_until(
            lambda: _quarantined(ops.engine).get(_quarantine_id(b"garbage")),
            30,
            f"the element to be quarantined once the lock is gone; log:\n{worker.log_tail()}",
        )
        assert letter["attempts"] == 1
        _apply(ops, worker, _command("add_post", thread_id="t-1", body="after the lock"))
        _assert_unharmed(worker, pids)
