"""Command-line start-up: process wall times of ``metawsm`` commands, as agents and users run them.

Every agent signal and every read is a new ``python -m metawsm`` process, so what it costs is
mostly start-up (imports). This benchmark times whole processes, spawn to exit:

* ``python -c pass`` and ``python -c "import click"``: the floor on this machine;
* ``metawsm --version`` and ``--help``;
* reads on an existing database: ``config show``, ``forum list``, ``forum thread``,
  ``status --json`` (a SQLite database seeded in-process through the product's own direct path,
  or a copy of ``--database FILE``, e.g. one of bench/scale_data.py's stores);
* ``forum ask`` and ``forum signal`` against a running stack (a private redis-server and real
  ``metawsm worker`` processes, started with bench/pipeline.py's helpers): the CLI waits until the
  command is applied, so the process wall time is process start → applied.

    python bench/cli_start.py [--runs 20] [--database FILE.db] [--short] [--json]

It prints median, p90 and min of each (ms) against the issue's targets, and the load average (on
a shared machine the figures are noisy: compare medians taken in one sitting). Python is told to
use compiled bytecode: with PYTHONDONTWRITEBYTECODE set, metawsm's modules are compiled first
(as an installed package is), else every run would compile them again. ``--short`` (5 runs,
~1 minute) is what CI prints. Every process and temporary file it creates is removed at exit.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline import (
    NullPublisher,
    WorkerSet,
    interrupt_as_exception,
    log,
    open_command,
    retrying,
    run_direct,
)

import metawsm
from metawsm.bootstrap import build
from metawsm.runtime import Runtime
from metawsm.services.submit import make_command
from metawsm.settings import Settings, load_settings
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine
from metawsm.transport.redis_server import RedisServer

# Targets of issue 12 (process wall time, ms).
VERSION_TARGET_MS = 60.0
READ_TARGET_MS = 150.0
WRITE_TARGET_MS = 200.0
SEED_THREADS = 50
SEED_POSTS = 4
READY_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Case:
    """One command line to time, what kind it is and its target (None: for reference)."""

    name: str
    argv: list[str]
    target_ms: float | None


@dataclass(frozen=True)
class Timing:
    """Wall and CPU milliseconds of each run of one case."""

    case: Case
    wall_ms: list[float]
    cpu_ms: list[float]

    def summary(self) -> dict[str, Any]:
        """Median, p90 and min wall time, median CPU, and whether the median meets the target."""
        wall = sorted(self.wall_ms)
        p90 = wall[max(0, round(0.9 * len(wall)) - 1)]
        median = statistics.median(wall)
        target = self.case.target_ms
        return {
            "case": self.case.name,
            "runs": len(wall),
            "median_ms": round(median, 1),
            "p90_ms": round(p90, 1),
            "min_ms": round(wall[0], 1),
            "cpu_median_ms": round(statistics.median(self.cpu_ms), 1),
            "target_ms": target,
            "met": None if target is None else median <= target,
        }


def time_process(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Run ``argv`` to completion: (wall ms from spawn to exit, CPU ms of the process)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {result.returncode}: {result.stderr[-500:]}")
    cpu = (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
    return wall, cpu


def measure(case: Case, runs: int, env: dict[str, str], cwd: Path) -> Timing:
    """Time ``runs`` runs of ``case`` after one untimed warm-up run (page cache, bytecode)."""
    time_process(case.argv, env, cwd)
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time_process(case.argv, env, cwd)
        walls.append(wall)
        cpus.append(cpu)
    return Timing(case, walls, cpus)


def compile_bytecode() -> str:
    """Compile metawsm's modules when this environment would not cache them (say which)."""
    if not os.environ.get("PYTHONDONTWRITEBYTECODE"):
        return "bytecode cached by Python as usual"
    package = Path(metawsm.__file__).parent
    compileall.compile_dir(package, quiet=1)
    return f"PYTHONDONTWRITEBYTECODE is set: compiled {package} first (as an install does)"


def seed(settings: Settings, threads: int, posts: int) -> str:
    """Open ``threads`` threads with ``posts`` posts each through the direct path; a thread id."""
    c = build(settings)
    rt = Runtime(c.engine, c.settings, c.topics, NullPublisher())
    try:
        for n in range(threads):
            thread_id = f"seed-t{n}"
            retrying(run_direct, rt, open_command(thread_id, f"SEED-{n % 5}"))
            for k in range(posts):
                payload: dict[str, object] = {"thread_id": thread_id, "body": f"post {k}"}
                post = make_command("add_post", payload, actor_type="agent", actor_name="seed")
                retrying(run_direct, rt, post)
    finally:
        c.close()
    return "seed-t0"


def cli(*args: str) -> list[str]:
    """The argv of ``python -m metawsm ARGS``."""
    return [sys.executable, "-m", "metawsm", *args]


def read_cases(thread_id: str) -> list[Case]:
    """The cases that need no stack: the floor, --version, --help and reads."""
    return [
        Case("python -c pass", [sys.executable, "-c", "pass"], None),
        Case("python -c 'import click'", [sys.executable, "-c", "import click"], None),
        Case("metawsm --version", cli("--version"), VERSION_TARGET_MS),
        Case("metawsm --help", cli("--help"), VERSION_TARGET_MS),
        Case("config show", cli("config", "show"), READ_TARGET_MS),
        Case("forum list --json", cli("forum", "list", "--json"), READ_TARGET_MS),
        Case(
            "forum thread --json",
            cli("forum", "thread", "--thread-id", thread_id, "--json"),
            READ_TARGET_MS,
        ),
        Case(
            "forum search --json",
            cli("forum", "search", "--query", "post", "--json"),
            READ_TARGET_MS,
        ),
        Case("run list --json", cli("run", "list", "--json"), READ_TARGET_MS),
        Case("dlq list --json", cli("dlq", "list", "--json"), READ_TARGET_MS),
        Case("status --json", cli("status", "--json"), READ_TARGET_MS),
    ]


