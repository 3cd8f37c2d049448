"""Reads straight through the database driver (sqlite3, psycopg 3), without SQLAlchemy.

A command-line read is a new process; importing SQLAlchemy and the ORM models costs it ~300-500
ms of CPU, the driver alone a few ms (docs/performance.md, "Command-line start-up"). The reads
the CLI makes most (services/thread_reads.py, services/record_reads.py) run their SQL text here,
in one read-only transaction, and convert values by the rules of the column types
(:func:`utc`, :func:`flag`, :func:`json_value`: what ``storage/types.py`` and SQLAlchemy's
Boolean and JSON types do on each backend).

SQL is written with ``:name`` parameters; on PostgreSQL they become ``%(name)s``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from metawsm import url_parts
from metawsm.errors import DatabaseBusy, DatabaseUnreachable
from metawsm.settings import Settings, mask_url

# A ``:name`` parameter, as SQLAlchemy's text() finds them (``:punct:`` in a regex is not one).
_NAMED = re.compile(r"(?<![:\w\\]):(\w+)(?![:\w])")
SQLITE_SCHEMES = ("sqlite", "sqlite+pysqlite")
MIN_LOCK_POLL_S = 0.0005
MAX_LOCK_POLL_S = 0.002
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")
PAGE_CACHE_KIB = 64 * 1024  # the most SQLite caches per connection, ours and the engine's


class Reader:
    """A driver connection inside one read-only transaction, and the name of its dialect."""

    # A plain class, not a dataclass: making a dataclass costs ~1 ms at import (it compiles
    # its methods), and every command line process imports this (docs/performance.md).
    __slots__ = ("dialect", "raw")

    def __init__(self, raw: Any, dialect: str) -> None:
        self.raw = raw
        self.dialect = dialect

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every row of ``sql`` (``:name`` parameters) as a dict keyed by column name."""
        cursor = self.raw.cursor()
        try:
            cursor.execute(self.native(sql), dict(params or {}))
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def tuples(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Every row of ``sql`` (``:name`` parameters) as the driver's tuple (no names: for
        reads of thousands of rows, where a dict per row costs)."""
        cursor = self.raw.cursor()
        try:
            cursor.execute(self.native(sql), dict(params or {}))
            return list(cursor.fetchall())
        finally:
            cursor.close()

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run one statement that returns no rows; the number of rows it changed."""
        cursor = self.raw.cursor()
        try:
            cursor.execute(self.native(sql), dict(params or {}))
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def json(self, value: Any) -> Any:
        """``value`` bound for a JSON column as SQLAlchemy's JSON type binds it (``json.dumps``
        text on SQLite, psycopg's ``Json`` wrapper, which uses ``json.dumps``, on PostgreSQL)."""
        if self.dialect == "sqlite":
            return json.dumps(value)
        from psycopg.types.json import Json

        return Json(value)

    def time(self, value: datetime | None) -> Any:
        """An aware timestamp bound as ``storage.types.UTCDateTime`` binds it (SQLite: naive
        UTC text in SQLAlchemy's format; PostgreSQL: the aware value)."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; metawsm stores aware UTC timestamps only")
        value = value.astimezone(UTC)
        if self.dialect != "sqlite":
            return value
        return value.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")

    def scalar(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row of ``sql`` (None when there is no row)."""
        rows = self.rows(sql, params)
        return next(iter(rows[0].values())) if rows else None

    def native(self, sql: str) -> str:
        """``sql`` in the driver's parameter style."""
        if self.dialect == "sqlite":
            return sql
        return _NAMED.sub(r"%(\1)s", sql.replace("%", "%%"))


def on_connection(connection: Any) -> Reader:
    """A :class:`Reader` on the driver connection under a SQLAlchemy ``Connection`` (in its
    transaction): code written against the driver runs inside a SQLAlchemy unit of work too."""
    raw = connection.connection.dbapi_connection
    assert raw is not None, "the connection is closed"
    return Reader(raw, connection.dialect.name)


