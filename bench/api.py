"""The HTTP API: write throughput and write → applied latency against the direct path, and the
live stream's delivery latency (commit → client) with many clients.

Starts a private redis-server, a fresh database (SQLite, or ``--database postgresql://...``: a
scratch database on that server), the stack's worker (``python -m metawsm worker --role all
--concurrency 2``) and the API as the Procfile runs it (``python -m metawsm api``), on free ports.

1. ``writes``: ``--writes`` posts by ``--clients`` concurrent clients, each a request
   ``POST /api/v1/forum/threads/{id}/posts?wait=applied`` (HTTP keep-alive), against the same
   posts through the path the command line takes in-process (``services.submit.submit``, then
   ``wait_for_outcome``) from as many threads, and against ``--cli-writes`` posts as
   ``metawsm forum post --wait applied`` processes (an agent's shell: process start-up included).
   Rounds alternate (API, in-process, CLI, API, ...) so every path sees the same machine; each
   reports commands/s and p50/p90/p99/max of write → applied (ms, as the caller sees it), and the
   API rounds the API process's CPU ms per command.
2. ``stream``: ``--stream-clients`` SSE clients on ``/api/v1/events/stream``; a writer here
   applies ``--events`` posts in-process at ``--rate`` a second (one transaction each, the real
   handler) and notes when each commit returned; every client notes when each event arrived.
   Reports commit → client p50/p90/p99/max over every (client, event), the API's CPU share
   while idle with no client and with every client connected, and (PostgreSQL) the database's
   transactions per second in both, which shows what the clients add.

    PYTHONPATH=. python bench/api.py [--database URL] [--writes 400] [--stream-clients 100]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import Any

import httpx

from bench.pipeline import (
    NullPublisher,
    WorkerSet,
    interrupt_as_exception,
    log,
    percentiles,
    process_cpu_s,
    scratch_database,
)
from metawsm.bootstrap import Container, build, message_bus
from metawsm.identity import Identity
from metawsm.messages.common import Actor
from metawsm.runtime import Runtime
from metawsm.services import runs, tokens
from metawsm.services.delivery import apply_command
from metawsm.services.submit import make_command, submit, wait_for_outcome
from metawsm.settings import load_settings
from metawsm.storage import migrate
from metawsm.storage.dbapi import on_connection
from metawsm.storage.engine import build_engine, connect
from metawsm.storage.types import utcnow
from metawsm.transport.redis_server import RedisServer, free_port

OPERATOR = Identity("operator", "bench")
TICKET = "TCK-API"
IDLE_WINDOW_S = 5.0


def issue(engine: Any, actor_type: str, name: str) -> str:
    """A bearer token for (actor_type, name)."""
    with connect(engine, readonly=False) as connection, connection.begin():
        return tokens.create_token(
            on_connection(connection),
            OPERATOR,
            actor_type=actor_type,
            actor_name=name,
            run_id=None,
            expires_in=None,
            now=utcnow(),
        ).token


class ApiProcess:
    """``python -m metawsm api`` on a free port, in its own session; its CPU time on demand."""

    def __init__(self, url: str, broker: str, logdir: Path) -> None:
        self.port = free_port()
        env = {**os.environ, "METAWSM_DATABASE_URL": url, "METAWSM_BROKER_URL": broker}
        cmd = [sys.executable, "-m", "metawsm", "api", "--port", str(self.port)]
        logdir.mkdir(parents=True, exist_ok=True)
        with (logdir / "api.log").open("ab") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, cwd=logdir, stdout=out, stderr=out, start_new_session=True
            )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while not self._ready():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start (see {logdir / 'api.log'})")
            time.sleep(0.1)  # waiting for a condition (the port answers), with a deadline

    def _ready(self) -> bool:
        with suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/api/v1/readiness", timeout=1).status_code == 200
        return False

    def cpu_s(self) -> float:
        """CPU seconds the API process used so far."""
        return process_cpu_s(self.proc.pid)[1]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a timeout."""
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def open_threads(c: Container, count: int) -> list[str]:
    """``count`` threads on the bench ticket, applied in-process (their posts come later)."""
    rt = Runtime(c.engine, c.settings, c.topics, NullPublisher())
    ids = []
    for n in range(count):
        thread_id = f"th-api-{n}"
        payload = {"thread_id": thread_id, "ticket": TICKET, "title": "bench", "body": "first"}
        command = make_command("open_thread", payload, actor_type="agent", actor_name="alice")
        submit(rt, command)
        apply_command(rt, message_bus(), command)
        ids.append(thread_id)
    return ids


def timed(fn: Callable[[int], None], count: int, workers: int) -> tuple[float, list[float]]:
    """Run ``fn(n)`` for n < count on ``workers`` threads; (wall s, per-call ms)."""
    latencies: list[float] = []

    def one(n: int) -> None:
        started = time.perf_counter()
        fn(n)
        latencies.append((time.perf_counter() - started) * 1000.0)

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(count)))
    return time.perf_counter() - started, latencies


