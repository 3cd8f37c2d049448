"""End-to-end benchmark of the command pipeline: submit → Redis → worker → event → projector.

Starts a private redis-server and a fresh migrated database (a SQLite file in a temporary
directory, or a scratch database created on the PostgreSQL server given by ``--database``), starts
REAL subprocess workers (``python -m metawsm worker --role ...``), and drives a mixed forum
workload from several submitter processes, each with its own engine and publisher built by the
composition root. Every timestamp comes from the database rows (aware UTC datetimes):

* submit→applied     ``forum_commands.accepted_at`` → ``finished_at``
* applied→projected  ``finished_at`` → ``forum_projection_events.applied_at`` of the command's
  last event (``forum_events.command_id`` links them)
* submit→projected   the sum (commands that wrote no event end at ``finished_at``)
* cmd/s              commands / (first ``accepted_at`` → last projection)

Runs, in order: the DIRECT path (the real ``submit``, ``apply_command`` with a publisher that does
nothing, and ``project`` for each written event, in-process: no broker), the broker path at full
speed, then the broker path at half the measured top rate (rate-limited submitters). Before the
numbers are taken every command must be final and every event projected (with a deadline).

    python bench/pipeline.py [--duration 30] [--submitters 4] [--rate R]
        [--workers-concurrency N] [--events-concurrency N] [--database sqlite|URL] [--json]

The table goes to stdout (to stderr with ``--json``, when stdout gets one JSON object). Every
process, temporary directory and scratch database it creates is removed at exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, func, select
from sqlalchemy.engine import make_url

from metawsm.bootstrap import build, message_bus
from metawsm.errors import Transient
from metawsm.messages.commands import AnyCommand
from metawsm.runtime import Runtime
from metawsm.services.delivery import apply_command
from metawsm.services.eventlog import row_to_event
from metawsm.services.projections import PROJECTION, project
from metawsm.services.submit import make_command, submit
from metawsm.settings import Settings, load_settings
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine, normalize_url
from metawsm.storage.models import ForumCommand, ForumEvent, ForumProjectionEvent
from metawsm.storage.scratch import postgres_scratch_database
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work
from metawsm.transport.redis_server import RedisServer

# Weights of each command type in the mixed workload. Only state moves valid from every open
# state are used (waiting_* is reachable from new, triaged, answered and each other), and every
# command but open_thread targets a thread opened before the window, so nothing is rejected or
# retried whatever order the broker delivers in.
MIX: tuple[tuple[str, int], ...] = (
    ("open_thread", 10),
    ("add_post", 35),
    ("answer_thread", 5),
    ("change_state", 15),
    ("set_priority", 15),
    ("assign_thread", 20),
)
STATES = ("waiting_operator", "waiting_human")
PRIORITIES = ("low", "normal", "high", "urgent")
ASSIGNEES = (("operator", "op-1"), ("operator", "op-2"), ("agent", "alice"), ("human", "bob"))
SETTLE_TIMEOUT_S = 300.0
SUBMITTER_START_S = 2.0  # submitters import and connect before the window opens
WORKER_STOP_TIMEOUT_S = 15.0
TARGETS = {"cps": 250.0, "ratio": 0.5, "half_p50_ms": 15.0, "half_p99_ms": 100.0}
PCTS = ("p50", "p90", "p99", "max")


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Plan:
    """One run's workload: a name prefix (runs share no thread or ticket) and its sizes."""

    name: str
    tickets: int
    threads_per_ticket: int

    def ticket(self, k: int) -> str:
        """Ticket number ``k`` of this run."""
        return f"{self.name}-TCK-{k}"

    def pool_thread(self, n: int) -> str:
        """Pre-opened thread number ``n`` (the threads every non-open command acts on)."""
        return f"{self.name}-t{n}"

    @property
    def pool_size(self) -> int:
        """Number of threads opened before the measured window."""
        return self.tickets * self.threads_per_ticket


def open_command(thread_id: str, ticket: str) -> AnyCommand:
    """An ``open_thread`` command for ``thread_id`` on ``ticket``."""
    payload: dict[str, object] = {"thread_id": thread_id, "ticket": ticket, "title": "bench"}
    payload["body"] = "opening"
    return make_command("open_thread", payload, actor_type="agent", actor_name="bench-agent")


