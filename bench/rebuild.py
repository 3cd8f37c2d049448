"""Benchmark of ``metawsm projections rebuild``: events/s and peak RSS on a large store.

The store: a template of forum threads (posts, priority, state and assignment changes, closes) and
one run whose two agents post control signals, written by the real handlers
(``bench/projector.py``'s helpers, a publisher that does nothing), then copied (threads, events
and posts) with fresh ids until the log holds ``--events`` events (about 4.9 events per thread,
as the issue's 100k-thread store). The read models are projected by one rebuild before timing.
Then, in alternated rounds, each measurement runs the command line as its own process (peak
RSS and CPU from ``wait4``): ``rebuild --json`` with the read models already right,
``rebuild --json`` from an empty read side (views, stats, ledger, control states and search
index deleted, untimed, before it) and ``rebuild --check --json``.

    PYTHONPATH=. python bench/rebuild.py [--events 485000] [--store /tmp/rebuild-485k.db]
    PYTHONPATH=. python bench/rebuild.py --events 75000 \
        --database postgresql://postgres@127.0.0.1:5432/postgres

``--store PATH`` keeps the generated SQLite store for the next run (it is copied before every
use, so it is never written); an existing store (e.g. one of ``bench/scale_data.py``'s) is used
as it is, its copy upgraded to the code's migration head first. ``--database`` generates the
store in a scratch PostgreSQL database on that server, empties its read side in place, and
drops it at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Table, create_engine, func, insert, select

from bench.projector import NullPublisher, run, step
from metawsm.bootstrap import topics_for
from metawsm.runtime import Runtime
from metawsm.services import runs
from metawsm.settings import load_settings
from metawsm.storage import migrate, tables
from metawsm.storage.engine import build_engine
from metawsm.storage.scratch import postgres_scratch_database
from metawsm.storage.uow import unit_of_work

TEMPLATE_THREADS = 400
COPY_CHUNK = 5_000
SIGNALS = ("guidance_request", "guidance_answer", "completion", "validation")
SIGNAL_FIELDS: dict[str, dict[str, str]] = {
    "guidance_request": {"question": "q?"},
    "guidance_answer": {"answer": "a"},
    "completion": {"summary": "s"},
    "validation": {"status": "passed", "done_criteria": "d"},
}
EVENTS, THREADS, POSTS = tables.forum_events, tables.forum_threads, tables.forum_posts
# The read side of ``--empty``: every read model a rebuild refills (the search index apart).
READ_MODELS = (
    "forum_thread_views",
    "forum_thread_stats",
    "forum_projection_events",
    "run_agent_controls",
)


def build_template(rt: Runtime, rng: random.Random) -> None:
    """Forum threads of 1-12 events and a run with signalling agents, via the real handlers."""
    for n in range(TEMPLATE_THREADS):
        thread_id = f"t{n}"
        run(rt, "open_thread", "agent", thread_id=thread_id, ticket=f"TCK-{n % 40}", title="T",
            body="b", run_id="run-x" if n % 3 == 0 else None)  # fmt: skip
        for k in range(1, rng.randint(1, 8)):
            step(rt, thread_id, k)
        if n % 7 == 0:
            run(rt, "close_thread", "operator", thread_id=thread_id)
    actor = runs.SYSTEM
    run_id = runs.create_run(
        rt, tickets=["TCK-R"], agents=["alice", "bob"], mode="run", brief=None, actor=actor
    )
    for k in range(40):
        agent, kind = ("alice", "bob")[k % 2], SIGNALS[k // 2 % 4]
        fields = SIGNAL_FIELDS[kind]
        signal = {"run_id": run_id, "agent_name": agent, "control_type": kind, **fields}
        run(rt, "control_signal", "operator" if kind == "guidance_answer" else "agent",
            run_id=run_id, agent_name=agent, signal=signal)  # fmt: skip


def replicate(engine: Engine, target_events: int) -> int:
    """Copy the template's threads, events and posts with fresh ids until the log holds the
    target (the posts too: the search index is built from them)."""
    with unit_of_work(engine, readonly=True) as s:
        threads = [dict(r._mapping) for r in s.execute(select(THREADS))]
        events = [dict(r._mapping) for r in s.execute(select(EVENTS).order_by(EVENTS.c.sequence))]
        posts = [dict(r._mapping) for r in s.execute(select(POSTS))]
    copies = max(0, -(-target_events // len(events)) - 1)
    batches: dict[Table, list[dict[str, Any]]] = {THREADS: [], EVENTS: [], POSTS: []}
    with engine.begin() as conn:
        for k in range(1, copies + 1):
            batches[THREADS] += [{**t, "thread_id": f"{t['thread_id']}-{k}"} for t in threads]
            batches[EVENTS] += [_copied(e, k, len(events)) for e in events]
            batches[POSTS] += [_copied_post(p, k) for p in posts]
            if len(batches[EVENTS]) >= COPY_CHUNK or k == copies:
                for target, rows in batches.items():
                    conn.execute(insert(target), rows)
                    rows.clear()
        return int(conn.execute(select(func.count()).select_from(EVENTS)).scalar() or 0)


def _copied(event: dict[str, Any], k: int, size: int) -> dict[str, Any]:
    thread_id = event["thread_id"]
    return {
        **event,
        "sequence": event["sequence"] + k * size,
        "event_id": f"{event['event_id']}-{k}",
        "thread_id": f"{thread_id}-{k}" if thread_id else None,
    }


def _copied_post(post: dict[str, Any], k: int) -> dict[str, Any]:
    return {
        **post,
        "post_id": f"{post['post_id']}-{k}",
        "event_id": f"{post['event_id']}-{k}",
        "thread_id": f"{post['thread_id']}-{k}",
    }


def generate(url: str, target_events: int) -> None:
    """Write a migrated store of about ``target_events`` events in the database at ``url``."""
    settings = load_settings(database_url=url, broker_url="redis://127.0.0.1:1/0")
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)
        rt = Runtime(engine, settings, topics_for(settings), NullPublisher())
        build_template(rt, random.Random(12))
        total = replicate(engine, target_events)
        print(f"generated {total} events", file=sys.stderr)
    finally:
        engine.dispose()


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the code's migration head (nothing when it is there)."""
    settings = load_settings(database_url=url, broker_url="redis://127.0.0.1:1/0")
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


