"""Signal → status latency: how long after submit a control signal changes its run's status.

Starts a private redis-server, a fresh database (SQLite, or ``--database postgresql://...``: a
scratch database on that server) and the stack's worker (``python -m metawsm worker --role all
--concurrency 2``, as the Procfile runs it), using bench/pipeline.py's helpers. Then, one signal at
a time, submits control signals that move their run: ``guidance_request`` (running →
awaiting_guidance) and ``guidance_answer`` (back to running), and waits for the transition.

Two phases:

1. ``fresh``: ``--runs`` runs whose control threads are new, signals round-robin;
2. ``history``: one run whose agent's control thread already holds ``--history`` signals
   (request/answer pairs applied in-process through the real handlers, projected, the lifecycle
   consumer's messages marked done: the run stays running), then ``--signals`` more.

Latency: from the submit call until this process reads the transition committed (polling every
2 ms), p50/p90/p99/max in ms; also, from the database, the command's ``accepted_at`` to the
``created_at`` of the run event its signal caused (stamped when the lifecycle consumer's
transaction starts, so without the consumer's own work).

    PYTHONPATH=. python bench/signal_latency.py [--signals 200] [--history 2000] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select

from bench.pipeline import (
    NullPublisher,
    WorkerSet,
    interrupt_as_exception,
    log,
    percentiles,
    scratch_database,
)
from metawsm.bootstrap import Container, build, message_bus
from metawsm.messages.common import Actor
from metawsm.runtime import Runtime
from metawsm.services import runs
from metawsm.services.delivery import apply_command
from metawsm.services.eventlog import row_to_event
from metawsm.services.outbox import mark_done
from metawsm.services.projections import project
from metawsm.services.submit import make_command, submit
from metawsm.settings import load_settings
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine
from metawsm.storage.models import ForumCommand, ForumEvent, Run, RunEvent
from metawsm.storage.types import utcnow
from metawsm.storage.uow import connection_unit, unit_of_work
from metawsm.transport.redis_server import RedisServer

TRANSITION_TIMEOUT_S = 20.0
POLL_S = 0.002
TARGETS = {"p50_ms": 50.0, "p99_ms": 200.0}
OPERATOR = Actor(type="operator", name="bench")
NEXT = {"running": "guidance_request", "awaiting_guidance": "guidance_answer"}
FIELDS = {"guidance_request": {"question": "which way?"}, "guidance_answer": {"answer": "left"}}


def signal_command(run_id: str, control_type: str) -> Any:
    """The control signal of agent ``alice`` in ``run_id`` (an answer comes from the operator)."""
    actor = "operator" if control_type == "guidance_answer" else "agent"
    signal = {"run_id": run_id, "agent_name": "alice", "control_type": control_type}
    payload = {
        "run_id": run_id,
        "agent_name": "alice",
        "signal": {**signal, **FIELDS[control_type]},
    }
    return make_command("control_signal", payload, actor_type=actor, actor_name=f"{actor}-1")


def run_status(engine: Engine, run_id: str) -> str:
    """The run's status now."""
    with unit_of_work(engine, readonly=True) as s:
        return s.get_one(Run, run_id).status


def latency_ms(engine: Engine, command_id: str) -> float | None:
    """Submit (accepted_at) → the run event its signal caused, in ms; None until it exists."""
    with unit_of_work(engine, readonly=True) as s:
        accepted = s.get_one(ForumCommand, command_id).accepted_at
        event_id = s.execute(
            select(ForumEvent.event_id).where(
                ForumEvent.command_id == command_id,
                ForumEvent.event_type == "forum.control.signal",  # not the thread's opening
            )
        ).scalar()
        if event_id is None:
            return None
        moved = s.execute(select(RunEvent.created_at).where(RunEvent.cause_event_id == event_id))
        at = moved.scalar()
    return None if at is None else (at - accepted).total_seconds() * 1000.0


def send_and_wait(c: Container, run_id: str) -> tuple[float, float]:
    """Submit the signal that moves ``run_id`` next and wait for the transition (deadline).

    Returns (observed, recorded) ms: until this process sees the new status committed, and from
    ``accepted_at`` to the run event's ``created_at`` (taken when the consumer's transaction
    starts, so it leaves out the consumer's own work).
    """
    command = signal_command(run_id, NEXT[run_status(c.engine, run_id)])
    started = time.perf_counter()
    submit(c.runtime, command)
    deadline = time.monotonic() + TRANSITION_TIMEOUT_S
    while (recorded := latency_ms(c.engine, command.command_id)) is None:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"run {run_id}: no transition {TRANSITION_TIMEOUT_S:g} s after submit"
            )
        time.sleep(POLL_S)
    return (time.perf_counter() - started) * 1000.0, recorded