def next_command(rng: random.Random, plan: Plan, submitter: int, n: int) -> AnyCommand:
    """The ``n``-th command of ``submitter``: a weighted draw from :data:`MIX`."""
    kind = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
    if kind == "open_thread":
        thread = f"{plan.name}-s{submitter}-new{n}"
        return open_command(thread, plan.ticket(rng.randrange(plan.tickets)))
    payload: dict[str, object] = {"thread_id": plan.pool_thread(rng.randrange(plan.pool_size))}
    if kind in ("add_post", "answer_thread"):
        payload["body"] = f"post {n} from submitter {submitter}"
    elif kind == "change_state":
        payload["to_state"] = rng.choice(STATES)
    elif kind == "set_priority":
        payload["priority"] = rng.choice(PRIORITIES)
    else:
        assignee_type, assignee_name = rng.choice(ASSIGNEES)
        payload |= {"assignee_type": assignee_type, "assignee_name": assignee_name}
    actor = rng.choice(("agent", "operator"))
    return make_command(kind, payload, actor_type=actor, actor_name=f"bench-{actor}")


BUS = message_bus()


class NullPublisher:
    """The direct path's publisher: no broker is involved, so publishing does nothing."""

    def publish(
        self, topic: str, message_id: str, payload: dict[str, Any], redelivery: bool = False
    ) -> None:
        """Do nothing."""


def run_direct(rt: Runtime, command: AnyCommand) -> None:
    """Accept, apply and project one command in-process with the real service functions."""
    submit(rt, command)  # its publisher does nothing
    apply_command(rt, BUS, command, count_delivery=True)  # as a worker on a first delivery
    with unit_of_work(rt.engine, readonly=True) as session:
        rows = session.execute(
            select(ForumEvent).where(ForumEvent.command_id == command.command_id)
        ).scalars()
        events = [row_to_event(r) for r in rows]
    for event in events:
        project(rt.engine, event, f"{event.event_id}:projector")


def retrying(action: Callable[..., Any], *args: Any) -> None:
    """Run ``action(*args)``, retrying transient errors (SQLite busy) a few times."""
    for attempt in range(10):
        try:
            action(*args)
            return
        except Transient:
            if attempt == 9:
                raise
            time.sleep(0.01 * (attempt + 1))


# ------------------------------------------------------------------------------- submitters


@dataclass(frozen=True)
class SubmitterJob:
    """What one submitter process does: which path, which commands, for how long, how fast."""

    index: int
    mode: str  # broker | direct
    database_url: str
    broker_url: str
    plan: Plan
    duration_s: float
    rate: float | None  # commands/s of this submitter; None = as fast as it can


