"""The typed snapshot at scale: statements and milliseconds per snapshot, the SLA pass, loop CPU.

On a store written by the product (bench/snapshot_data.py, cached under ``--cache``; or any
existing store given with ``--store``, e.g. one of bench/scale.py's), copied to a scratch file
and upgraded to head first, it prints:

1. ``snapshot.build`` of every active run and of one run: SQL statements, best and median ms;
2. the beat SLA pass (``escalation.raise_due`` with nothing left to raise): statements and ms;
3. wall and CPU ms of ``metawsm status --all --json``, ``watch --all --once`` and ``operator
   --once [--dry-run]`` as processes (``--processes`` calls of each);
4. the CPU share of one core used by ``metawsm watch --all --json`` and ``metawsm operator
   --dry-run`` processes over ``--loop-s`` seconds (from /proc/PID/stat, after a warm-up).

    python bench/snapshot.py [--runs 1000] [--extra-threads 0] [--store PATH] [--loop-s 30]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Engine

from bench.snapshot_data import NullPublisher, bench_settings, cached
from bench.statements import recorded
from metawsm.bootstrap import topics_for
from metawsm.runtime import Runtime
from metawsm.services import escalation, snapshot
from metawsm.services.operator import last_fingerprints, operate_once
from metawsm.storage import migrate
from metawsm.storage.engine import READONLY, build_engine
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work

CLK_TCK = os.sysconf("SC_CLK_TCK")


def sla_candidates(rt: Runtime, now: datetime) -> object:
    """The SLA pass's candidate search alone (what every beat pass runs)."""
    with unit_of_work(rt.engine, readonly=True) as session:
        return escalation.pending_candidates(session, rt.settings, now)


def timed(action: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """Best and median wall ms, and best CPU ms, of ``repeat`` calls (CPU: this process alone,
    what matters on a machine other work shares)."""
    times, cpu = [], []
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), time.process_time()
        action()
        times.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - cpu_started) * 1000)
    return min(times), statistics.median(times), min(cpu)


def statements(engine: Engine, action: Callable[[], object]) -> int:
    """How many statements one call of ``action`` issues."""
    with recorded(engine) as seen:
        action()
    return len(seen)


