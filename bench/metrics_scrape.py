"""The exporter's cost: one scrape on a large store, and what its counters add per command.

1. **Scrape**: copies a SQLite store (``--store``; default the snapshot store of 1,000 active
   runs and ~13k threads that ``bench/snapshot.py`` caches), upgrades the copy to head (which
   seeds the counters), optionally pads its event log and outbox with copies of their rows up to
   ``--events`` (the rows a scrape never reads, but whose tables it reads by index), then times
   ``read()`` + ``render()`` (what ``GET /metrics`` does) ``--repeat`` times against a real
   redis-server: best and median wall and CPU ms.
2. **Write path**: in one process, accept + apply + project ``--commands`` commands with the real
   services on a fresh SQLite database (the direct path of bench/pipeline.py: the same handlers,
   no broker), with the counters recorded and with ``record`` replaced by a no-op, alternating
   ``--rounds`` times: CPU µs per command (each command: its ledger row, handling, ~1-2 events
   projected).

    PYTHONPATH=. python bench/metrics_scrape.py [--store PATH] [--events 100000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select, text

from metawsm.bootstrap import message_bus, topics_for
from metawsm.ops import counters
from metawsm.ops.exporter import render
from metawsm.ops.readings import read
from metawsm.runtime import Runtime
from metawsm.services import delivery, outbox, projections, unit_of_work
from metawsm.services.delivery import apply_command
from metawsm.services.eventlog import row_to_event
from metawsm.services.submit import make_command, submit
from metawsm.settings import Settings, load_settings
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine
from metawsm.storage.models import ForumEvent, ForumOutbox, ForumThreadView
from metawsm.storage.uow import unit_of_work as read_unit
from metawsm.transport.redis_server import RedisServer

SNAPSHOT_STORE = Path("/work/snapshot-bench-data/snapshot-1000r-10000t.db")


class NullPublisher:
    """No broker: the benchmark delivers itself."""

    def publish(
        self, topic: str, message_id: str, payload: dict[str, Any], redelivery: bool = False
    ) -> None:
        """Do nothing."""


def _count(engine: Engine, model: Any) -> int:
    with read_unit(engine, readonly=True) as s:
        return int(s.execute(select(func.count()).select_from(model)).scalar_one())


def pad(engine: Engine, events: int) -> None:
    """Copy events (new sequences and ids, no thread) and done outbox rows up to ``events``."""
    with engine.begin() as conn:
        while True:
            have = conn.execute(text("SELECT COUNT(*), MAX(sequence) FROM forum_events")).one()
            missing = events - int(have[0])
            if missing <= 0:
                return
            top = int(have[1])
            conn.execute(
                text(
                    "INSERT INTO forum_events (sequence, event_id, event_type, event_version,"
                    " occurred_at, recorded_at, thread_id, thread_seq, run_id, ticket, agent_name,"
                    " actor_type, actor_name, correlation_id, causation_id, command_id, payload)"
                    " SELECT sequence + :top, event_id || '-pad' || :top, event_type,"
                    " event_version, occurred_at, recorded_at, NULL, NULL, NULL, ticket, NULL,"
                    " actor_type, actor_name, correlation_id, causation_id, NULL, payload"
                    " FROM forum_events ORDER BY sequence LIMIT :n"
                ),
                {"top": top, "n": missing},
            )
            conn.execute(
                text(
                    "INSERT INTO forum_outbox (message_id, kind, topic, message_key, payload,"
                    " status, attempts, publish_count, deliveries, next_attempt_at, lease_until,"
                    " lease_owner, last_error, created_at, updated_at, sent_at, first_failed_at)"
                    " SELECT message_id || '-pad' || :top, kind, topic, message_key, payload,"
                    " 'done', attempts, publish_count, deliveries, next_attempt_at, NULL, NULL,"
                    " NULL, created_at, updated_at, sent_at, NULL"
                    " FROM forum_outbox ORDER BY id LIMIT :n"
                ),
                {"top": top, "n": missing * 2},
            )


def scrape_bench(store: Path, events: int, repeat: int) -> None:
    """Print the scrape's best/median wall and CPU ms on a padded copy of ``store``."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "store.db"
        shutil.copyfile(store, copy)
        redis = RedisServer(dir=Path(tmp) / "redis")
        redis.start()
        settings = load_settings(database_url=f"sqlite:///{copy}", broker_url=redis.url)
        engine = build_engine(settings)
        try:
            migrate.upgrade(engine)
            pad(engine, events)
            shape = {
                "events": _count(engine, ForumEvent),
                "threads": _count(engine, ForumThreadView),
                "outbox rows": _count(engine, ForumOutbox),
            }
            print(f"store: {store.name} copy at head, {shape}")
            walls, cpus = [], []
            for _ in range(repeat):
                wall, cpu = time.perf_counter(), time.process_time()
                body = render(read(engine, settings))
                walls.append((time.perf_counter() - wall) * 1000)
                cpus.append((time.process_time() - cpu) * 1000)
            assert "metawsm_database_up 1" in body and "metawsm_broker_up 1" in body
            print(
                f"scrape (read + render, {repeat}x): wall best {min(walls):.1f} ms,"
                f" median {statistics.median(walls):.1f} ms; CPU best {min(cpus):.1f} ms,"
                f" median {statistics.median(cpus):.1f} ms; {len(body)} bytes"
            )
        finally:
            engine.dispose()
            redis.stop()


