"""Build (once) and cache the datasets of bench/scale.py, through the product's own write path.

    python bench/scale_data.py --sizes 1k,10k,100k [--database sqlite|postgresql://...]
    python bench/scale_data.py --threads 50 --runs 5 --out /tmp/tiny.db   # any shape

A dataset of size N holds N forum threads (bench/scale_plan.py says what they look like), one
thread with 1,000 posts and one with 10,000, 1,000 runs with two agents each and their control
threads, escalations raised by the SLA pass (``escalation.raise_due``) run with the clock moved
three hours past the last command, a viewer's seen marks on 30 % of threads, and 20 dead
letters (invalid and never-accepted command messages). Every command is submitted and applied,
and every event delivered to its subscribers, by the product's functions in this one process
(bench/scale_pipeline.py); the clock is simulated, so the content is the same for a given seed
(ids are random).

Cache: SQLite stores are ``/work/scale-data/sqlite-<size>.db`` (``--cache`` to change), each with
``<name>.json``, its manifest (shape, counts, build time and events/s, code version, migration
head). PostgreSQL stores are databases ``metawsm_scale_<size>`` on the server ``--database``
names, with the manifest ``postgresql-<size>.json`` in the cache directory. A store is built in
a temporary file or database and renamed when complete, so a half-built store is never used. A
cached store whose migration head is behind the code's is upgraded with ``metawsm db upgrade``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/scale_data.py`

from bench.scale_pipeline import Pipeline, SimClock
from bench.scale_plan import (
    SEARCH_WORD,
    Step,
    interleave,
    run_script,
    sentence,
    thread_script,
    ticket_name,
)
from metawsm import __version__
from metawsm.messages.common import Actor
from metawsm.services.delivery import Delivery, deliver_command
from metawsm.services.escalation import raise_due
from metawsm.services.queries import mark_seen
from metawsm.services.runs import create_run
from metawsm.services.submit import make_command
from metawsm.settings import load_settings
from metawsm.storage import migrate
from metawsm.storage import models as m
from metawsm.storage.engine import build_engine, normalize_url

SIZES = {"1k": 1_000, "10k": 10_000, "100k": 100_000}
CACHE = Path(os.environ.get("METAWSM_SCALE_DATA", "/work/scale-data"))
BUILDER_VERSION = 1  # bump when the content changes: cached stores of another version are rebuilt
START = datetime(2026, 9, 1, tzinfo=UTC)
SPAN = timedelta(days=30)  # the simulated activity is spread over this long
CHUNK = 200  # threads opened, then worked on, together
BIG_THREADS = (1_000, 10_000)
VIEWER = ("human", "hana")
DEAD_LETTERS = 20


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[scale-data {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Shape:
    """What to build: forum threads, runs (two agents each), posts of the big threads, seed."""

    threads: int
    runs: int = 1_000
    big_threads: tuple[int, ...] = BIG_THREADS
    seed: int = 12

    def estimated_commands(self) -> int:
        """About how many commands the dataset takes (to spread the simulated clock)."""
        return self.threads * 4 + self.runs * 8 + sum(self.big_threads) + 1


# ------------------------------------------------------------------------------- building


class Builder:
    """Applies a :class:`Shape` to a migrated, empty database through :class:`Pipeline`."""

    def __init__(self, engine: Engine, shape: Shape) -> None:
        settings = load_settings(database_url=engine.url.render_as_string(hide_password=False))
        step_s = SPAN.total_seconds() / shape.estimated_commands()
        self.clock = SimClock(START, step_s)
        self.pipeline = Pipeline(engine, settings, self.clock)
        self.shape = shape
        self.rng = random.Random(shape.seed)
        self.tickets = max(20, shape.threads // 20)
        self.commands = 0
        self.started = time.monotonic()
        self.facts: dict[str, Any] = {"search_word": SEARCH_WORD}

    def build(self) -> dict[str, Any]:
        """Build everything; returns facts for the manifest (ids worth measuring, timings)."""
        run_ids = self._create_runs()
        big = self._open_big_threads()
        chunks = max(1, -(-self.shape.threads // CHUNK))
        for k in range(chunks):
            self._chunk(k, chunks, run_ids, big)
        self._dead_letters(run_ids)
        escalations = self._sla_pass()
        elapsed = time.monotonic() - self.started
        events = self.pipeline.events_projected
        self.facts |= {
            "run_ids_sample": run_ids[:10],
            "big_threads": {str(n): t for t, n in big.items()},
            "escalations_raised": escalations,
            "build_s": round(elapsed, 1),
            "commands_submitted": self.commands,
            "events_per_s": round(events / elapsed, 1) if elapsed else None,
            "outcomes": dict(self.pipeline.outcomes),
            "simulated_until": self.clock.now.isoformat(),
        }
        return self.facts

    def step(self, step: Step) -> None:
        """Submit one step's command and deliver everything it leads to."""
        command = make_command(
            step.command_type, step.payload, actor_type=step.actor_type, actor_name=step.actor_name
        )
        self.pipeline.run(command)
        self.commands += 1
        if self.commands % 5_000 == 0:
            self._progress()

    def _progress(self) -> None:
        elapsed = time.monotonic() - self.started
        events = self.pipeline.events_projected
        log(
            f"{self.commands} commands, {events} events in {elapsed:.0f} s"
            f" ({self.commands / elapsed:.0f} commands/s, {events / elapsed:.0f} events/s)"
        )

    def _create_runs(self) -> list[str]:
        operator = Actor(type="operator", name="op-1")
        run_ids = []
        for r in range(self.shape.runs):
            ticket = ticket_name(r % self.tickets)
            rt = self.pipeline.rt
            run_ids.append(
                create_run(
                    rt, tickets=[ticket], agents=["agent-a", "agent-b"], mode="run", brief=None,
                    actor=operator,
                )
            )  # fmt: skip
            self.pipeline.drain()
            self.clock.tick()
        log(f"{len(run_ids)} runs created")
        return run_ids

    def _open_big_threads(self) -> dict[str, int]:
        big = {}
        for n, posts in enumerate(self.shape.big_threads):
            thread_id = f"big-{posts}"
            payload = {"thread_id": thread_id, "ticket": ticket_name(n), "title": f"{posts} posts"}
            self.step(Step("open_thread", payload | {"body": sentence(self.rng)}, "human", "hana"))
            big[thread_id] = posts
        return big

    def _chunk(self, k: int, chunks: int, run_ids: list[str], big: dict[str, int]) -> None:
        """Threads of chunk ``k`` and their share of the runs' signals and big threads' posts."""
        rng, shape = self.rng, self.shape
        first, last = k * CHUNK, min(shape.threads, (k + 1) * CHUNK)
        scripts = []
        for i in range(first, last):
            run = None
            if rng.random() < 0.05:
                run = (run_ids[i % len(run_ids)], rng.choice(("agent-a", "agent-b")))
            scripts.append(thread_script(rng, f"th-{i}", ticket_name(i % self.tickets), run))
        share = slice(k * len(run_ids) // chunks, (k + 1) * len(run_ids) // chunks)
        scripts += [run_script(rng, run_id) for run_id in run_ids[share]]
        for thread_id, posts in big.items():
            n = (k + 1) * posts // chunks - k * posts // chunks
            body = {"thread_id": thread_id}
            scripts.append([Step("add_post", body | {"body": sentence(rng)}, "agent", "alice")] * n)
        for step in interleave(scripts):
            self.step(step)
        for i in range(first, last):
            if rng.random() < 0.3:
                mark_seen(self.pipeline.rt.engine, f"th-{i}", *VIEWER)

    def _dead_letters(self, run_ids: list[str]) -> None:
        """Command messages a worker dead-letters: invalid ones (naming a run), never accepted."""
        rt, bus = self.pipeline.rt, self.pipeline.bus
        topic = rt.topics.command("control_signal")
        logging.getLogger("metawsm.delivery").setLevel(logging.CRITICAL)  # expected: not news
        for n in range(DEAD_LETTERS):
            if n % 2 == 0:  # invalid: the signal is missing; the dead letter names the run
                raw: dict[str, Any] = {
                    "command_id": f"cmd-invalid-{n}",
                    "command_type": "control_signal",
                    "payload": {"run_id": run_ids[n % len(run_ids)], "agent_name": "agent-a"},
                }
            else:  # valid, but never submitted through metawsm (no ledger row)
                raw = make_command(
                    "add_post", {"thread_id": "th-0", "body": "x"}, actor_type="agent",
                    actor_name="stranger",
                ).model_dump(mode="json")  # fmt: skip
            result = deliver_command(rt, bus, raw, Delivery(str(raw["command_id"]), topic, False))
            assert result.dead, result
        log(f"{DEAD_LETTERS} dead letters")

    def _sla_pass(self) -> int:
        """The beat's SLA pass with the clock three hours past the last command."""
        self.clock.now += timedelta(hours=3)
        raised = raise_due(self.pipeline.rt, now=self.clock.now)
        self.pipeline.drain()
        log(f"SLA pass raised {raised} escalations")
        return raised


# -------------------------------------------------------------------------------- counting


def count_store(engine: Engine) -> dict[str, Any]:
    """What the store holds (the manifest's counts)."""
    view, run = m.ForumThreadView, m.Run
    with engine.connect() as conn:

        def n(stmt: Any) -> int:
            return int(conn.execute(stmt).scalar_one())

        def by(col: Any) -> dict[str, int]:
            return {
                str(k): int(v) for k, v in conn.execute(select(col, func.count()).group_by(col))
            }

        def by_state(conn: Any) -> dict[str, int]:
            rows = conn.execute(
                select(view.state, func.count())
                .where(view.is_control.is_(False))
                .group_by(view.state)
            )
            return {str(k): int(v) for k, v in rows}

        return {
            "threads": n(select(func.count()).where(view.is_control.is_(False))),
            "control_threads": n(select(func.count()).where(view.is_control.is_(True))),
            "threads_by_state": by_state(conn),
            "events": n(select(func.count()).select_from(m.ForumEvent)),
            "posts": n(select(func.count()).select_from(m.ForumPost)),
            "runs": n(select(func.count()).select_from(run)),
            "runs_by_status": by(run.status),
            "run_agents": n(select(func.count()).select_from(m.RunAgent)),
            "escalations": n(select(func.count()).select_from(m.ForumEscalation)),
            "dead_letters": n(select(func.count()).select_from(m.ForumDeadLetter)),
            "commands_by_status": by(m.ForumCommand.status),
            "outbox_by_status": by(m.ForumOutbox.status),
            "seen_marks": n(select(func.count()).select_from(m.ForumThreadRead)),
        }


def code_version() -> str:
    """The package version and the git commit of the code that built the store."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return f"{__version__}+{done.stdout.strip() or 'unknown'}"


def build_store(url: str, shape: Shape) -> dict[str, Any]:
    """Migrate the empty database at ``url``, build ``shape`` into it, return its manifest."""
    engine = build_engine(load_settings(database_url=url))
    try:
        migrate.upgrade(engine)
        log(f"building {shape} into {migrate.masked_url(engine)}")
        facts = Builder(engine, shape).build()
        counts = count_store(engine)
        head = migrate.current_revision(engine)
    finally:
        engine.dispose()
    log(f"built: {counts['events']} events, {facts['events_per_s']} events/s")
    return {
        "builder_version": BUILDER_VERSION,
        "shape": asdict(shape),
        "counts": counts,
        "facts": facts,
        "code_version": code_version(),
        "migration_head": head,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


# ---------------------------------------------------------------------------------- caching


@dataclass(frozen=True)
class Store:
    """A cached dataset: its database URL and manifest."""

    size: str
    url: str
    manifest: dict[str, Any]


def manifest_path(dialect: str, size: str, cache: Path = CACHE) -> Path:
    """Where the manifest of ``dialect``'s store of ``size`` lives."""
    return cache / f"{dialect}-{size}.json"


def read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest at ``path`` when it is of this builder version, else None."""
    if not path.exists():
        return None
    manifest: dict[str, Any] = json.loads(path.read_text())
    return manifest if manifest.get("builder_version") == BUILDER_VERSION else None


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    """Write ``manifest`` as indented JSON (atomically)."""
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    tmp.replace(path)


def sqlite_store(size: str, shape: Shape, *, cache: Path = CACHE, force: bool = False) -> Store:
    """The cached SQLite store of ``size`` (built first when missing or stale)."""
    cache.mkdir(parents=True, exist_ok=True)
    path, mpath = cache / f"sqlite-{size}.db", manifest_path("sqlite", size, cache)
    manifest = None if force else read_manifest(mpath)
    if manifest is None or not path.exists():
        building = cache / f"sqlite-{size}.building.db"
        for leftover in cache.glob(f"sqlite-{size}.building.db*"):
            leftover.unlink()
        manifest = build_store(f"sqlite:///{building}", shape)
        _checkpoint(building)
        building.replace(path)
        write_manifest(mpath, manifest)
    return Store(size, f"sqlite:///{path}", manifest)


def _checkpoint(path: Path) -> None:
    """Fold the WAL into the file, so the one file is the whole store."""
    engine = create_engine(f"sqlite:///{path}", poolclass=NullPool)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.exec_driver_sql("PRAGMA journal_mode=DELETE")
    engine.dispose()


def admin_engine(server_url: str) -> Engine:
    """An AUTOCOMMIT engine on the PostgreSQL server of ``server_url`` (CREATE/DROP DATABASE)."""
    url = make_url(normalize_url(server_url))
    if url.get_backend_name() != "postgresql":
        raise SystemExit("--database must be 'sqlite' or a postgresql:// URL")
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


def database_url(server_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``server_url``."""
    url = make_url(normalize_url(server_url)).set(database=name)
    return url.render_as_string(hide_password=False)


def database_exists(admin: Engine, name: str) -> bool:
    """Whether the server has a database called ``name``."""
    with admin.connect() as conn:
        found = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
        return found.first() is not None


def drop_database(admin: Engine, name: str) -> None:
    """Drop database ``name`` (ending its sessions first) if it exists."""
    with admin.connect() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = :n AND pid <> pg_backend_pid()"
            ),
            {"n": name},
        )
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}"')