def new_runs(c: Container, count: int) -> list[str]:
    """``count`` runs of one agent (alice), running."""
    return [
        runs.create_run(
            c.runtime,
            tickets=[f"TCK-L{n}"],
            agents=["alice"],
            mode="run",
            brief=None,
            actor=OPERATOR,
        )
        for n in range(count)
    ]


def prefill(c: Container, run_id: str, signals: int) -> None:
    """Post ``signals`` request/answer signals in-process; project them; the run stays running."""
    rt = Runtime(c.engine, c.settings, c.topics, NullPublisher())
    bus = message_bus()
    for k in range(signals):
        command = signal_command(run_id, ("guidance_request", "guidance_answer")[k % 2])
        submit(rt, command)
        apply_command(rt, bus, command)
        with unit_of_work(c.engine, readonly=True) as s:
            rows = s.execute(select(ForumEvent).where(ForumEvent.command_id == command.command_id))
            events = [row_to_event(r) for r in rows.scalars()]
        for event in events:
            project(c.engine, event, f"{event.event_id}:projector")
        with connection_unit(c.engine) as conn:  # the pairs leave the run as it is
            mark_done(conn, [f"{e.event_id}:run_lifecycle" for e in events], utcnow())
        if (k + 1) % 500 == 0:
            log(f"history: {k + 1} of {signals} signals")


def phase(c: Container, run_ids: list[str], signals: int) -> dict[str, Any]:
    """``signals`` signals round-robin over ``run_ids``; percentiles of their latency."""
    pairs = [send_and_wait(c, run_ids[k % len(run_ids)]) for k in range(signals)]
    observed = percentiles([o for o, _ in pairs])
    return {"signals": signals, **observed, "recorded": percentiles([r for _, r in pairs])}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--database", default="sqlite", help="sqlite, or a postgresql:// server URL")
    p.add_argument("--runs", type=int, default=10, help="runs in the fresh phase (10)")
    p.add_argument("--signals", type=int, default=200, help="signals per phase (200)")
    p.add_argument("--history", type=int, default=2000, help="signals already in the thread")
    p.add_argument("--concurrency", type=int, default=2, help="worker concurrency (2)")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p.parse_args(argv)


def start_stack(args: argparse.Namespace, tmp: Path, es: ExitStack) -> Container:
    """Redis, a migrated scratch database, the worker; the composition root (all closed by es)."""
    redis = es.enter_context(RedisServer(dir=tmp / "redis"))
    url = es.enter_context(scratch_database(args.database, tmp))
    settings = load_settings(database_url=url, broker_url=redis.url)
    engine = build_engine(settings)
    migrate.upgrade(engine)
    engine.dispose()
    workers = WorkerSet(["all"], "solo", {"all": args.concurrency})
    es.callback(workers.stop)
    workers.start(settings, tmp / "logs")
    c = build(settings)
    es.callback(c.close)
    return c


def main(argv: Sequence[str] | None = None) -> int:
    """Run both phases; print the table (or JSON)."""
    args = parse_args(argv)
    if os.getloadavg()[0] > 0.5:
        log(f"warning: load average {os.getloadavg()[0]:.2f} before start: the machine is busy")
    with ExitStack() as es, interrupt_as_exception():
        if args.keep:
            tmp = Path(tempfile.mkdtemp(prefix="metawsm-latency-"))
            log(f"keeping {tmp} (database, worker logs)")
        else:
            tmp = Path(es.enter_context(tempfile.TemporaryDirectory(prefix="metawsm-latency-")))
        c = start_stack(args, tmp, es)
        fresh = new_runs(c, args.runs)
        send_and_wait(c, fresh[0])  # the worker is up and warm
        send_and_wait(c, fresh[0])
        results = {"fresh": phase(c, fresh, args.signals)}
        [long_run] = new_runs(c, 1)
        prefill(c, long_run, args.history)
        results["history"] = {"history": args.history, **phase(c, [long_run], args.signals)}
    report = {"database": args.database, "targets": TARGETS, **results}
    if args.json:
        print(json.dumps(report))
        return 0
    for name, r in results.items():
        extra = f" after {r['history']} signals" if "history" in r else f" over {args.runs} runs"
        print(
            f"{name:8} {r['signals']} signals{extra}: submit→status p50 {r['p50']} ms,"
            f" p90 {r['p90']} ms, p99 {r['p99']} ms, max {r['max']} ms"
            f" (target p50 ≤ {TARGETS['p50_ms']:g}, p99 ≤ {TARGETS['p99_ms']:g});"
            f" accepted_at→run event p50 {r['recorded']['p50']} ms, p99 {r['recorded']['p99']} ms"
        )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: processes and temporary directory removed")
        sys.exit(130)
