"""End-to-end benchmark of the command pipeline: submit → Redis → worker → events → projector.

Starts a private redis-server and a fresh migrated SQLite database (or uses a PostgreSQL URL),
starts real subprocess workers (``python -m metawsm worker``), and drives a mixed forum workload
from several submitter processes, each with its own engine and publisher from the composition
root. Every timestamp comes from the database rows (aware UTC datetimes):

* submit→applied    ``forum_commands.accepted_at`` → ``finished_at``
* applied→projected ``finished_at`` → ``forum_projection_events.applied_at`` of the command's last
  event (``forum_events.command_id`` links them)
* throughput        commands / (first ``accepted_at`` → last projection, or last finish)

Runs, in order: the DIRECT path (the same ``accept``, ``apply_command`` and ``project`` functions
in-process, a publisher that does nothing, no broker), the broker path at full speed, then the
broker path at half the measured top rate (rate-limited submitters) for latency at half load.

    python bench/pipeline.py [--duration 30] [--submitters 4] [--rate R]
        [--workers-concurrency N] [--database sqlite|URL] [--json]

The table goes to stdout (stderr with ``--json``, where stdout gets one JSON object). Every
process and temporary directory it creates is removed at exit, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.synchronize import Event as MpEvent
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, func, select

from metawsm.composition import build
from metawsm.errors import Transient
from metawsm.messages.commands import AnyCommand
from metawsm.redis_server import RedisServer
from metawsm.services.eventlog import row_to_event
from metawsm.services.processing import Runtime, apply_command
from metawsm.services.projections import PROJECTION, project
from metawsm.services.submit import accept, make_command, submit
from metawsm.settings import Settings, load_settings
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine
from metawsm.storage.models import ForumCommand, ForumEvent, ForumProjectionEvent
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work

# Share of each command type in the mixed workload (weights). Only moves that are valid from
# every open state are used (waiting_* can be reached from new, triaged, answered and each
# other), so nothing is rejected whatever order the broker delivers in.
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
WORKER_STOP_TIMEOUT_S = 15.0
TARGETS = {"cps": 250.0, "ratio": 0.5, "half_p50_ms": 15.0, "half_p99_ms": 100.0}


# ---------------------------------------------------------------------------------- workload


@dataclass(frozen=True)
class Plan:
    """One run's workload: a name prefix (runs never share threads or tickets) and its sizes."""

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


def open_command(plan: Plan, thread_id: str, ticket: str) -> AnyCommand:
    """An ``open_thread`` command for ``thread_id`` on ``ticket``."""
    payload = {"thread_id": thread_id, "ticket": ticket, "title": "bench", "body": "opening"}
    return make_command("open_thread", payload, actor_type="agent", actor_name="bench-agent")


def next_command(rng: random.Random, plan: Plan, submitter: int, n: int) -> AnyCommand:
    """The ``n``-th command of ``submitter``: a weighted draw from :data:`MIX`."""
    kind = rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
    if kind == "open_thread":
        thread = f"{plan.name}-s{submitter}-new{n}"
        return open_command(plan, thread, plan.ticket(rng.randrange(plan.tickets)))
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


class NullPublisher:
    """The direct path's publisher: the broker is not involved, so publishing does nothing."""

    def publish(self, topic: str, message_id: str, payload: dict[str, Any]) -> None:
        """Do nothing."""


def run_direct(rt: Runtime, command: AnyCommand) -> None:
    """Accept, apply and project one command in-process with the real service functions."""
    accept(rt.engine, rt.settings, rt.topics, command)
    apply_command(rt, command)
    with unit_of_work(rt.engine, readonly=True) as session:
        rows = session.execute(
            select(ForumEvent).where(ForumEvent.command_id == command.command_id)
        ).scalars()
        events = [row_to_event(r) for r in rows]
    for event in events:
        project(rt.engine, event, f"{event.event_id}:projector")


def retrying(action: Any, *args: Any) -> None:
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
    settings: dict[str, Any]
    plan: Plan
    duration_s: float
    rate: float | None  # commands/s of this submitter; None = as fast as possible
    seed: int


