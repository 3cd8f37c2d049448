"""The Celery task message (protocol 2) that carries a metawsm message, built without Celery.

The workers are Celery workers: what they consume is a task message of Celery's protocol 2 —
``headers`` (the task name, its id, the argument reprs monitoring shows, ...), ``properties``
(``correlation_id``, ``reply_to``) and the body ``(args, kwargs, embed)``. Publishers build it
here and hand it to kombu (:mod:`metawsm.transport.publisher`), so a process that only publishes
never imports Celery (~100 ms of a CLI call). The fields and their values are those Celery 5.7's
``send_task`` writes for the same call; ``tests/integration/test_publisher_wire.py`` publishes
through both and compares what lands in Redis, key by key.

Also here: the ``task-sent`` event a Celery publisher sends to monitoring (Flower) when task
events are on.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

# Celery's event exchange (its ``event_exchange`` setting) and the routing key of task-sent.
EVENT_EXCHANGE = "celeryev"
TASK_SENT = "task-sent"


@dataclass(frozen=True)
class TaskMessage:
    """One task message: kombu publishes ``body`` with ``headers`` and ``properties``."""

    headers: dict[str, Any]
    properties: dict[str, Any]
    body: tuple[list[Any], dict[str, Any], dict[str, Any]]


@cache
def _hostname() -> str:
    return socket.gethostname()


def origin() -> str:
    """This process as Celery names a process that is not a worker: ``gen<pid>@<host>``."""
    return f"gen{os.getpid()}@{_hostname()}"


def task_message(
    task: str,
    task_id: str,
    kwargs: dict[str, Any],
    *,
    argsrepr: str,
    kwargsrepr: str,
    reply_to: str,
) -> TaskMessage:
    """The protocol-2 message calling task ``task`` with ``kwargs`` (no positional args).

    ``argsrepr``/``kwargsrepr`` are what monitoring shows of the arguments; ``reply_to``
    identifies the publisher (Celery's per-thread app id; no result is ever sent back).
    """
    headers: dict[str, Any] = {
        "lang": "py",
        "task": task,
        "id": task_id,
        "shadow": None,
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": argsrepr,
        "kwargsrepr": kwargsrepr,
        "origin": origin(),
        "ignore_result": None,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    # Celery passes the reprs on as message properties too (they ride along in send_task's
    # options); kept so a message is the same whichever publisher sent it.
    properties = {
        "correlation_id": task_id,
        "reply_to": reply_to,
        "argsrepr": argsrepr,
        "kwargsrepr": kwargsrepr,
    }
    embed = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
    return TaskMessage(headers, properties, ([], kwargs, embed))


def utcoffset_hours() -> float:
    """The local offset to UTC in hours, as Celery's events carry it (west of UTC positive)."""
    return (time.altzone if time.localtime().tm_isdst else time.timezone) / 3600


def task_sent_event(message: TaskMessage, queue: str, clock: int) -> dict[str, Any]:
    """The ``task-sent`` event for ``message`` published to ``queue`` (Celery's fields).

    ``clock``: the publisher's logical clock, one more for every event it sends.
    """
    headers = message.headers
    return {
        "hostname": headers["origin"],
        "utcoffset": utcoffset_hours(),
        "pid": os.getpid(),
        "clock": clock,
        "uuid": headers["id"],
        "root_id": headers["root_id"],
        "parent_id": headers["parent_id"],
        "name": headers["task"],
        "args": headers["argsrepr"],
        "kwargs": headers["kwargsrepr"],
        "retries": headers["retries"],
        "eta": headers["eta"],
        "expires": headers["expires"],
        "queue": queue,
        "exchange": "",
        "routing_key": queue,
        "timestamp": time.time(),
        "type": TASK_SENT,
    }