def api_round(api: ApiProcess, token: str, threads: list[str], args: Any) -> dict[str, Any]:
    """``args.writes`` posts through the API, ``args.clients`` at a time."""
    local = threading.local()

    def post(n: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
        path = f"/api/v1/forum/threads/{threads[n % len(threads)]}/posts"
        r = local.client.post(path, params={"wait": "applied"}, json={"body": f"api {n}"})
        if r.status_code != 200:
            raise RuntimeError(f"API write failed: {r.status_code} {r.text[:200]}")

    cpu = api.cpu_s()
    wall, latencies = timed(post, args.writes, args.clients)
    used_ms = (api.cpu_s() - cpu) * 1000.0
    return summary(wall, latencies, {"api_cpu_ms_per_command": round(used_ms / args.writes, 2)})


def direct_round(c: Container, threads: list[str], args: Any) -> dict[str, Any]:
    """The same posts through the in-process submit and wait the command line runs."""

    def post(n: int) -> None:
        payload = {"thread_id": threads[n % len(threads)], "body": f"direct {n}"}
        command = make_command("add_post", payload, actor_type="agent", actor_name="alice")
        outcome = submit(c.runtime, command)
        if wait_for_outcome(c.engine, outcome.command_id, 60).status != "applied":
            raise RuntimeError(f"direct write not applied: {outcome}")

    wall, latencies = timed(post, args.writes, args.clients)
    return summary(wall, latencies, {})


def cli_round(c: Container, threads: list[str], args: Any) -> dict[str, Any]:
    """``args.cli_writes`` posts as ``metawsm forum post --wait applied`` processes (start-up
    included: what an agent's shell pays per command)."""
    env = {
        **os.environ,
        "METAWSM_DATABASE_URL": c.settings.database_url,
        "METAWSM_BROKER_URL": c.settings.broker_url,
    }

    def post(n: int) -> None:
        cmd = [sys.executable, "-m", "metawsm", "forum", "post", "--thread-id",
               threads[n % len(threads)], "--body", f"cli {n}", "--wait", "applied", "--json",
               "--actor-type", "agent", "--actor-name", "alice"]  # fmt: skip
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"CLI write failed: {done.stderr[-300:]}")

    wall, latencies = timed(post, args.cli_writes, args.clients)
    return summary(wall, latencies, {})


def summary(wall: float, latencies: list[float], extra: dict[str, Any]) -> dict[str, Any]:
    """Commands/s and latency percentiles of one round."""
    return {
        "commands": len(latencies),
        "per_s": round(len(latencies) / wall, 1),
        **percentiles(latencies),
        **extra,
    }


class StreamClient(threading.Thread):
    """One SSE client: notes the arrival time of every event (by sequence)."""

    def __init__(self, url: str, token: str, cursor: int) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.cursor = url, token, cursor
        self.arrived: dict[int, float] = {}
        self.connected = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        """Read the stream until told to stop."""
        headers = {"Authorization": f"Bearer {self.token}"}
        params = {"cursor": self.cursor}
        with (
            suppress(httpx.HTTPError),  # the API stopping at the end of the run
            httpx.Client(base_url=self.url, headers=headers, timeout=None) as client,
            client.stream("GET", "/api/v1/events/stream", params=params) as response,
        ):
            self.connected.set()
            for line in response.iter_lines():
                if line.startswith("id:"):
                    self.arrived[int(line[3:])] = time.time()
                if self.stop.is_set():
                    return


def head(c: Container) -> int:
    """The newest event sequence."""
    with connect(c.engine) as connection, connection.begin():
        return int(on_connection(connection).scalar("SELECT max(sequence) FROM forum_events") or 0)


def db_transactions(c: Container) -> int | None:
    """Transactions committed in this database so far (PostgreSQL), else None."""
    if c.engine.dialect.name != "postgresql":
        return None
    with connect(c.engine) as connection, connection.begin():
        db = on_connection(connection)
        return int(
            db.scalar(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database"
                " WHERE datname = current_database()"
            )
        )


def idle_load(api: ApiProcess, c: Container) -> dict[str, Any]:
    """The API's CPU share and the database's transactions/s over an idle window."""
    cpu, tx = api.cpu_s(), db_transactions(c)
    time.sleep(IDLE_WINDOW_S)  # a measuring window, not synchronisation
    out: dict[str, Any] = {"api_cpu_pct": round((api.cpu_s() - cpu) / IDLE_WINDOW_S * 100, 1)}
    after = db_transactions(c)
    if tx is not None and after is not None:
        out["db_tx_per_s"] = round((after - tx) / IDLE_WINDOW_S, 1)
    return out