def submitter_main(job: SubmitterJob, go: MpEvent, results: Any) -> None:
    """Submitter process: build its own container, wait for the start signal, submit."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    container = build(load_settings(**job.settings))
    rng = random.Random(job.seed)
    if job.mode == "direct":
        rt = Runtime(container.engine, container.settings, container.topics, NullPublisher())
    sent = errors = 0
    cpu_s = 0.0
    try:
        go.wait()
        cpu_start = time.process_time()
        start = time.monotonic()
        deadline = start + job.duration_s
        while (now := time.monotonic()) < deadline:
            if job.rate:
                due = start + sent / job.rate
                if due > now:
                    time.sleep(due - now)
            command = next_command(rng, job.plan, job.index, sent)
            try:
                if job.mode == "direct":
                    retrying(run_direct, rt, command)
                else:
                    c = container
                    submit(c.engine, c.settings, c.topics, c.publisher, command)
            except Exception as exc:  # counted and reported; the run goes on
                errors += 1
                print(f"submitter {job.index}: {exc}", file=sys.stderr)
            sent += 1
        cpu_s = time.process_time() - cpu_start
    finally:
        results.put((job.index, sent, errors, cpu_s))
        container.close()


# ---------------------------------------------------------------------------- environment


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class WorkerSet:
    """Subprocess workers, each in its own session (process group) so all its children stop."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, settings: Settings, args: argparse.Namespace, tmp: Path) -> None:
        """Start the workers of ``args.roles`` with ``args.pool`` and concurrency."""
        env = dict(os.environ)
        env["METAWSM_DATABASE_URL"] = settings.database_url
        env["METAWSM_BROKER_URL"] = settings.broker_url
        roles = ["all"] if args.roles == "all" else ["commands", "events"]
        for role in roles:
            logdir = Path(args.log_dir) if args.log_dir else tmp
            logdir.mkdir(parents=True, exist_ok=True)
            logfile = (logdir / f"worker-{role}.log").open("ab")
            cmd = [sys.executable, "-m", "metawsm", "worker", "--role", role]
            cmd += ["--concurrency", str(args.workers_concurrency), "--pool", args.pool]
            cmd += ["--loglevel", "WARNING"]
            proc = subprocess.Popen(
                cmd, env=env, cwd=tmp, stdout=logfile, stderr=logfile, start_new_session=True
            )
            logfile.close()
            self.procs.append(proc)
        log(f"workers: {roles} pool={args.pool} concurrency={args.workers_concurrency}")

    def check(self) -> None:
        """Fail when a worker died (its log is in the temporary directory)."""
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"worker {proc.pid} exited with {proc.returncode}")

    def cpu_s(self) -> float:
        """CPU seconds used so far by the workers and their pool processes."""
        return group_cpu_s({p.pid for p in self.procs})

    def stop(self) -> None:
        """SIGTERM each worker's process group, then SIGKILL what is left after a timeout."""
        for proc in self.procs:
            _signal_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + WORKER_STOP_TIMEOUT_S
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(proc, signal.SIGKILL)  # prefork children that outlived their parent
            proc.wait()
        self.procs.clear()


def process_cpu_s(stat: str) -> float:
    """CPU seconds (user + system, own and reaped children) from a /proc/<pid>/stat line."""
    fields = stat.rpartition(")")[2].split()
    # After the command name: state is fields[0], so utime..cstime are fields[11:15].
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def group_cpu_s(pgids: set[int]) -> float:
    """CPU seconds used so far by every live process in the process groups ``pgids``."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited meanwhile
        if int(stat.rpartition(")")[2].split()[2]) in pgids:
            total += process_cpu_s(stat)
    return total


REDIS_PID: list[int] = []


def redis_cpu_s(_settings: Settings) -> float:
    """CPU seconds used so far by the private redis-server."""
    try:
        return process_cpu_s(Path(f"/proc/{REDIS_PID[0]}/stat").read_text()) if REDIS_PID else 0
    except OSError:
        return 0.0


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)  # the group we created with start_new_session
    except ProcessLookupError:
        pass


def database_url(args: argparse.Namespace, tmp: Path) -> str:
    """The SQLite file in the temporary directory, or the given URL."""
    if args.database == "sqlite":
        return f"sqlite:///{tmp / 'bench.db'}"
    return str(args.database)


def migrate_database(settings: Settings) -> None:
    """Bring the database to the head revision (a fresh SQLite file, or an empty PostgreSQL)."""
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


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


def prepare(engine: Engine, settings: Settings, plan: Plan, mode: str) -> None:
    """Open the plan's pool of threads and wait until they are applied and projected."""
    c = build(settings)
    rt = Runtime(c.engine, c.settings, c.topics, NullPublisher())
    try:
        for n in range(plan.pool_size):
            command = open_command(plan, plan.pool_thread(n), plan.ticket(n % plan.tickets))
            if mode == "direct":
                retrying(run_direct, rt, command)
            else:
                submit(c.engine, c.settings, c.topics, c.publisher, command)
    finally:
        c.close()
    wait_settled(engine, None, f"{plan.name}: warm-up of {plan.pool_size} threads")