def submitter_main(job: SubmitterJob, go: MpEvent, results: Any) -> None:
    """Submitter process: its own container, wait for the start signal, submit until the end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    c = build(load_settings(database_url=job.database_url, broker_url=job.broker_url))
    direct = Runtime(c.engine, c.settings, c.topics, NullPublisher())
    rng = random.Random(job.index)
    sent = errors = 0
    cpu_s = 0.0
    try:
        go.wait()
        cpu_start, start = time.process_time(), time.monotonic()
        while (now := time.monotonic()) < start + job.duration_s:
            if job.rate and (due := start + sent / job.rate) > now:
                time.sleep(due - now)  # open loop: the schedule does not wait for the pipeline
            command = next_command(rng, job.plan, job.index, sent)
            try:
                if job.mode == "direct":
                    retrying(run_direct, direct, command)
                else:
                    submit(c.runtime, command)
            except Exception as exc:  # counted and reported; the run goes on
                errors += 1
                print(f"submitter {job.index}: {exc}", file=sys.stderr)
            sent += 1
        cpu_s = time.process_time() - cpu_start
    finally:
        results.put((sent, errors, cpu_s))
        c.close()


# ---------------------------------------------------------------------------- processes


def process_cpu_s(pid: int | str) -> tuple[int, float]:
    """(process group, CPU seconds: user + system, own and reaped children) of ``pid``."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()  # the name in parentheses may hold spaces
    return int(fields[2]), sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def group_cpu_s(pgids: set[int]) -> float:
    """CPU seconds used so far by every live process in the process groups ``pgids``."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with suppress(OSError):  # exited meanwhile
                pgid, cpu = process_cpu_s(entry.name)
                total += cpu if pgid in pgids else 0.0
    return total


@dataclass
class WorkerSet:
    """Subprocess workers, each in its own session (process group), so all its children stop."""

    roles: list[str]
    pool: str
    concurrency: dict[str, int]  # pool children per role
    loglevel: str = "WARNING"
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, settings: Settings, logdir: Path) -> None:
        """Start one ``python -m metawsm worker`` per role on ``settings``."""
        env = dict(os.environ)
        env["METAWSM_DATABASE_URL"] = settings.database_url
        env["METAWSM_BROKER_URL"] = settings.broker_url
        logdir.mkdir(parents=True, exist_ok=True)
        for role in self.roles:
            cmd = [sys.executable, "-m", "metawsm", "worker", "--role", role, "--pool", self.pool]
            cmd += ["--concurrency", str(self.concurrency[role]), "--loglevel", self.loglevel]
            with (logdir / f"worker-{role}.log").open("ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        cmd, env=env, cwd=logdir, stdout=out, stderr=out, start_new_session=True
                    )
                )
        log(f"workers: {self.roles} pool={self.pool} concurrency={self.concurrency}")

    def check(self) -> None:
        """Fail when a worker has exited (its log says why)."""
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {proc.args!r} exited with {proc.returncode}")

    def cpu_s(self) -> float:
        """CPU seconds used so far by the workers and their pool processes."""
        return group_cpu_s({p.pid for p in self.procs})

    def stop(self) -> None:
        """SIGTERM each worker's process group, then SIGKILL whatever is left after a timeout."""
        for proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
        for proc in self.procs:
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _signal_group(proc, signal.SIGKILL)  # pool children that outlived their parent
            proc.wait()
        self.procs.clear()


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)  # the group start_new_session made for this worker