def write_cases(run_id: str) -> list[Case]:
    """The writes, against the running stack: each process waits until its command is applied."""
    ask = cli("forum", "ask", "--ticket", "BENCH-1", "--title", "t", "--body", "b")
    signal = cli("forum", "signal", "--run-id", run_id, "--agent-name", "bench-agent")
    signal += ["--type", "guidance_request", "--question", "which way?"]
    return [
        # Accept and publish only: the command line's own share of a write (for reference).
        Case("forum ask --no-wait", [*ask, "--no-wait"], None),
        Case("forum ask (→ applied)", [*ask, "--wait", "applied"], WRITE_TARGET_MS),
        Case("forum signal (→ applied)", signal, WRITE_TARGET_MS),
    ]


def prepare_database(args: argparse.Namespace, tmp: Path) -> tuple[str, str | None]:
    """(database URL, a thread id to show): a copy of --database, or a fresh seeded SQLite."""
    if args.database:
        copy = tmp / "copy.db"
        shutil.copy(args.database, copy)
        return f"sqlite:///{copy}", None
    url = f"sqlite:///{tmp / 'bench.db'}"
    settings = load_settings(database_url=url)
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()
    return url, seed(settings, SEED_THREADS, SEED_POSTS)


def first_thread(env: dict[str, str], cwd: Path) -> str:
    """A thread of the copied database, for ``forum thread``."""
    out = subprocess.run(
        cli("forum", "list", "--limit", "1", "--json"),
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return str(json.loads(out.stdout)["threads"][0]["thread_id"])


def create_run(env: dict[str, str], cwd: Path) -> str:
    """A running run with one agent, for ``forum signal``; its id."""
    argv = cli("run", "create", "--ticket", "BENCH-1", "--agent", "bench-agent", "--json")
    out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, check=True)
    return str(json.loads(out.stdout)["run_id"])


def run_all(args: argparse.Namespace, stack: ExitStack, tmp: Path) -> list[dict[str, Any]]:
    """Time the cases without a stack, start the stack, time the writes."""
    url, thread_id = prepare_database(args, tmp)
    redis = stack.enter_context(RedisServer(dir=tmp / "redis"))
    env = {**os.environ, "METAWSM_DATABASE_URL": url, "METAWSM_BROKER_URL": redis.url}
    thread_id = thread_id or first_thread(env, tmp)
    results = []
    for case in read_cases(thread_id):
        results.append(measure(case, args.runs, env, tmp).summary())
        log(f"{case.name}: median {results[-1]['median_ms']} ms")
    workers = WorkerSet(["commands", "events"], "solo", {"commands": 1, "events": 1})
    stack.callback(workers.stop)
    workers.start(load_settings(database_url=url, broker_url=redis.url), tmp / "workers")
    # Ready when a command goes through (first one waits for the workers to start).
    ready = cli("forum", "ask", "--ticket", "BENCH-0", "--title", "ready", "--body", "b")
    ready += ["--wait", "applied", "--timeout", str(READY_TIMEOUT_S)]
    time_process(ready, env, tmp)
    for case in write_cases(create_run(env, tmp)):
        workers.check()
        results.append(measure(case, args.runs, env, tmp).summary())
        log(f"{case.name}: median {results[-1]['median_ms']} ms")
    return results


def render(results: list[dict[str, Any]], notes: list[str]) -> str:
    """The results as a fixed-width table (ms)."""
    lines = [
        f"{'command (process wall time)':<30}{'runs':>5}{'median':>9}{'p90':>9}{'min':>9}"
        f"{'cpu med':>9}{'target':>8}  met"
    ]
    for r in results:
        target = f"{r['target_ms']:.0f}" if r["target_ms"] else "-"
        met = {None: "", True: "yes", False: "NO"}[r["met"]]
        lines.append(
            f"{r['case']:<30}{r['runs']:>5}{r['median_ms']:>9.1f}{r['p90_ms']:>9.1f}"
            f"{r['min_ms']:>9.1f}{r['cpu_median_ms']:>9.1f}{target:>8}  {met}"
        )
    return "\n".join([*lines, *notes])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="Timed runs per command.")
    parser.add_argument("--short", action="store_true", help="5 runs each (CI).")
    parser.add_argument("--database", type=Path, help="A SQLite file to read (copied first).")
    parser.add_argument("--json", action="store_true", help="One JSON object on stdout.")
    args = parser.parse_args(argv)
    if args.short:
        args.runs = 5
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.database and not args.database.is_file():
        parser.error(f"--database {args.database}: no such file")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parse_args(argv)
    load_start = os.getloadavg()[0]
    notes = [compile_bytecode()]
    with ExitStack() as stack, interrupt_as_exception():
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="metawsm-cli-")))
        results = run_all(args, stack, tmp)
    notes.append(
        f"load average (1 min) {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end,"
        f" {os.cpu_count()} CPUs; python {sys.version.split()[0]}"
    )
    table = render(results, notes)
    print(table, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps({"results": results, "notes": notes}))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: processes and temporary files removed")
        sys.exit(130)
    except RuntimeError as exc:
        log(f"failed: {exc}")
        sys.exit(1)