def stream_phase(api: ApiProcess, c: Container, token: str, thread_id: str, args: Any) -> Any:
    """Connect the clients, commit ``args.events`` posts at ``args.rate``; the latencies."""
    idle_without = idle_load(api, c)
    start = head(c)
    clients = [StreamClient(api.url, token, start) for _ in range(args.stream_clients)]
    for client in clients:
        client.start()
    for client in clients:
        if not client.connected.wait(30):
            raise RuntimeError("a stream client did not connect")
    idle_with = idle_load(api, c)
    rt = Runtime(c.engine, c.settings, c.topics, NullPublisher())
    committed: dict[int, float] = {}
    for n in range(args.events):
        payload = {"thread_id": thread_id, "body": f"live {n}"}
        command = make_command("add_post", payload, actor_type="agent", actor_name="alice")
        submit(rt, command)
        apply_command(rt, message_bus(), command)
        committed[head(c)] = time.time()  # one writer: the head is this command's event
        time.sleep(1.0 / args.rate)  # the write rate of the workload, not synchronisation
    last = max(committed)
    deadline = time.monotonic() + 30
    while any(last not in cl.arrived for cl in clients):
        if time.monotonic() > deadline:
            raise RuntimeError("stream clients did not receive every event within 30 s")
        time.sleep(0.05)  # waiting for a condition, with a deadline
    for client in clients:
        client.stop.set()
    delays = [(cl.arrived[seq] - at) * 1000.0 for cl in clients for seq, at in committed.items()]
    missing = sum(1 for cl in clients for seq in committed if seq not in cl.arrived)
    return {
        "clients": len(clients),
        "events": len(committed),
        "deliveries": len(delays),
        "missing": missing,
        **percentiles(delays),
        "idle_no_clients": idle_without,
        "idle_with_clients": idle_with,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--database", default="sqlite", help="sqlite, or a postgresql:// server URL")
    p.add_argument("--writes", type=int, default=400, help="posts per write round (400)")
    p.add_argument("--clients", type=int, default=4, help="concurrent writers (4)")
    p.add_argument("--cli-writes", type=int, default=40, help="posts as CLI processes (40)")
    p.add_argument("--rounds", type=int, default=2, help="rounds per path, alternated (2)")
    p.add_argument("--stream-clients", type=int, default=100, help="SSE clients (100)")
    p.add_argument("--events", type=int, default=200, help="events committed live (200)")
    p.add_argument("--rate", type=float, default=20.0, help="events per second (20)")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    return p.parse_args(argv)


def start_stack(args: argparse.Namespace, tmp: Path, es: ExitStack) -> tuple[Container, Any]:
    """Redis, a migrated scratch database, the worker, the API (all stopped by ``es``)."""
    redis = es.enter_context(RedisServer(dir=tmp / "redis"))
    url = es.enter_context(scratch_database(args.database, tmp))
    settings = load_settings(database_url=url, broker_url=redis.url)
    engine = build_engine(settings)
    migrate.upgrade(engine)
    engine.dispose()
    workers = WorkerSet(["all"], "solo", {"all": 2})
    es.callback(workers.stop)
    workers.start(settings, tmp / "logs")
    c = build(settings)
    es.callback(c.close)
    api = ApiProcess(url, redis.url, tmp / "logs")
    es.callback(api.stop)
    return c, api


def main(argv: Sequence[str] | None = None) -> int:
    """Run both phases; print the results (or JSON)."""
    args = parse_args(argv)
    load = os.getloadavg()[0]
    if load > 0.5:
        log(f"warning: load average {load:.2f} before start: the machine is busy")
    with ExitStack() as es, interrupt_as_exception():
        tmp = Path(es.enter_context(tempfile.TemporaryDirectory(prefix="metawsm-api-bench-")))
        c, api = start_stack(args, tmp, es)
        runs.create_run(c.runtime, tickets=[TICKET], agents=["alice"], mode="run", brief=None,
                        actor=Actor(type="operator", name="bench"))  # fmt: skip
        token = issue(c.engine, "agent", "alice")
        threads = open_threads(c, 20)
        log("warming up both paths")
        warm = argparse.Namespace(**{**vars(args), "writes": 20})
        api_round(api, token, threads, warm)
        direct_round(c, threads, warm)
        rounds: dict[str, list[dict[str, Any]]] = {"api": [], "direct": [], "cli": []}
        for r in range(args.rounds):
            log(f"write round {r + 1}: API, in-process, CLI processes")
            rounds["api"].append(api_round(api, token, threads, args))
            rounds["direct"].append(direct_round(c, threads, args))
            rounds["cli"].append(cli_round(c, threads, args))
        log(f"stream: {args.stream_clients} clients, {args.events} events at {args.rate}/s")
        stream = stream_phase(api, c, token, threads[0], args)
    report = {
        "database": args.database,
        "load_average_at_start": round(load, 2),
        "writes": rounds,
        "stream": stream,
    }
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        log("interrupted: processes and temporary directory removed")
        sys.exit(130)
