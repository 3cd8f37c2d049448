"""Worker capacity: how fast the workers drain a backlog when nothing else competes for the CPU.

Starts a private redis-server and a fresh SQLite database, opens the pool of threads of the
pipeline benchmark's workload, accepts and publishes ``--commands`` commands of the same mix with
no worker running, then starts REAL subprocess workers and times the drain: from the moment the
first commands are applied until every command is final and every event projected. Prints
commands/s and the workers' CPU per command, per process (pool parents and children).

    python bench/capacity.py [--commands 4000] [--commands-concurrency 1]
        [--events-concurrency 1] [--roles split|all] [--pool solo|prefork]

``bench/pipeline.py`` measures the pipeline end to end with submitters competing for the same
cores; this isolates the workers (docs/performance.md).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

from pipeline import (
    NullPublisher,
    Plan,
    WorkerSet,
    in_flight,
    next_command,
    open_command,
    process_cpu_s,
    run_direct,
)
from sqlalchemy import Engine

from metawsm.bootstrap import build
from metawsm.runtime import Runtime
from metawsm.services.submit import submit
from metawsm.settings import load_settings
from metawsm.storage import migrate
from metawsm.transport.redis_server import RedisServer

# The first commands applied mark the start: worker start-up is not part of the capacity.
WARM_UP_COMMANDS = 50
DEADLINE_S = 600.0


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--commands", type=int, default=4000)
    p.add_argument("--commands-concurrency", type=int, default=1)
    p.add_argument("--events-concurrency", type=int, default=1)
    p.add_argument("--roles", choices=["split", "all"], default="split")
    p.add_argument("--pool", choices=["solo", "prefork"], default="solo")
    return p.parse_args()


def group_cpu(pgids: set[int]) -> dict[str, float]:
    """CPU seconds of every live process in ``pgids``, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):
                pgid, cpu = process_cpu_s(entry.name)
                if pgid in pgids:
                    found[entry.name] = cpu
    return found


def main() -> int:
    """Fill the queues, start the workers, time the drain; print the numbers."""
    args = parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="metawsm-capacity-") as tmp,
        RedisServer(dir=Path(tmp) / "redis") as redis,
    ):
        settings = load_settings(database_url=f"sqlite:///{tmp}/db.sqlite", broker_url=redis.url)
        c = build(settings)
        migrate.upgrade(c.engine)
        plan = Plan("cap", 50, 4)
        direct = Runtime(c.engine, c.settings, c.topics, NullPublisher())
        for n in range(plan.pool_size):
            run_direct(direct, open_command(plan.pool_thread(n), plan.ticket(n % plan.tickets)))
        rng = random.Random(1)
        for n in range(args.commands):
            submit(c.runtime, next_command(rng, plan, 0, n))
        roles = ["commands", "events"] if args.roles == "split" else ["all"]
        concurrency = {"commands": args.commands_concurrency, "all": args.commands_concurrency}
        concurrency["events"] = args.events_concurrency
        workers = WorkerSet(roles, args.pool, concurrency)
        workers.start(settings, Path(tmp))
        try:
            result = measure(c.engine, workers, args.commands)
        finally:
            workers.stop()
            c.close()
    print(result)
    return 0


def measure(engine: Engine, workers: WorkerSet, total: int) -> str:
    """Wait for the warm-up, then time the drain of the rest; a report line per process."""
    deadline = time.monotonic() + DEADLINE_S
    while in_flight(engine)[0] > total - WARM_UP_COMMANDS:
        workers.check()
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not start applying commands")
        time.sleep(0.01)  # polling the database for progress, with a deadline
    pgids = {p.pid for p in workers.procs}
    left, started, before = in_flight(engine)[0], time.monotonic(), group_cpu(pgids)
    while in_flight(engine) != (0, 0):
        workers.check()
        if time.monotonic() > deadline:
            raise RuntimeError("the workers did not drain the backlog")
        time.sleep(0.05)
    wall, after = time.monotonic() - started, group_cpu(pgids)
    lines = [f"{left} commands drained in {wall:.1f} s: {left / wall:.0f} commands/s"]
    total_cpu = sum(after[p] - before.get(p, 0.0) for p in after)
    lines.append(f"workers' CPU: {total_cpu / left * 1000:.2f} ms per command")
    for pid in sorted(after, key=int):
        ms = (after[pid] - before.get(pid, 0.0)) / left * 1000
        with suppress(OSError):
            parent = Path(f"/proc/{pid}/stat").read_text().split()[3]
            lines.append(f"  pid {pid} (parent {parent}): {ms:.2f} ms per command")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