def wait_settled(engine: Engine, workers: WorkerSet | None, what: str) -> None:
    """Wait until no command is in flight and every event is projected (with a deadline)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        accepted, unprojected = in_flight(engine)
        if accepted == 0 and unprojected == 0:
            return
        if workers is not None:
            workers.check()
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"{what}: still {accepted} commands accepted and {unprojected} events"
                f" unprojected after {SETTLE_TIMEOUT_S:g} s"
            )
        time.sleep(0.2)


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


def run_phase(
    label: str,
    mode: str,
    engine: Engine,
    settings: Settings,
    args: argparse.Namespace,
    rate: float | None,
    workers: WorkerSet | None,
) -> dict[str, Any]:
    """Warm up, run the submitters for ``args.duration`` seconds, settle, and measure."""
    plan = Plan(label, args.tickets, args.threads_per_ticket)
    prepare(engine, settings, plan, mode)
    ctx = mp.get_context("spawn")
    go, results = ctx.Event(), ctx.Queue()
    per_submitter = rate / args.submitters if rate else None
    jobs = [
        SubmitterJob(i, mode, _settings_dict(settings), plan, args.duration, per_submitter, i)
        for i in range(args.submitters)
    ]
    procs = [ctx.Process(target=submitter_main, args=(j, go, results)) for j in jobs]
    try:
        for p in procs:
            p.start()
        time.sleep(2.0)  # let the submitters import and connect before the window opens
        worker_cpu = workers.cpu_s() if workers is not None else 0.0
        redis_cpu = redis_cpu_s(settings) if workers is not None else 0.0
        load_start = round(os.getloadavg()[0], 2)
        since = utcnow()
        what = f"{rate:.0f}/s" if rate else "full speed"
        log(f"{label}: {mode} path, {args.submitters} submitters at {what}, {args.duration} s")
        go.set()
        counts = [results.get(timeout=args.duration + 120) for _ in procs]
        for p in procs:
            p.join()
        until = utcnow()
        wait_settled(engine, workers, label)
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    result = measure(engine, since, until)
    result |= {"run": label, "mode": mode, "offered_rate": rate}
    result["submit_errors"] = sum(c[2] for c in counts)
    cpu = {"submitters": sum(c[3] for c in counts)}
    if workers is not None:
        cpu["workers"] = workers.cpu_s() - worker_cpu
        cpu["redis"] = redis_cpu_s(settings) - redis_cpu
    result["cpu_s"] = {k: round(v, 2) for k, v in cpu.items()}
    result["cpu_ms_per_command"] = round(sum(cpu.values()) * 1000 / result["commands"], 2)
    # What the measured CPU cost allows if the machine's cores did nothing else.
    result["cpu_bound_cps"] = round((os.cpu_count() or 1) * 1000 / result["cpu_ms_per_command"], 1)
    result["loadavg_1m"] = {"start": load_start, "end": round(os.getloadavg()[0], 2)}
    log(f"{label}: {result['commands']} commands, {result['cps']:.1f} commands/s end to end")
    return result


def _settings_dict(settings: Settings) -> dict[str, Any]:
    return {"database_url": settings.database_url, "broker_url": settings.broker_url}


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
    if not rows:
        raise RuntimeError("no command was accepted in the measured window")
    applied, projected, total, ends = [], [], [], []
    for status, accepted_at, finished_at, projected_at, _events in rows:
        end = projected_at or finished_at
        ends.append(end)
        applied.append(_ms(finished_at - accepted_at))
        total.append(_ms(end - accepted_at))
        if projected_at is not None:
            projected.append(_ms(projected_at - finished_at))
    first = min(r[1] for r in rows)
    elapsed_s = (max(ends) - first).total_seconds()
    return {
        "commands": len(rows),
        "statuses": dict(Counter(r[0] for r in rows)),
        "events": sum(r[4] or 0 for r in rows),
        "commands_without_events": sum(1 for r in rows if not r[4]),
        "elapsed_s": round(elapsed_s, 3),
        "cps": len(rows) / elapsed_s if elapsed_s > 0 else 0.0,
        "submit_to_applied_ms": percentiles(applied),
        "applied_to_projected_ms": percentiles(projected),
        "submit_to_projected_ms": percentiles(total),
    }


def _ms(delta: Any) -> float:
    return float(delta.total_seconds() * 1000.0)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 (nearest rank) and max of ``values``, rounded to 0.1 ms."""
    if not values:
        return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]

    stats = {"p50": rank(0.50), "p90": rank(0.90), "p99": rank(0.99), "max": ordered[-1]}
    return {k: round(v, 1) for k, v in stats.items()}