@contextmanager
def scratch_database(database: str, tmp: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file in ``tmp``, or a new database on a PostgreSQL server.

    The PostgreSQL database is created next to the one ``database`` names and dropped at exit.
    """
    if database == "sqlite":
        yield f"sqlite:///{tmp / 'bench.db'}"
        return
    url = make_url(normalize_url(database))
    if url.get_backend_name() != "postgresql":
        raise SystemExit("--database must be 'sqlite' or a postgresql:// URL")
    with postgres_scratch_database(database, "metawsm_bench") as scratch:
        yield scratch


@contextmanager
def interrupt_as_exception() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the same cleanup runs as for Ctrl-C."""

    def handler(_sig: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


# ------------------------------------------------------------------------------------- runs


@dataclass
class Bench:
    """What every run shares: options, settings, the engine, the workers and Redis."""

    args: argparse.Namespace
    settings: Settings
    engine: Engine
    workers: WorkerSet
    redis_pid: int

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds used so far by the workers and by redis-server."""
        redis = 0.0
        with suppress(OSError):
            redis = process_cpu_s(self.redis_pid)[1]
        return {"workers": self.workers.cpu_s(), "redis": redis}

    def prepare(self, plan: Plan, mode: str) -> None:
        """Open the plan's pool of threads; wait until they are applied and projected."""
        c = build(self.settings)
        rt = Runtime(c.engine, c.settings, c.topics, NullPublisher())
        try:
            for n in range(plan.pool_size):
                command = open_command(plan.pool_thread(n), plan.ticket(n % plan.tickets))
                if mode == "direct":
                    retrying(run_direct, rt, command)
                else:
                    submit(c.runtime, command)
        finally:
            c.close()
        self.wait_settled(f"{plan.name}: warm-up of {plan.pool_size} threads")

    def wait_settled(self, what: str) -> None:
        """Wait until no command is in flight and every event is projected (with a deadline)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while (pending := in_flight(self.engine)) != (0, 0):
            self.workers.check()
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{what}: {pending[0]} commands still accepted and {pending[1]} events not"
                    f" projected after {SETTLE_TIMEOUT_S:g} s"
                )
            time.sleep(0.1)

    def run(self, label: str, mode: str, rate: float | None) -> dict[str, Any]:
        """Warm up, run the submitters for ``--duration`` seconds, settle, measure."""
        args = self.args
        plan = Plan(label, args.tickets, args.threads_per_ticket)
        self.prepare(plan, mode)
        ctx = mp.get_context("spawn")
        go, results = ctx.Event(), ctx.Queue()
        each = rate / args.submitters if rate else None
        urls = (self.settings.database_url, self.settings.broker_url)
        jobs = [
            SubmitterJob(i, mode, *urls, plan, args.duration, each) for i in range(args.submitters)
        ]
        procs = [ctx.Process(target=submitter_main, args=(j, go, results)) for j in jobs]
        try:
            for p in procs:
                p.start()
            time.sleep(SUBMITTER_START_S)
            load, cpu_before, since = os.getloadavg()[0], self.cpu_s(), utcnow()
            speed = f"{rate:.0f} commands/s" if rate else "full speed"
            log(f"{label}: {mode} path, {args.submitters} submitters at {speed}, load {load:.2f}")
            go.set()
            counts = [results.get(timeout=args.duration + 120) for _ in procs]
            until = utcnow()
            self.wait_settled(label)
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
                p.join()
        result = {
            "run": label,
            "mode": mode,
            "offered_rate": rate,
            **measure(self.engine, since, until),
        }
        cpu = {"submitters": sum(c[2] for c in counts)}
        if mode == "broker":
            cpu |= {k: v - cpu_before[k] for k, v in self.cpu_s().items()}
        result |= cpu_report(cpu, result["commands"])
        result["submit_errors"] = sum(c[1] for c in counts)
        result["loadavg_1m"] = {"start": round(load, 2), "end": round(os.getloadavg()[0], 2)}
        log(f"{label}: {result['commands']} commands, {result['cps']:.1f} commands/s end to end")
        return result


def cpu_report(cpu: dict[str, float], commands: int) -> dict[str, Any]:
    """CPU seconds per process kind, ms per command, and the rate that CPU cost allows."""
    per_command = sum(cpu.values()) * 1000 / commands
    return {
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_ms_per_command": round(per_command, 2),
        # What the measured CPU cost allows if every core of the machine did nothing else.
        "cpu_bound_cps": round((os.cpu_count() or 1) * 1000 / per_command, 1),
    }


def in_flight(engine: Engine) -> tuple[int, int]:
    """(commands still accepted, events without a projection ledger row)."""
    ledger = and_(
        ForumProjectionEvent.event_id == ForumEvent.event_id,
        ForumProjectionEvent.projection == PROJECTION,
    )
    with unit_of_work(engine, readonly=True) as s:
        accepted = s.execute(
            select(func.count()).where(ForumCommand.status == "accepted")
        ).scalar_one()
        unprojected = s.execute(
            select(func.count())
            .select_from(ForumEvent)
            .outerjoin(ForumProjectionEvent, ledger)
            .where(ForumProjectionEvent.event_id.is_(None))
        ).scalar_one()
    return int(accepted), int(unprojected)


# -------------------------------------------------------------------------------- measuring


def measure(engine: Engine, since: datetime, until: datetime) -> dict[str, Any]:
    """Throughput and latency percentiles of the commands accepted in [since, until)."""
    ledger = and_(
        ForumProjectionEvent.event_id == ForumEvent.event_id,
        ForumProjectionEvent.projection == PROJECTION,
    )
    last = (
        select(
            ForumEvent.command_id,
            func.max(ForumProjectionEvent.applied_at).label("projected_at"),
            func.count().label("events"),
        )
        .join(ForumProjectionEvent, ledger)
        .where(ForumEvent.recorded_at >= since)
        .group_by(ForumEvent.command_id)
        .subquery()
    )
    query = (
        select(
            ForumCommand.status,
            ForumCommand.accepted_at,
            ForumCommand.finished_at,
            last.c.projected_at,
            last.c.events,
        )
        .outerjoin(last, last.c.command_id == ForumCommand.command_id)
        .where(ForumCommand.accepted_at >= since, ForumCommand.accepted_at < until)
    )
    with unit_of_work(engine, readonly=True) as s:
        rows = s.execute(query).all()
    return summarise(rows)


def summarise(rows: Sequence[Any]) -> dict[str, Any]:
    """Percentiles (ms) of each stage and the end-to-end rate, from (status, times...) rows."""
    finished = [r for r in rows if r.finished_at is not None]
    if not finished:
        raise RuntimeError("no command finished in the measured window")
    ends = [r.projected_at or r.finished_at for r in finished]
    elapsed_s = (max(ends) - min(r.accepted_at for r in rows)).total_seconds()
    with_events = [r for r in finished if r.projected_at is not None]
    return {
        "commands": len(rows),
        "statuses": dict(Counter(r.status for r in rows)),
        "events": sum(r.events or 0 for r in rows),
        "commands_without_events": len(finished) - len(with_events),
        "elapsed_s": round(elapsed_s, 3),
        "cps": round(len(rows) / elapsed_s, 1) if elapsed_s > 0 else 0.0,
        "submit_to_applied_ms": percentiles([_ms(r.finished_at - r.accepted_at) for r in finished]),
        "applied_to_projected_ms": percentiles(
            [_ms(r.projected_at - r.finished_at) for r in with_events]
        ),
        "submit_to_projected_ms": percentiles(
            [_ms(end - r.accepted_at) for r, end in zip(finished, ends, strict=True)]
        ),
    }


def _ms(delta: Any) -> float:
    return float(delta.total_seconds() * 1000.0)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 (nearest rank) and max of ``values`` in ms, rounded to 0.1 ms."""
    if not values:
        return dict.fromkeys(PCTS, 0.0)
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[max(0, math.ceil(len(ordered) * q) - 1)]

    stats = {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": ordered[-1]}
    return {k: round(v, 1) for k, v in stats.items()}


# ---------------------------------------------------------------------------------- report


def render_table(results: list[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The results as a fixed-width text table (latencies in ms: p50/p90/p99/max)."""
    lines = [
        f"{'run':<7}{'path':<7}{'offered':>9}{'cmds':>7}{'cmd/s':>7}{'cpu ms':>8}"
        f"  {'submit→applied':<24}{'applied→projected':<24}{'submit→projected':<24}",
        "-" * 115,
    ]
    for r in results:
        offered = f"{r['offered_rate']:.0f}/s" if r["offered_rate"] else "max"
        stages = ("submit_to_applied_ms", "applied_to_projected_ms", "submit_to_projected_ms")
        cols = "".join(f"{_quad(r[s]):<24}" for s in stages)
        lines.append(
            f"{r['run']:<7}{r['mode']:<7}{offered:>9}{r['commands']:>7}{r['cps']:>7.1f}"
            f"{r['cpu_ms_per_command']:>8.1f}  {cols}"
        )
    lines.append("latencies in ms as p50/p90/p99/max; cmd/s = commands / (first submit → last")
    lines.append("projection); cpu ms = CPU of submitters + workers + redis per command")
    lines += [f"{k}: {v}" for k, v in summary.items() if k != "targets"]
    return "\n".join(lines)


def _quad(p: dict[str, float]) -> str:
    return "/".join(f"{p[k]:.0f}" if p[k] >= 10 else f"{p[k]:.1f}" for k in PCTS)


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    """The broker/direct ratio and which targets are met."""
    by = {r["run"]: r for r in results}
    out: dict[str, Any] = {"targets": TARGETS}
    broker, direct, half = by.get("broker"), by.get("direct"), by.get("half")
    if broker:
        out["broker_cps_met"] = broker["cps"] >= TARGETS["cps"]
    if broker and direct:
        out["ratio_broker_direct"] = round(broker["cps"] / direct["cps"], 3)
        out["ratio_met"] = out["ratio_broker_direct"] >= TARGETS["ratio"]
    if half:
        p = half["submit_to_projected_ms"]
        out["half_p50_met"] = p["p50"] < TARGETS["half_p50_ms"]
        out["half_p99_met"] = p["p99"] < TARGETS["half_p99_ms"]
    return out


# ------------------------------------------------------------------------------------ main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description="End-to-end benchmark of the metawsm pipeline.")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per run (30)")
    p.add_argument("--submitters", type=int, default=4, help="submitter processes (4)")
    p.add_argument("--rate", type=float, help="cap the full-speed broker run at R commands/s")
    p.add_argument("--half-rate", type=float, help="rate of the last run (half the top rate)")
    p.add_argument(
        "--workers-concurrency",
        type=int,
        default=1,
        help="tasks at once (solo processes or pool children) of the commands worker, or of the "
        "one worker with --roles all (1: the least CPU per command, see docs/performance.md)",
    )
    p.add_argument(
        "--events-concurrency",
        type=int,
        default=1,
        help="tasks at once of the events worker with --roles split (1)",
    )
    p.add_argument("--pool", choices=("solo", "prefork"), default="solo", help="(solo)")
    p.add_argument(
        "--roles",
        choices=("split", "all"),
        default="split",
        help="split: a commands worker and an events worker (default); all: one worker",
    )
    p.add_argument("--database", default="sqlite", help="sqlite, or a postgresql:// server URL")
    p.add_argument("--tickets", type=int, default=50, help="tickets per run (50)")
    p.add_argument("--threads-per-ticket", type=int, default=4, help="pre-opened threads (4)")
    p.add_argument("--skip", action="append", default=[], choices=("direct", "broker", "half"))
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.add_argument("--worker-loglevel", default="WARNING", help="INFO logs every task's time")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parse_args(argv)
    with ExitStack() as stack, interrupt_as_exception():
        if args.keep:
            tmp = Path(tempfile.mkdtemp(prefix="metawsm-bench-"))
            log(f"keeping {tmp} (database, worker logs)")
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="metawsm-bench-")))
        redis = stack.enter_context(RedisServer(dir=tmp / "redis"))
        url = stack.enter_context(scratch_database(args.database, tmp))
        settings = load_settings(database_url=url, broker_url=redis.url)
        engine = build_engine(settings)
        stack.callback(engine.dispose)
        migrate.upgrade(engine)
        roles = ["commands", "events"] if args.roles == "split" else ["all"]
        concurrency = {"commands": args.workers_concurrency, "all": args.workers_concurrency}
        concurrency["events"] = args.events_concurrency
        workers = WorkerSet(roles, args.pool, concurrency, args.worker_loglevel)
        stack.callback(workers.stop)
        bench = Bench(args, settings, engine, workers, redis.pid or 0)
        results = run_all(bench, tmp)
    summary = verdict(results)
    print(render_table(results, summary), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        machine = {"cpus": os.cpu_count(), "platform": sys.platform}
        report = {"machine": machine, "options": vars(args), "runs": results, **summary}
        print(json.dumps(report, default=str))
    return 0


def run_all(bench: Bench, tmp: Path) -> list[dict[str, Any]]:
    """The direct run, then the broker runs with the workers started for them."""
    skip = set(bench.args.skip)
    if os.getloadavg()[0] > 0.5:
        log(f"warning: load average {os.getloadavg()[0]:.2f} before start: the machine is busy")
    results = []
    if "direct" not in skip:
        results.append(bench.run("direct", "direct", None))
    if {"broker", "half"} <= skip:
        return results
    bench.workers.start(bench.settings, tmp)
    top = None
    if "broker" not in skip:
        results.append(bench.run("broker", "broker", bench.args.rate))
        top = results[-1]["cps"]
    if "half" not in skip:
        half_rate = bench.args.half_rate or (top / 2 if top else None)
        if half_rate is None:
            raise SystemExit("--half-rate is needed when the full-speed run is skipped")
        results.append(bench.run("half", "broker", half_rate))
    return results


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: processes, temporary directory and scratch database removed")
        sys.exit(130)
    except RuntimeError as exc:
        log(f"failed: {exc}")
        sys.exit(1)