def direct_target(url: str) -> tuple[str, str] | None:
    """(dialect, what the driver connects to) of a database URL, or None when this layer does
    not open that kind of URL itself (then the caller uses SQLAlchemy's engine).

    SQLite: a file path that exists (a missing file is left to the engine, which creates it
    and explains the missing schema). PostgreSQL: the URL without the driver name.
    """
    scheme = url_parts.scheme(url)
    if scheme in SQLITE_SCHEMES:
        path = url.split("://", 1)[1][1:]  # sqlite:///<path>
        if "%" in path:  # percent-encoded (rare: urllib.parse is not imported otherwise)
            from urllib.parse import unquote

            path = unquote(path)
        if url_parts.query(url) or path in ("", ":memory:") or not os.path.isfile(path):
            return None
        return "sqlite", path
    if scheme in POSTGRES_SCHEMES:
        return "postgresql", "postgresql://" + url.split("://", 1)[1]
    return None


@contextmanager
def write_transaction(settings: Settings) -> Iterator[Reader]:
    """A :class:`Reader` on ``settings.database_url`` in one writing transaction, committed
    when the block succeeds and rolled back otherwise (SQLite: ``BEGIN IMMEDIATE``, taken as
    the engine takes it, :func:`begin_immediate`).

    Raises:
        ValueError: the URL is not one :func:`direct_target` opens.
        DatabaseUnreachable: the database cannot be connected to (URL masked).
        DatabaseBusy: the write lock was not free in time, or the driver failed a statement.
    """
    target = direct_target(settings.database_url)
    if target is None:
        raise ValueError("not a database this layer opens directly")
    dialect, where = target
    raw = _connect_sqlite(where, settings) if dialect == "sqlite" else _connect_postgres(where)
    try:
        with driver_errors():
            if dialect == "sqlite" and not begin_immediate(raw, settings.db_busy_timeout_ms):
                raw.execute("BEGIN IMMEDIATE")  # last try: raises "database is locked"
            yield Reader(raw, dialect)
            raw.commit()
    finally:
        try:
            raw.rollback()  # nothing left to roll back after a commit
        finally:
            raw.close()


def begin_immediate(raw: Any, busy_ms: int) -> bool:
    """Try to take SQLite's write lock on driver connection ``raw``, polling every 0.5-2 ms
    for up to ``busy_ms``; True once taken, False when still locked (or another error: the
    caller's last ``BEGIN IMMEDIATE`` raises it).

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... ms between tries: with write
    transactions of well under a millisecond, a waiter sleeps long after the lock came free (the
    lock sits idle, tails grow: docs/performance.md). Polling finds it free soon after. The
    connection's busy timeout is 0 for the tries only, so every other statement keeps SQLite's
    handler.
    """
    import sqlite3
    import time

    deadline = time.monotonic() + busy_ms / 1000
    pause = MIN_LOCK_POLL_S
    raw.execute("PRAGMA busy_timeout=0")
    try:
        while time.monotonic() < deadline:
            try:
                raw.execute("BEGIN IMMEDIATE")
                return True
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc):
                    return False  # not contention: the caller's last try raises it
            time.sleep(pause)  # waiting for another process's lock; no event to wait on
            pause = min(pause * 1.5, MAX_LOCK_POLL_S)
        return False
    finally:
        raw.execute(f"PRAGMA busy_timeout={int(busy_ms)}")


@contextmanager
def read_transaction(settings: Settings, *, repeatable: bool = False) -> Iterator[Reader]:
    """A :class:`Reader` on ``settings.database_url`` in one read-only transaction.

    ``repeatable``: every statement sees the same state of the database (REPEATABLE READ on
    PostgreSQL, for reads of several statements such as the snapshot; SQLite's read
    transaction already does).

    Raises:
        ValueError: the URL is not one :func:`direct_target` opens.
        DatabaseUnreachable: the database cannot be connected to (URL masked).
        DatabaseBusy: the driver failed a statement (locked, or any other driver error).
    """
    target = direct_target(settings.database_url)
    if target is None:
        raise ValueError("not a database this layer opens directly")
    dialect, where = target
    raw = _connect_sqlite(where, settings) if dialect == "sqlite" else _connect_postgres(where)
    try:
        with driver_errors():
            if dialect == "sqlite":
                raw.execute("BEGIN")  # deferred: a snapshot for the reads, no write lock
            elif repeatable:
                raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield Reader(raw, dialect)
    finally:
        try:
            raw.rollback()
        finally:
            raw.close()