def postgres_store(
    server_url: str, size: str, shape: Shape, *, cache: Path = CACHE, force: bool = False
) -> Store:
    """The cached PostgreSQL store ``metawsm_scale_<size>`` (built first when missing/stale)."""
    cache.mkdir(parents=True, exist_ok=True)
    name, mpath = f"metawsm_scale_{size}", manifest_path("postgresql", size, cache)
    admin = admin_engine(server_url)
    try:
        manifest = None if force else read_manifest(mpath)
        if manifest is None or not database_exists(admin, name):
            building = f"{name}_building"
            drop_database(admin, building)
            with admin.connect() as conn:
                conn.exec_driver_sql(f'CREATE DATABASE "{building}"')
                # The builder's commits need not wait for the disk (a crash means a rebuild);
                # the product code and what it writes are the same.
                conn.exec_driver_sql(f'ALTER DATABASE "{building}" SET synchronous_commit = off')
            manifest = build_store(database_url(server_url, building), shape)
            drop_database(admin, name)
            with admin.connect() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{building}" RESET synchronous_commit')
                conn.exec_driver_sql(f'ALTER DATABASE "{building}" RENAME TO "{name}"')
            write_manifest(mpath, manifest)
    finally:
        admin.dispose()
    return Store(size, database_url(server_url, name), manifest)


