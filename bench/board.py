"""The board's pages at issue 16's scale: server time of each page, as its Server-Timing says.

On a scratch copy of the store of bench/board_data.py (10,000 threads, 100 active runs; or any
SQLite store with ``--store``, or a PostgreSQL copy with ``--database``), it serves the API and
the board in this process (uvicorn in a thread, on a free port, as ``metawsm api`` serves it),
signs in through ``/signin`` with a human's token (``human/hana``, who has seen 30 % of the
threads) and an operator's, and requests each page ``--repeat`` times, the pages taken in turn
so every page sees the same machine:

- ``/`` (inbox), ``/runs``, ``/runs/{id}`` (the run with the most pending guidance and unmet
  gates), ``/threads``, ``/threads/big-1000`` (the newest page of 1,000 posts);
- the live refresh of the inbox and of ``/runs`` (``X-Board-Fragment: live``: what the page's
  script fetches after an event).

For each it prints p50/p90/max of the server time (the ``Server-Timing: app;dur=`` header,
``metawsm/board/timing.py``: from the request reaching the app to the page rendered), the
client's wall time (p50: HTTP over loopback included), the process CPU ms per request (p50;
the client's share included, it runs in this process), and the SQL statements of one request
(counted apart, untimed). The target is 150 ms server time; "met" means p90 under it. The load
average is printed at start and end: the machine is shared, numbers on a busy one are high.
``--burst N`` then has N boards refresh the inbox's live part at once (bench/board_burst.py).

    PYTHONPATH=. python bench/board.py [--repeat 20] [--pages inbox,runs] [--burst N]
        [--store PATH | --database URL] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/board.py`

from bench.board_burst import burst
from bench.board_counting import statements_of
from bench.board_data import CACHE, VIEWER, cached_store, scratch_copy
from metawsm.api.server import make_server, settle_heap
from metawsm.api.state import ApiOptions, ApiState
from metawsm.bootstrap import Container, build
from metawsm.domain.snapshot import RunSnapshot
from metawsm.identity import Identity
from metawsm.services import snapshot, tokens
from metawsm.settings import load_settings
from metawsm.storage.dbapi import on_connection
from metawsm.storage.engine import connect
from metawsm.storage.types import utcnow
from metawsm.transport.redis_server import free_port

TARGET_MS = 150.0
LIVE = {"X-Board-Fragment": "live"}
BIG_THREAD = "big-1000"


@dataclass(frozen=True)
class Case:
    """One page to measure: its name, path and headers, as whom."""

    name: str
    path: str
    who: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Row:
    """What was measured of one case."""

    page: str
    who: str
    server_ms: list[float] = field(default_factory=list)
    client_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)
    first_ms: float | None = None
    statements: int | None = None
    bytes: int = 0

    def summary(self) -> dict[str, Any]:
        """p50/p90/max of the server time, p50 of the client and CPU time, and the verdict."""
        p50, p90 = percentile(self.server_ms, 50), percentile(self.server_ms, 90)
        return {
            "page": self.page,
            "who": self.who,
            "server_p50_ms": p50,
            "server_p90_ms": p90,
            "server_max_ms": max(self.server_ms),
            "client_p50_ms": percentile(self.client_ms, 50),
            "cpu_p50_ms": percentile(self.cpu_ms, 50),
            "first_ms": self.first_ms,
            "statements": self.statements,
            "bytes": self.bytes,
            "samples": len(self.server_ms),
            "target_ms": TARGET_MS,
            "met": p90 < TARGET_MS,
        }


def percentile(values: list[float], p: int) -> float:
    """The ``p``-th percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[board-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@contextmanager
def serving(container: Container) -> Iterator[tuple[str, ApiState]]:
    """The API and the board over ``container`` on a free port (a thread of this process)."""
    port = free_port()
    server = make_server(container, "127.0.0.1", port, ApiOptions(), quiet=True)
    settle_heap()  # as `metawsm api` does (api/server.py serve)
    thread = threading.Thread(target=server.run, name="board-bench-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:  # waiting for a condition, with a deadline
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server.config.app.state.api
    finally:
        server.should_exit = True
        thread.join(15)


def issue(container: Container, actor_type: str, name: str) -> str:
    """A bearer token for (actor_type, name), written to the scratch store."""
    with connect(container.engine, readonly=False) as connection, connection.begin():
        return tokens.create_token(
            on_connection(connection),
            Identity("operator", "bench"),
            actor_type=actor_type,
            actor_name=name,
            run_id=None,
            expires_in=None,
            now=utcnow(),
        ).token


def signed_in(url: str, token: str) -> httpx.Client:
    """A client holding a board session (signed in through the sign-in form)."""
    client = httpx.Client(base_url=url, follow_redirects=False, timeout=60)
    answer = client.post("/signin", data={"token": token, "next": "/"})
    if answer.status_code != 303:
        raise RuntimeError(f"sign-in refused: {answer.status_code}")
    return client


def busiest_run(container: Container) -> str:
    """The active run with the most pending guidance, then unmet gates, then agents."""
    runs = snapshot.build(container.engine, container.settings).runs
    if not runs:
        raise RuntimeError("the store has no active run")

    def weight(run: RunSnapshot) -> tuple[int, int, int]:
        gates = sum(1 for b in run.blockers if b.kind == "gate")
        return (len(run.pending_guidance), gates, len(run.agents))

    return max(runs, key=weight).run_id


def cases(run_id: str, only: set[str] | None = None) -> list[Case]:
    """Every page measured (or those named in ``only``), as the human and as the operator."""
    pages = [
        ("inbox", "/", {}),
        ("inbox live", "/", LIVE),
        ("runs", "/runs", {}),
        ("runs live", "/runs", LIVE),
        ("run", f"/runs/{run_id}", {}),
        ("threads", "/threads", {}),
        (f"thread {BIG_THREAD}", f"/threads/{BIG_THREAD}", {}),
    ]
    return [Case(name, path, who, headers) for name, path, headers in pages
            for who in ("human", "operator") if not only or name in only]  # fmt: skip


def fetch(client: httpx.Client, case: Case) -> tuple[float, float, float, int]:
    """One request: server ms (Server-Timing), client ms, process CPU ms, body bytes."""
    started, cpu = time.perf_counter(), time.process_time()
    response = client.get(case.path, headers=case.headers)
    client_ms = (time.perf_counter() - started) * 1000
    cpu_ms = (time.process_time() - cpu) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"{case.path} as {case.who}: {response.status_code}")
    timing = response.headers.get("server-timing", "")
    if not timing.startswith("app;dur="):
        raise RuntimeError(f"{case.path}: no Server-Timing header")
    return float(timing.removeprefix("app;dur=")), client_ms, cpu_ms, len(response.content)


def measure(state: ApiState, clients: dict[str, httpx.Client], repeat: int,
            todo: list[Case]) -> list[Row]:  # fmt: skip
    """Every case ``repeat`` times, in turn; its first request and its statements apart."""
    rows = {id(c): Row(c.name, c.who) for c in todo}
    for case in todo:  # the first request of each: templates compiled, caches warm
        rows[id(case)].first_ms = fetch(clients[case.who], case)[0]
    for case in todo:
        one = partial(fetch, clients[case.who], case)
        rows[id(case)].statements = statements_of(state.container.engine, one)
    for _ in range(repeat):
        for case in todo:
            server, client, cpu, size = fetch(clients[case.who], case)
            row = rows[id(case)]
            row.server_ms.append(server)
            row.client_ms.append(client)
            row.cpu_ms.append(cpu)
            row.bytes = size
    return list(rows.values())


def table(summaries: list[dict[str, Any]]) -> str:
    """The rows as a text table."""
    head = (f"{'page':22s} {'who':8s} {'p50':>7s} {'p90':>7s} {'max':>7s} {'client':>7s}"
            f" {'CPU':>7s} {'first':>7s} {'SQL':>4s} {'KiB':>5s} {'target':>6s}  met")  # fmt: skip
    lines = [head, "-" * len(head)]
    for s in summaries:
        lines.append(
            f"{s['page']:22s} {s['who']:8s} {s['server_p50_ms']:7.1f} {s['server_p90_ms']:7.1f}"
            f" {s['server_max_ms']:7.1f} {s['client_p50_ms']:7.1f} {s['cpu_p50_ms']:7.1f}"
            f" {s['first_ms']:7.1f} {s['statements']:4d} {s['bytes'] / 1024:5.0f}"
            f" {s['target_ms']:6.0f}  {'yes' if s['met'] else 'NO'}"
        )
    return "\n".join(lines)


def burst_summary(raw: dict[str, Any]) -> dict[str, Any]:
    """p50/p90/max of a burst's server times and of its rounds' wall times."""
    server, rounds = raw["server_ms"], raw["round_ms"]
    return {"clients": raw["clients"], "rounds": raw["rounds"], "path": raw["path"],
            "server_p50_ms": percentile(server, 50), "server_p90_ms": percentile(server, 90),
            "server_max_ms": max(server), "round_p50_ms": percentile(rounds, 50),
            "round_p90_ms": percentile(rounds, 90), "round_max_ms": max(rounds)}  # fmt: skip


def bench(url: str, repeat: int, only: set[str] | None = None, clients: int = 0) -> dict[str, Any]:
    """Serve the store at ``url``, sign in, measure every case (then ``clients`` boards
    refreshing at once, when asked); the report."""
    settings = load_settings(database_url=url, broker_url="redis://127.0.0.1:1/0")
    container = build(settings)
    try:
        run_id = busiest_run(container)
        tokens_of = {"human": issue(container, "human", VIEWER),
                     "operator": issue(container, "operator", "op-1")}  # fmt: skip
        with serving(container) as (base, state):
            sessions = {who: signed_in(base, token) for who, token in tokens_of.items()}
            try:
                rows = measure(state, sessions, repeat, cases(run_id, only))
                human = partial(signed_in, base, tokens_of["human"])
                many = burst_summary(burst(human, clients, repeat)) if clients else None
            finally:
                for session in sessions.values():
                    session.close()
        return {"run_id": run_id, "rows": [r.summary() for r in rows], "burst": many}
    finally:
        container.close()


def main() -> None:
    """Copy the store, measure, print the table (or JSON with ``--json``)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=20, help="requests per page and identity (20)")
    p.add_argument("--store", type=Path, help="measure a copy of this SQLite store instead")
    p.add_argument("--database", help="a postgresql:// server URL: measure a scratch copy there")
    p.add_argument("--threads", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=100)
    p.add_argument("--cache", type=Path, default=CACHE)
    p.add_argument("--pages", help="measure only these pages (comma-separated names: inbox,runs")
    p.add_argument(
        "--burst",
        type=int,
        default=0,
        metavar="N",
        help="then N boards refresh the inbox's live part at once, --repeat rounds",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    a = p.parse_args()
    if a.store and a.database:
        raise SystemExit("--store and --database: one or the other")
    load_start = os.getloadavg()
    source = f"sqlite:///{a.store.resolve()}" if a.store else cached_store(
        a.database or "sqlite", a.threads, a.runs, a.cache)  # fmt: skip
    log(f"store: {source.rsplit('@', 1)[-1]}; load average {load_start[0]:.2f}")
    with scratch_copy(source) as url:
        started = time.monotonic()
        only = {name.strip() for name in a.pages.split(",")} if a.pages else None
        report = bench(url, a.repeat, only, a.burst)
    report |= {
        "store": source.rsplit("@", 1)[-1],
        "repeat": a.repeat,
        "elapsed_s": round(time.monotonic() - started, 1),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    if a.json:
        print(json.dumps(report, indent=2))
        return
    print(f"store {report['store']}  run {report['run_id']}  {a.repeat} requests per row")
    print(f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f},"
          f" at end {report['load_average_end'][0]:.2f} {report['load_average_end'][1]:.2f}"
          f" {report['load_average_end'][2]:.2f} ({report['cpus']} CPUs)")  # fmt: skip
    print(
        "server ms (Server-Timing): p50 p90 max; client and CPU: p50 ms; first: the first"
        " request's server ms; SQL: statements of one request"
    )
    print(table(report["rows"]))
    if report["burst"]:
        b = report["burst"]
        print(
            f"burst: {b['clients']} boards refresh {b['path']} (live) at once, {b['rounds']}"
            f" rounds: server ms p50 {b['server_p50_ms']:.1f} p90 {b['server_p90_ms']:.1f} max"
            f" {b['server_max_ms']:.1f}; the round (last board up to date) p50"
            f" {b['round_p50_ms']:.1f} p90 {b['round_p90_ms']:.1f} max {b['round_max_ms']:.1f}"
        )


if __name__ == "__main__":
    main()