def connect(settings: Settings) -> tuple[Any, str]:
    """A driver connection to ``settings.database_url`` and its dialect name, set up as the
    engine sets its connections up (SQLite: no implicit transactions, busy timeout, pragmas).

    Raises:
        ValueError: the URL is not one :func:`direct_target` opens.
        DatabaseUnreachable: the database cannot be connected to (URL masked).
    """
    target = direct_target(settings.database_url)
    if target is None:
        raise ValueError("not a database this layer opens directly")
    dialect, where = target
    raw = _connect_sqlite(where, settings) if dialect == "sqlite" else _connect_postgres(where)
    return raw, dialect


def _connect_sqlite(path: str, settings: Settings) -> Any:
    import sqlite3

    try:
        raw = sqlite3.connect(path, timeout=settings.db_busy_timeout_ms / 1000)
    except sqlite3.Error as exc:
        raise _unreachable(settings, exc) from exc
    raw.isolation_level = None  # our BEGIN, as the engine does (storage/engine.py)
    # The engine's connection settings (WAL is a property of the file, set by the engine).
    raw.execute(f"PRAGMA busy_timeout={int(settings.db_busy_timeout_ms)}")
    raw.execute("PRAGMA synchronous=NORMAL")
    raw.execute("PRAGMA foreign_keys=ON")
    # The engine's page cache of up to 64 MiB too (grown as pages are read): a one-shot read of
    # 1,000 runs reads more than the default 2 MiB of pages, and each statement of it would
    # fetch again from the file what an earlier one read (storage/engine.py).
    raw.execute(f"PRAGMA cache_size=-{PAGE_CACHE_KIB}")
    return raw


def _connect_postgres(url: str) -> Any:
    import psycopg

    try:
        return psycopg.connect(url)
    except psycopg.OperationalError as exc:
        # Named as the engine names it (storage/engine.py normalize_url), as before.
        shown = "postgresql+psycopg://" + url.split("://", 1)[1]
        raise _unreachable_url(shown, exc) from exc


def _unreachable(settings: Settings, exc: BaseException) -> DatabaseUnreachable:
    return _unreachable_url(settings.database_url, exc)


def _unreachable_url(url: str, exc: BaseException) -> DatabaseUnreachable:
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "connection failed"
    return DatabaseUnreachable(f"cannot connect to the database at {mask_url(url)}: {reason}")


@contextmanager
def driver_errors() -> Iterator[None]:
    """Driver errors of a statement as metawsm's transient errors (as storage/uow.py does)."""
    try:
        yield
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in ("sqlite3", "psycopg"):
            raise
        message = str(exc).strip().splitlines()[0][:500] if str(exc).strip() else repr(exc)
        if "locked" in message.lower() or "busy" in message.lower():
            raise DatabaseBusy(f"database busy: {message}") from exc
        raise DatabaseBusy(f"database error: {message}") from exc


def utc(value: str | datetime | None) -> datetime | None:
    """A stored timestamp as aware UTC (SQLite: naive text; PostgreSQL: aware), as
    ``storage.types.UTCDateTime`` reads it."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: str | datetime | None) -> str | None:
    """A stored timestamp as ``datetime.isoformat()`` of its aware UTC value."""
    moment = utc(value)
    return None if moment is None else moment.isoformat()


def flag(value: Any) -> bool | None:
    """A stored boolean (SQLite: 0/1) as bool."""
    return None if value is None else bool(value)


def json_value(value: Any, dialect: str) -> Any:
    """A stored JSON column (SQLite: text; PostgreSQL: decoded by psycopg) as Python data."""
    return json.loads(value) if dialect == "sqlite" and value is not None else value


def placeholders(prefix: str, values: Sequence[Any]) -> tuple[str, dict[str, Any]]:
    """``:p0, :p1, ...`` for an ``IN (...)`` list, and their parameters."""
    params = {f"{prefix}{i}": v for i, v in enumerate(values)}
    return ", ".join(f":{name}" for name in params), params