def timed_cli(url: str, *args: str) -> dict[str, Any]:
    """Run ``metawsm projections rebuild ARGS --json``: its report, wall and CPU s, peak RSS."""
    env = {**os.environ, "METAWSM_DATABASE_URL": url}
    cmd = [sys.executable, "-m", "metawsm", "projections", "rebuild", *args, "--json"]
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        # cwd: not the checkout, whose metawsm ``-m`` would import before PYTHONPATH's.
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, cwd=tempfile.gettempdir())
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        proc.returncode = code = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        if code not in (0, 1):
            raise SystemExit(f"{' '.join(cmd)} failed ({code}): {err.read().decode()[-2000:]}")
        report = json.loads(out.read())
    cpu = usage.ru_utime + usage.ru_stime
    return {"report": report, "wall_s": wall, "cpu_s": cpu, "rss_mib": usage.ru_maxrss / 1024}


def empty_read_side(url: str) -> None:
    """Delete every read model a rebuild refills, the search index too (a store never
    projected, or one whose read side was lost)."""
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            for name in (*READ_MODELS, "forum_search"):
                conn.exec_driver_sql(f"DELETE FROM {name}")
    finally:
        engine.dispose()


# What each measurement runs: the command's arguments, and whether the read side is emptied first.
CASES = {"rebuild": ((), False), "rebuild-empty": ((), True), "check": (("--check",), False)}


def measure(store: Path, repeat: int) -> dict[str, Any]:
    """Rebuild once to project, then time ``repeat`` rounds of a rebuild (read models already
    right), a rebuild from an empty read side and a check, on copies of the SQLite ``store``."""
    with tempfile.TemporaryDirectory() as tmp:
        db, empty = Path(tmp) / "rebuild.db", Path(tmp) / "empty.db"
        shutil.copyfile(store, db)
        url = f"sqlite:///{db}"
        upgrade(url)  # a store written before the code's migration head
        timed_cli(url)  # the read models exist and equal the log from here on
        shutil.copyfile(db, empty)
        empty_read_side(f"sqlite:///{empty}")

        def empty_copy() -> None:
            shutil.copyfile(empty, db)

        return _rounds(url, repeat, empty_copy)


def measure_postgres(server_url: str, events: int, repeat: int) -> dict[str, Any]:
    """The same on a scratch PostgreSQL database (generated, emptied in place, dropped after)."""
    with postgres_scratch_database(server_url, "metawsm_rebuild_bench") as url:
        generate(url, events)
        timed_cli(url)
        return _rounds(url, repeat, lambda: empty_read_side(url))


def _rounds(url: str, repeat: int, empty: Callable[[], None]) -> dict[str, Any]:
    runs_: dict[str, list[dict[str, Any]]] = {label: [] for label in CASES}
    for _ in range(repeat):  # alternated: the machine's load weighs on each case alike
        for label, (args, emptied) in CASES.items():
            if emptied:
                empty()  # untimed; the next case starts from this one's result
            runs_[label].append(timed_cli(url, *args))
    return {label: _summary(done) for label, done in runs_.items()}


def _summary(runs_: list[dict[str, Any]]) -> dict[str, Any]:
    events = runs_[0]["report"]["events"]
    rates = [events / r["report"]["seconds"] for r in runs_]
    return {
        "events": events,
        "differences": sorted({len(r["report"]["differences"]) for r in runs_}),
        "events_per_s_best": round(max(rates)),
        "events_per_s_median": round(statistics.median(rates)),
        "seconds_best": min(r["report"]["seconds"] for r in runs_),
        "process_wall_s_best": round(min(r["wall_s"] for r in runs_), 3),
        "process_cpu_s_best": round(min(r["cpu_s"] for r in runs_), 3),
        "peak_rss_mib_max": round(max(r["rss_mib"] for r in runs_), 1),
        "load_average": round(os.getloadavg()[0], 2),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=485_000, help="events in a generated store")
    parser.add_argument("--store", type=Path, help="keep (or reuse) the store at this path")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of each command")
    parser.add_argument(
        "--database", help="a PostgreSQL server URL: measure on a scratch database there instead"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Generate (or reuse) the store, measure, print."""
    args = parse_args(argv)
    if args.database:
        results = measure_postgres(args.database, args.events, args.repeat)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            store = args.store or Path(tmp) / "store.db"
            if not store.exists():
                generate(f"sqlite:///{store}", args.events)
            results = measure(store, args.repeat)
    if args.json:
        print(json.dumps(results))
        return 0
    for label, r in results.items():
        print(
            f"{label:13} {r['events']} events: best {r['events_per_s_best']:>7} events/s"
            f" ({r['seconds_best']:.2f} s), median {r['events_per_s_median']:>7} events/s;"
            f" process {r['process_wall_s_best']:.2f} s wall, {r['process_cpu_s_best']:.2f} s"
            f" CPU, peak RSS {r['peak_rss_mib_max']} MiB; differences {r['differences']};"
            f" load {r['load_average']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