def _commands(rt: Runtime, n: int, tag: str) -> None:
    """Accept, apply and project ``n`` commands: opens, then posts on them."""
    bus = message_bus()
    threads = max(1, n // 5)
    for k in range(n):
        thread_id = f"{tag}-{k % threads}"
        if k < threads:
            kind, payload = "open_thread", {"thread_id": thread_id, "ticket": "TCK-1",
                                            "title": "T", "body": "b"}  # fmt: skip
        else:
            kind, payload = "add_post", {"thread_id": thread_id, "body": f"post {k}"}
        command = make_command(kind, payload, actor_type="agent", actor_name="agent-1")
        submit(rt, command)
        assert apply_command(rt, bus, command) == "applied"
        with read_unit(rt.engine, readonly=True) as s:
            rows = s.execute(
                select(ForumEvent).where(ForumEvent.command_id == command.command_id)
            ).scalars()
            events = [row_to_event(r) for r in rows]
        for event in events:
            projections.project(rt.engine, event, f"{event.event_id}:projector")


def _no_record(_conn: Any, _increments: Any) -> None:
    """The counters switched off (the 'before' of the write-path comparison)."""


def _with_record(fn: Callable[[Any, Any], None]) -> None:
    for module in (unit_of_work, delivery, projections, outbox, counters):
        if hasattr(module, "record"):
            module.record = fn  # type: ignore[attr-defined]


def write_bench(commands: int, rounds: int) -> None:
    """Print CPU µs per command with and without the counters, rounds alternated."""
    real = counters.record
    results: dict[str, list[float]] = {"with counters": [], "without": []}
    for round_ in range(rounds):
        for label, fn in (("without", _no_record), ("with counters", real)):
            with tempfile.TemporaryDirectory() as tmp:
                settings: Settings = load_settings(
                    database_url=f"sqlite:///{Path(tmp) / 'w.db'}",
                    broker_url="redis://127.0.0.1:1/0",
                )
                engine = build_engine(settings)
                try:
                    migrate.upgrade(engine)
                    rt = Runtime(engine, settings, topics_for(settings), NullPublisher())
                    _commands(rt, 50, "warm")
                    _with_record(fn)
                    started = time.process_time()
                    _commands(rt, commands, f"r{round_}")
                    used = time.process_time() - started
                finally:
                    _with_record(real)
                    engine.dispose()
            results[label].append(used / commands * 1e6)
    for label, values in results.items():
        print(
            f"write path {label:>13}: CPU µs/command best {min(values):.0f},"
            f" median {statistics.median(values):.0f} ({rounds} rounds x {commands} commands)"
        )
    best = min(results["with counters"]) / min(results["without"]) - 1
    median = statistics.median(results["with counters"]) / statistics.median(results["without"]) - 1
    print(f"counters add {best * 100:+.1f} % (best) / {median * 100:+.1f} % (median) CPU/command")


def micro_bench(transactions: int, rounds: int) -> None:
    """Print the CPU µs one ``record`` call adds to a transaction (3 increments, as an apply)."""
    from metawsm.ops.catalogue import COMMAND_LAG, COMMANDS_APPLIED

    incs = [counters.count(COMMANDS_APPLIED, command_type="add_post"), *counters.observe(
        COMMAND_LAG, 0.03)]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(
            database_url=f"sqlite:///{Path(tmp) / 'm.db'}", broker_url="redis://127.0.0.1:1/0"
        )
        engine = build_engine(settings)
        migrate.upgrade(engine)
        timings: list[float] = []
        try:
            for _ in range(rounds):
                # Many calls in one transaction: the statement's own cost, without the noise
                # of a transaction's (a record() is one more statement in a transaction).
                with engine.begin() as conn:
                    started = time.process_time()
                    for _ in range(transactions):
                        counters.record(conn, incs)
                    timings.append((time.process_time() - started) / transactions * 1e6)
        finally:
            engine.dispose()
    print(
        f"one record() of 3 increments (an apply's): {min(timings):.1f} µs CPU best,"
        f" {statistics.median(timings):.1f} median ({rounds} x {transactions} calls)"
    )


def main() -> None:
    """Parse arguments and run both parts."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=SNAPSHOT_STORE)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--commands", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--skip-scrape", action="store_true")
    parser.add_argument("--skip-write", action="store_true")
    parser.add_argument("--skip-micro", action="store_true")
    args = parser.parse_args()
    if not args.skip_micro:
        micro_bench(2000, 5)
    if not args.skip_scrape:
        scrape_bench(args.store, args.events, args.repeat)
    if not args.skip_write:
        write_bench(args.commands, args.rounds)


if __name__ == "__main__":
    main()
