"""Writing a whole read model at once, for the refills of ``projections rebuild``.

- :func:`insert_rows` sends rows straight to the driver's ``executemany`` in chunks, converting
  only the values whose column type converts them;
- :func:`indexes_dropped` drops a table's secondary indexes on SQLite while it is refilled and
  re-creates them from their own definitions after: SQLite builds an index from sorted keys
  at the end about twice as fast as it keeps it up to date through every insert.

Both work on the caller's connection, inside its transaction: a failure rolls back everything,
the dropped indexes included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from operator import itemgetter
from typing import Any

from sqlalchemy import Connection, Dialect, Table
from sqlalchemy.types import TypeEngine

from metawsm.storage.types import UTCDateTime, sqlite_utc_text

CHUNK_ROWS = 5_000

_INDEXES = (
    "SELECT name, sql FROM sqlite_master"
    " WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL ORDER BY name"
)


def insert_rows(
    conn: Connection,
    target: Table,
    columns: Sequence[str],
    rows: Iterator[dict[str, Any]],
    chunk_rows: int = CHUNK_ROWS,
) -> None:
    """Insert ``rows`` (dicts holding at least ``columns``) into ``target``, ``chunk_rows`` at
    a time.

    Straight to the driver's ``executemany``: each row's values taken in one step, and only
    those of a column whose type converts them passed through its bind processor (on SQLite a
    timestamp column through :func:`~metawsm.storage.types.sqlite_utc_text`, the same text in
    half the time). The same values the Core ``insert`` sends, without its per-row parameter
    handling.
    """
    dialect = conn.dialect
    marker = "?" if dialect.paramstyle == "qmark" else "%s"
    quote = dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(target.name)} ({', '.join(quote(c) for c in columns)})"
        f" VALUES ({', '.join([marker] * len(columns))})"
    )
    take = itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
    convert = [
        (i, f) for i, c in enumerate(columns) if (f := _bind_processor(target.c[c].type, dialect))
    ]

    def values(row: dict[str, Any]) -> tuple[Any, ...]:
        taken = list(take(row))
        for i, f in convert:
            taken[i] = f(taken[i])
        return tuple(taken)  # SQLAlchemy passes on a list of tuples only

    chunks = (list(map(values, chunk)) for chunk in _batched(rows, chunk_rows))
    for chunk in chunks:
        conn.exec_driver_sql(sql, chunk)


def _bind_processor(column_type: TypeEngine[Any], dialect: Dialect) -> Callable[[Any], Any] | None:
    if dialect.name == "sqlite" and isinstance(column_type, UTCDateTime):
        return sqlite_utc_text
    return column_type._cached_bind_processor(dialect)


def _batched(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    while chunk := list(islice(rows, size)):
        yield chunk


@contextmanager
def indexes_dropped(conn: Connection, target: Table) -> Iterator[None]:
    """Without ``target``'s secondary indexes for the body of the block, then with them again.

    SQLite only: the indexes are re-created by the statements that made them (read from the
    schema, so whatever the migrations made is what comes back). Elsewhere a no-op: on
    PostgreSQL ``DROP INDEX`` would lock every reader of the table out until the commit.
    """
    if conn.dialect.name != "sqlite":
        yield
        return
    indexes = conn.exec_driver_sql(_INDEXES, (target.name,)).all()
    quote = conn.dialect.identifier_preparer.quote
    for name, _ in indexes:
        conn.exec_driver_sql(f"DROP INDEX {quote(name)}")
    yield
    for _, create in indexes:
        conn.exec_driver_sql(create)
