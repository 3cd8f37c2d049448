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
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/scale_data.py`

from bench.scale_build import (
    BUILDER_VERSION,
    DEAD_LETTERS,
    Shape,
    build_store,
    log,
)
from metawsm.settings import load_settings
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine, normalize_url

__all__ = ["DEAD_LETTERS", "Shape", "Store", "build_store", "log", "store", "upgrade_to_head"]

SIZES = {"1k": 1_000, "10k": 10_000, "100k": 100_000}
CACHE = Path(os.environ.get("METAWSM_SCALE_DATA", "/work/scale-data"))


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


def analyze(url: str) -> None:
    """Gather the planner's statistics of the copy: this machine's server runs with autovacuum
    off, so a built store has none, and without them PostgreSQL plans the unseen queue as a
    scan (~630 ms instead of ~2; docs/performance.md, "The board"). A server with autovacuum
    on (the default) gathers them as the tables grow."""
    engine = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    finally:
        engine.dispose()


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
    if len(set(big)) != len(big) or any(n < 1 for n in big):
        raise SystemExit("--big-posts: post counts must be distinct and at least 1 (big-<n>)")
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