class NotCached(Exception):
    """The store is not cached and building it was not asked for."""


def store(
    database: str,
    size: str,
    shape: Shape | None = None,
    *,
    force: bool = False,
    build: bool = True,
) -> Store:
    """The cached store of ``size`` on ``database`` ('sqlite' or a postgresql:// server URL).

    Raises:
        NotCached: it is not cached (or stale) and ``build`` is false.
    """
    shape = shape or Shape(SIZES[size])
    if not build and not is_cached(database, size):
        raise NotCached(f"no cached {size} store for {database}: run bench/scale_data.py")
    if database == "sqlite":
        return sqlite_store(size, shape, force=force)
    return postgres_store(database, size, shape, force=force)


def is_cached(database: str, size: str, cache: Path = CACHE) -> bool:
    """Whether a complete store of ``size`` is cached for ``database``."""
    if database == "sqlite":
        found = (cache / f"sqlite-{size}.db").exists()
        return found and read_manifest(manifest_path("sqlite", size, cache)) is not None
    if read_manifest(manifest_path("postgresql", size, cache)) is None:
        return False
    admin = admin_engine(database)
    try:
        return database_exists(admin, f"metawsm_scale_{size}")
    finally:
        admin.dispose()


def upgrade_to_head(url: str) -> str | None:
    """Bring a (copied) store to the code's migration head with ``metawsm db upgrade``.

    Returns the revision it was at when an upgrade was needed, else None.

    Raises:
        RuntimeError: the upgrade failed (its output says why).
    """
    engine = build_engine(load_settings(database_url=url))
    try:
        current = migrate.current_revision(engine)
    finally:
        engine.dispose()
    if current == migrate.head_revision():
        return None
    env = {**os.environ, "METAWSM_DATABASE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "metawsm", "db", "upgrade"], env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"metawsm db upgrade failed: {done.stderr.strip()}")
    log(f"upgraded a copy of the store from {current} to {migrate.head_revision()}")
    return current


# ------------------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description="Build and cache the scale datasets.")
    p.add_argument("--sizes", default="1k,10k", help="comma-separated of 1k, 10k, 100k (1k,10k)")
    p.add_argument("--database", default="sqlite", help="sqlite, or a postgresql:// server URL")
    p.add_argument("--force", action="store_true", help="rebuild even when cached")
    p.add_argument("--threads", type=int, help="a custom shape: forum threads (with --out)")
    p.add_argument("--runs", type=int, default=1_000, help="runs of a custom shape (1000)")
    p.add_argument("--big-posts", default="1000,10000", help="posts of the big threads")
    p.add_argument("--seed", type=int, default=12)
    p.add_argument("--out", help="custom shape: a database URL (empty, or a new SQLite file)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the asked stores; print each manifest as a JSON line on stdout."""
    args = parse_args(argv)
    big = tuple(int(n) for n in args.big_posts.split(",") if n)
    if args.threads is not None or args.out:
        if args.threads is None or not args.out:
            raise SystemExit("--threads and --out go together")
        url = args.out if "://" in args.out else f"sqlite:///{Path(args.out).resolve()}"
        manifest = build_store(url, Shape(args.threads, args.runs, big, args.seed))
        print(json.dumps(manifest, default=str))
        return 0
    for size in args.sizes.split(","):
        if size not in SIZES:
            raise SystemExit(f"--sizes: {size!r} is not one of {', '.join(SIZES)}")
        shape = Shape(SIZES[size], args.runs, big, args.seed)
        found = store(args.database, size, shape, force=args.force)
        print(json.dumps({"size": size, "url": found.url, **found.manifest}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