# ---------------------------------------------------------------------------------- report


def render_table(results: list[dict[str, Any]]) -> str:
    """The results as a fixed-width text table (latencies in ms)."""
    head = f"{'run':<12}{'path':<8}{'offered':>9}{'cmds':>7}{'cmd/s':>8}"
    head += "".join(
        f"{name:>26}" for name in ("submit→applied p50/90/99/max", "applied→projected", "")
    )
    lines = [head.rstrip()[: len(head)], "-" * 110]
    lines[0] = (
        f"{'run':<12}{'path':<8}{'offered':>9}{'cmds':>7}{'cmd/s':>8}"
        f"  {'submit→applied':<27}{'applied→projected':<27}{'submit→projected':<27}"
    )
    for r in results:
        offered = f"{r['offered_rate']:.0f}/s" if r["offered_rate"] else "max"
        cols = [
            _quad(r["submit_to_applied_ms"]),
            _quad(r["applied_to_projected_ms"]),
            _quad(r["submit_to_projected_ms"]),
        ]
        lines.append(
            f"{r['run']:<12}{r['mode']:<8}{offered:>9}{r['commands']:>7}{r['cps']:>8.1f}"
            f"  {cols[0]:<27}{cols[1]:<27}{cols[2]:<27}"
        )
    lines.append("latencies in ms as p50/p90/p99/max; cmd/s = commands / (first submit → last")
    lines.append("projection), timestamps from the database rows")
    return "\n".join(lines)


def _quad(p: dict[str, float]) -> str:
    return "/".join(f"{p[k]:.0f}" if p[k] >= 10 else f"{p[k]:.1f}" for k in PCTS)


PCTS = ("p50", "p90", "p99", "max")


def verdict(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios and which targets are met."""
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
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=30.0, help="seconds per run (default 30)")
    p.add_argument("--submitters", type=int, default=4, help="submitter processes (default 4)")
    p.add_argument("--rate", type=float, help="cap the full-speed broker run at R commands/s")
    p.add_argument("--half-rate", type=float, help="rate of the half-load run (default: half")
    p.add_argument("--workers-concurrency", type=int, default=2, help="per worker (default 2)")
    p.add_argument("--pool", choices=("prefork", "threads", "solo"), default="prefork")
    p.add_argument("--roles", choices=("all", "split"), default="all", help="one worker or two")
    p.add_argument("--database", default="sqlite", help="sqlite (temporary file) or a URL")
    p.add_argument("--tickets", type=int, default=50)
    p.add_argument("--threads-per-ticket", type=int, default=4)
    p.add_argument("--skip", action="append", default=[], choices=("direct", "broker", "half"))
    p.add_argument("--log-dir", help="keep the worker logs in this directory")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    args = parse_args(argv)
    with ExitStack() as stack, interrupt_as_exception():
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="metawsm-bench-")))
        redis = stack.enter_context(RedisServer(dir=tmp / "redis"))
        REDIS_PID[:] = [redis.pid or 0]
        settings = load_settings(database_url=database_url(args, tmp), broker_url=redis.url)
        migrate_database(settings)
        engine = build_engine(settings)
        stack.callback(engine.dispose)
        results = run_all(args, settings, engine, stack, tmp)
    report = {"machine": {"cpus": os.cpu_count()}, "options": vars(args), "runs": results}
    report |= verdict(results)
    table = render_table(results)
    print(table, file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(report, default=str))
    return 0


def run_all(
    args: argparse.Namespace, settings: Settings, engine: Engine, stack: ExitStack, tmp: Path
) -> list[dict[str, Any]]:
    """The direct run, then the broker runs with workers started for them."""
    results = []
    if "direct" not in args.skip:
        results.append(run_phase("direct", "direct", engine, settings, args, None, None))
    if {"broker", "half"} <= set(args.skip):
        return results
    workers = WorkerSet()
    stack.callback(workers.stop)
    workers.start(settings, args, tmp)
    top: float | None = None
    if "broker" not in args.skip:
        broker = run_phase("broker", "broker", engine, settings, args, args.rate, workers)
        results.append(broker)
        top = broker["cps"]
    if "half" not in args.skip:
        half_rate = args.half_rate or (top / 2 if top else None)
        if half_rate is None:
            raise SystemExit("--half-rate is needed when the full-speed run is skipped")
        results.append(run_phase("half", "broker", engine, settings, args, half_rate, workers))
    return results


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: every process and temporary directory was cleaned up")
        sys.exit(130)