def plans(engine: Engine, name: str, action: Callable[[], object]) -> None:
    """Print SQLite's plan of every statement ``action`` issues, and flag full scans."""
    with recorded(engine) as seen:
        action()
    print(f"\n-- plans: {name} ({len(seen)} statements)")
    with engine.execution_options(**{READONLY: True}).connect() as conn:
        for sql, params in seen:
            if not sql.lstrip().upper().startswith("SELECT"):
                continue
            rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params).all()
            print(" ".join(sql.split())[:160])
            for row in rows:
                scan = " <-- full scan" if re.match(r"SCAN (?!anon_)", str(row[3])) else ""
                print(f"    {row[3]}{scan}")


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def loop_cpu(url: str, args: list[str], warmup_s: float, window_s: float) -> float:
    """Percent of one core a ``metawsm`` loop uses over ``window_s`` after ``warmup_s``."""
    env = {**os.environ, "METAWSM_DATABASE_URL": url, "METAWSM_BROKER_URL": "redis://127.0.0.1:1/0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "metawsm", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(warmup_s)  # start-up and the first full pass are not the steady state
        before, started = cpu_ticks(proc.pid), time.monotonic()
        time.sleep(window_s)
        used = (cpu_ticks(proc.pid) - before) / CLK_TCK
        return 100 * used / (time.monotonic() - started)
    finally:
        proc.terminate()
        proc.wait(10)


PROCESSES = (
    ["status", "--all", "--json"],
    ["watch", "--all", "--once"],
    ["operator", "--once", "--dry-run"],
    ["operator", "--once"],
)


def process_times(url: str, runs: int) -> None:
    """Wall and CPU ms (median and best of ``runs``) of each read of :data:`PROCESSES` as a
    ``metawsm`` process (stdout to /dev/null), after one unmeasured call of each; ``operator
    --once`` records its decisions on that first call, so the measured ones only read."""
    env = {**os.environ, "METAWSM_DATABASE_URL": url, "METAWSM_BROKER_URL": "redis://127.0.0.1:1/0"}
    command = [sys.executable, "-m", "metawsm"]
    for args in PROCESSES:
        subprocess.run([*command, *args], env=env, stdout=subprocess.DEVNULL, check=True)
    for args in PROCESSES:
        walls, cpus = [], []
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            started = time.perf_counter()
            subprocess.run([*command, *args], env=env, stdout=subprocess.DEVNULL, check=True)
            walls.append((time.perf_counter() - started) * 1000)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpus.append(1000 * (after.ru_utime + after.ru_stime - before.ru_utime
                                - before.ru_stime))  # fmt: skip
        print(f"{' '.join(args):28s} process wall median {statistics.median(walls):7.1f} best"
              f" {min(walls):7.1f} ms  CPU median {statistics.median(cpus):7.1f} best"
              f" {min(cpus):7.1f} ms")  # fmt: skip


def report(engine: Engine, rt: Runtime, repeat: int, show_plans: bool) -> None:
    """Print statements and timings of the snapshot and the SLA pass."""
    now = utcnow() + timedelta(hours=2)  # past every SLA tier: candidates and escalations show
    settings = rt.settings
    every = snapshot.build(engine, settings, now=now)
    one_id = every.runs[0].run_id
    print(f"active runs: {len(every.runs)}")
    cases: list[tuple[str, Callable[[], object]]] = [
        ("snapshot, all active runs", lambda: snapshot.build(engine, settings, now=now)),
        ("snapshot, one run", lambda: snapshot.build(engine, settings, run_id=one_id, now=now)),
    ]
    for name, action in cases:
        count = statements(engine, action)
        best, median, cpu = timed(action, repeat)
        print(f"{name:28s} {count:6d} statements  best {best:9.1f} ms  median {median:9.1f} ms"
              f"  CPU {cpu:8.1f} ms")  # fmt: skip
    if show_plans:
        plans(engine, "snapshot, all active runs", cases[0][1])
        plans(engine, "operator pass (dry run)", lambda: operate_once(rt, run_id=None,
              mode="assist", dry_run=True, stale_after_s=3600, now=now))  # fmt: skip
        plans(engine, "operator's last decisions", lambda: last_fingerprints(engine, [one_id]))
        plans(engine, "SLA candidates", lambda: sla_candidates(rt, now))
    escalation.raise_due(rt, now)  # raise what is due, so the timed passes find nothing new
    count = statements(engine, lambda: escalation.raise_due(rt, now))
    best, median, cpu = timed(lambda: escalation.raise_due(rt, now), repeat)
    print(f"{'SLA pass (raise_due)':28s} {count:6d} statements  best {best:9.1f} ms"
          f"  median {median:9.1f} ms  CPU {cpu:8.1f} ms")  # fmt: skip


def measure(url: str, repeat: int, show_plans: bool) -> None:
    """Upgrade the database at ``url`` to head and print the report for it."""
    settings = bench_settings(url)
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)
        print(f"store: {engine.url.render_as_string()} (schema {migrate.current_revision(engine)})")
        rt = Runtime(engine, settings, topics_for(settings), NullPublisher())
        report(engine, rt, repeat, show_plans and engine.dialect.name == "sqlite")
    finally:
        engine.dispose()


def main() -> None:
    """Build or reuse the store, copy and upgrade it, measure, print."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--extra-threads", type=int, default=0)
    p.add_argument("--store", type=Path, help="measure this existing store (copied first)")
    p.add_argument(
        "--database",
        help="measure this PostgreSQL database in place (a scratch copy: it is upgraded to head"
        " and escalations are raised); no loop CPU",
    )
    p.add_argument("--cache", type=Path, default=Path("/work/snapshot-bench-data"))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--loop-s", type=float, default=30.0, help="0 skips the loop CPU measure")
    p.add_argument("--warmup-s", type=float, default=20.0)
    p.add_argument("--plans", action="store_true", help="print each statement's query plan")
    p.add_argument(
        "--processes",
        type=int,
        default=5,
        help="time status, watch --once and operator --once as processes, this many times each"
        " (0 skips)",
    )
    a = p.parse_args()
    if a.database:
        measure(a.database, a.repeat, a.plans)
        return
    source = a.store or cached(a.cache, a.runs, a.extra_threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.db"
        shutil.copy(source, path)
        url = f"sqlite:///{path}"
        print(f"copied from {source}")
        measure(url, a.repeat, a.plans)
        if a.processes > 0:
            process_times(url, a.processes)
        if a.loop_s > 0:
            for args in (["watch", "--all", "--json"], ["operator", "--dry-run"]):
                share = loop_cpu(url, args, a.warmup_s, a.loop_s)
                print(f"{' '.join(args):28s} {share:5.1f} % of one core over {a.loop_s:.0f} s")


if __name__ == "__main__":
    main()
