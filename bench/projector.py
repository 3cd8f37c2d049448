"""Micro-benchmark of the forum projector: mean CPU µs per ``project()`` call, on SQLite.

1. incremental: 20 threads on 4 tickets, 20 events each (opens, posts, priority, state and
   assignment changes), projected in log order, so every event follows the last one projected;
2. re-fold: one thread of 200 events; before each call (outside the timing) the thread's view and
   its ticket's stats are deleted, so every call folds the thread from the log.

The log is written by the real handlers (``apply_command`` with a publisher that does nothing).

    python bench/projector.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, delete, select

from metawsm.bootstrap import message_bus, topics_for
from metawsm.messages.events import Event
from metawsm.runtime import Runtime
from metawsm.services.delivery import apply_command
from metawsm.services.eventlog import row_to_event
from metawsm.services.projections import project
from metawsm.services.submit import make_command, submit
from metawsm.settings import load_settings
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine
from metawsm.storage.models import ForumEvent, ForumThreadStat, ForumThreadView
from metawsm.storage.uow import unit_of_work

PRIORITIES = ("high", "low", "urgent", "normal")
STATES = ("waiting_human", "waiting_operator")


class NullPublisher:
    """No broker: the benchmark calls the projector itself."""

    def publish(
        self, topic: str, message_id: str, payload: dict[str, Any], redelivery: bool = False
    ) -> None:
        """Do nothing."""


def run(rt: Runtime, command_type: str, actor: str, **payload: Any) -> None:
    """Accept and apply one command with the real handlers."""
    command = make_command(command_type, payload, actor_type=actor, actor_name=f"{actor}-1")
    submit(rt, command)  # its publisher does nothing
    assert apply_command(rt, message_bus(), command) == "applied", (command_type, payload)


def step(rt: Runtime, thread_id: str, k: int) -> None:
    """The ``k``-th change (k >= 1) of a thread: a post, priority, state or assignee."""
    if k % 4 == 1:
        run(rt, "add_post", "agent", thread_id=thread_id, body=f"post {k}")
    elif k % 4 == 2:
        run(rt, "set_priority", "operator", thread_id=thread_id, priority=PRIORITIES[k // 4 % 4])
    elif k % 4 == 3:
        run(rt, "change_state", "operator", thread_id=thread_id, to_state=STATES[k // 4 % 2])
    else:
        who = ("operator", "op-1") if k // 4 % 2 else ("human", "hana")
        run(rt, "assign_thread", "operator", thread_id=thread_id, assignee_type=who[0],
            assignee_name=who[1])  # fmt: skip


def logged(engine: Engine, thread_ids: set[str]) -> list[Event]:
    """The events of ``thread_ids`` in log order."""
    with unit_of_work(engine, readonly=True) as s:
        rows = s.execute(
            select(ForumEvent)
            .where(ForumEvent.thread_id.in_(thread_ids))
            .order_by(ForumEvent.sequence)
        ).scalars()
        return [row_to_event(r) for r in rows]


def timed(engine: Engine, event: Event) -> int:
    """CPU nanoseconds of one ``project()`` call."""
    started = time.process_time_ns()
    project(engine, event, f"{event.event_id}:projector")
    return time.process_time_ns() - started


def incremental(rt: Runtime) -> float:
    """Mean CPU µs per call when every event follows the last one projected."""
    threads = [f"inc-{n}" for n in range(20)]
    for n, thread_id in enumerate(threads):
        run(rt, "open_thread", "agent", thread_id=thread_id, ticket=f"TCK-{n % 4}", title="T",
            body="b", run_id="run-1")  # fmt: skip
    for k in range(1, 20):
        for thread_id in threads:
            step(rt, thread_id, k)
    times = [timed(rt.engine, e) for e in logged(rt.engine, set(threads))]
    return sum(times) / len(times) / 1000


def refold(rt: Runtime) -> float:
    """Mean CPU µs per call when every call folds a 200-event thread from the log."""
    run(rt, "open_thread", "agent", thread_id="big", ticket="TCK-big", title="T", body="b")
    for k in range(1, 200):
        step(rt, "big", k)
    events = logged(rt.engine, {"big"})
    assert len(events) == 200
    times = []
    for event in events[1:]:  # the opening alone needs no fold
        with unit_of_work(rt.engine) as s:
            s.execute(delete(ForumThreadView).where(ForumThreadView.thread_id == "big"))
            s.execute(delete(ForumThreadStat).where(ForumThreadStat.ticket == "TCK-big"))
        times.append(timed(rt.engine, event))
    return sum(times) / len(times) / 1000


def main() -> None:
    """Build a fresh SQLite database, run both cases, print the means."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'bench.db'}"
        settings = load_settings(database_url=url, broker_url="redis://127.0.0.1:1/0")
        engine = build_engine(settings)
        try:
            migrate.upgrade(engine)
            rt = Runtime(engine, settings, topics_for(settings), NullPublisher())
            print(f"incremental (400 events, 20 threads): {incremental(rt):8.1f} µs CPU/call")
            print(f"re-fold (200-event thread):           {refold(rt):8.1f} µs CPU/call")
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
