"""A small store for bench/snapshot.py, written through the product's own services in-process.

``runs`` runs (two agents each, every fifth a bootstrap run with a brief) with forum threads,
control signals (pending guidance, completion, validation), stalled agents, stopped runs, dead
letters, and ``extra_threads`` threads of no run; then one SLA pass 40 minutes later raises
escalations. Commands are accepted and applied with the real handlers, and every event is handed
to its subscribers here (no broker). Built once per shape and cached (copy before writing to it).
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from metawsm.bootstrap import message_bus, topics_for
from metawsm.messages.common import Actor
from metawsm.runtime import Runtime
from metawsm.services import escalation, lifecycle, runs
from metawsm.services.deadletters import Failure, dead_letter
from metawsm.services.delivery import apply_command
from metawsm.services.eventlog import row_to_event
from metawsm.services.submit import make_command, submit
from metawsm.settings import Settings, load_settings
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine
from metawsm.storage.models import ForumEvent
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work

OPERATOR = Actor(type="operator", name="bench-operator")
BRIEF = runs.BriefInput(goal="ship", scope="s", done_criteria="tests pass", constraints="c")
BUS = message_bus()


class NullPublisher:
    """No broker: this module hands every event to its subscribers itself."""

    def publish(
        self, topic: str, message_id: str, payload: dict[str, Any], redelivery: bool = False
    ) -> None:
        """Do nothing."""


class Writer:
    """Applies commands and delivers the events they wrote, in log order."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.delivered = 0

    def command(self, kind: str, actor: str, **payload: Any) -> None:
        """Accept, apply and deliver one command."""
        command = make_command(kind, payload, actor_type=actor, actor_name=f"bench-{actor}")
        submit(self.rt, command)
        assert apply_command(self.rt, BUS, command) == "applied", (kind, payload)
        self.deliver()

    def signal(self, run_id: str, agent: str, actor: str = "agent", **signal: Any) -> None:
        """One control signal of ``agent`` on ``run_id``."""
        body = {"run_id": run_id, "agent_name": agent, **signal}
        self.command("control_signal", actor, run_id=run_id, agent_name=agent, signal=body)

    def deliver(self) -> None:
        """Hand every event not delivered yet to its subscribers (projector, lifecycle)."""
        with unit_of_work(self.rt.engine, readonly=True) as s:
            rows = s.execute(
                select(ForumEvent)
                .where(ForumEvent.sequence > self.delivered)
                .order_by(ForumEvent.sequence)
            ).scalars()
            events = [row_to_event(r) for r in rows]
        for event in events:
            for sub in BUS.subscribers_of(event.event_type):
                if sub.name != "escalation_notify":  # a side effect outside the database
                    sub.consume(self.rt, event, f"{event.event_id}:{sub.name}")
            self.delivered = max(self.delivered, event.sequence or 0)


def _one_run(w: Writer, i: int) -> None:
    bootstrap = i % 5 == 0
    run_id = runs.create_run(
        w.rt,
        tickets=[f"TCK-{i % 50}"],
        agents=["alice", "bob"],
        mode="bootstrap" if bootstrap else "run",
        brief=BRIEF if bootstrap else None,
        actor=OPERATOR,
    )
    w.deliver()
    for k in range(2):
        tid = f"thr-{i}-{k}"
        w.command("open_thread", "agent", thread_id=tid, ticket=f"TCK-{i % 50}", run_id=run_id,
                  agent_name="alice", title=f"question {k} of run {i}", body="help",
                  priority="high" if (i + k) % 4 == 0 else "normal")  # fmt: skip
        if k == 1 and i % 2:
            w.command("answer_thread", "operator", thread_id=tid, body="answer")
    if i % 3 == 0:
        w.signal(run_id, "alice", control_type="guidance_request", question="which db?")
    if i % 2 == 0:
        w.signal(run_id, "bob", control_type="completion", summary="done")
        w.signal(run_id, "bob", control_type="validation", status="passed",
                 done_criteria="tests pass")  # fmt: skip
    if i % 7 == 0:
        lifecycle.set_agent_status(w.rt, run_id, "bob", "stalled", OPERATOR)
    if i % 10 == 0:
        dead_letter(w.rt.engine, _failure(f"bench-dead-{i}", run_id))
    if i % 11 == 0:
        lifecycle.stop_run(w.rt, run_id, OPERATOR)
    w.deliver()


def _failure(message_id: str, run_id: str) -> Failure:
    return Failure(message_id, "command", "forum.commands.add_post", "forum.commands.add_post",
                   {"command_type": "add_post"}, "boom", None, 5, run_id)  # fmt: skip


def bench_settings(url: str) -> Settings:
    """Settings for the bench store (no broker is ever reached)."""
    return load_settings(database_url=url, broker_url="redis://127.0.0.1:1/0")


def build(path: Path, n_runs: int, extra_threads: int) -> None:
    """Write the store at ``path`` (replaced if it exists)."""
    path.unlink(missing_ok=True)
    settings = bench_settings(f"sqlite:///{path}")
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)
        w = Writer(Runtime(engine, settings, topics_for(settings), NullPublisher()))
        for i in range(n_runs):
            _one_run(w, i)
        for j in range(extra_threads):
            w.command("open_thread", "agent", thread_id=f"bg-{j}", ticket=f"TCK-{j % 50}",
                      title=f"background {j}", body="b")  # fmt: skip
        escalation.raise_due(w.rt, utcnow() + timedelta(minutes=40))
        w.deliver()
    finally:
        engine.dispose()


def cached(cache: Path, n_runs: int, extra_threads: int) -> Path:
    """The cached store of this shape (built on first use)."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"snapshot-{n_runs}r-{extra_threads}t.db"
    if not path.exists():
        tmp = path.with_suffix(".building")
        build(tmp, n_runs, extra_threads)
        shutil.move(tmp, path)
    return path
