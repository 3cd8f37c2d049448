"""Engines: built per process (after fork), never at import.

SQLite runs in WAL mode with a busy timeout; writers begin with ``BEGIN IMMEDIATE`` so two writers
never deadlock on a lock upgrade, while read-only units begin deferred. PostgreSQL uses psycopg 3.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from metawsm.errors import DatabaseUnreachable
from metawsm.settings import Settings, mask_url
from metawsm.storage import dbapi

READONLY = "metawsm_readonly"
PAGE_CACHE_KIB = dbapi.PAGE_CACHE_KIB  # the most SQLite caches per connection (see build_engine)


def normalize_url(url: str) -> str:
    """Map ``postgresql://`` to the psycopg 3 driver; leave other URLs as they are."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed.render_as_string(hide_password=False)


def masked_url(engine: Engine) -> str:
    """The URL of ``engine`` with its password masked; safe to print."""
    return mask_url(engine.url.render_as_string(hide_password=False))


@contextmanager
def connect(engine: Engine, *, readonly: bool = True) -> Iterator[Connection]:
    """A connection of ``engine``; read-only ones do not take SQLite's write lock.

    Raises:
        DatabaseUnreachable: the database cannot be connected to (URL masked, first line of
            the driver's reason).
    """
    try:
        connection = engine.connect()
    except OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        raise DatabaseUnreachable(
            f"cannot connect to the database at {masked_url(engine)}: {reason}"
        ) from exc
    with connection:
        yield connection.execution_options(**{READONLY: readonly})


def build_engine(settings: Settings, **kwargs: Any) -> Engine:
    """Create the engine for ``settings.database_url`` (creating the SQLite directory if needed)."""
    url = make_url(normalize_url(settings.database_url))
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url.render_as_string(hide_password=False), settings, **kwargs)
    opts: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 5, "max_overflow": 5}
    opts.update(kwargs)
    return create_engine(url, **opts)


def _sqlite_engine(url: str, settings: Settings, **kwargs: Any) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        from pathlib import Path

        try:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            where = make_url(url).render_as_string(hide_password=True)
            raise DatabaseUnreachable(f"cannot open the database at {where}: {exc}") from exc
    opts: dict[str, Any] = {
        "connect_args": {"timeout": settings.db_busy_timeout_ms / 1000, "check_same_thread": False},
        "poolclass": NullPool if database in (None, "", ":memory:") else None,
    }
    opts = {k: v for k, v in opts.items() if v is not None}
    opts.update(kwargs)
    engine = create_engine(url, **opts)
    busy_ms = settings.db_busy_timeout_ms

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control away from pysqlite so BEGIN IMMEDIATE is ours to emit.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # A page cache of up to 64 MiB per connection (SQLite's default is 2 MiB, filled as
        # pages are read, so a small database costs no more): the snapshot of 1,000 runs reads
        # more than 2 MiB of pages, and with the default it fetched them from the file again
        # on every call (docs/performance.md, "Snapshot at scale", session 11).
        cur.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READONLY, False):
            conn.exec_driver_sql("BEGIN")
        else:
            begin_immediate(conn, busy_ms)

    return engine


def begin_immediate(conn: Connection, busy_ms: int) -> None:
    """Take SQLite's write lock, polling every 0.5-2 ms for up to ``busy_ms``
    (:func:`metawsm.storage.dbapi.begin_immediate`, shared with the driver writes of the CLI).
    Still locked after ``busy_ms``: SQLAlchemy's OperationalError (the unit of work translates
    it to DatabaseBusy).
    """
    raw = conn.connection.dbapi_connection
    assert raw is not None
    if not dbapi.begin_immediate(raw, busy_ms):
        conn.exec_driver_sql("BEGIN IMMEDIATE")  # last try; raises wrapped if still locked
