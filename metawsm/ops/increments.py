"""Counter increments without SQLAlchemy: what a writer adds to a series, and the statement that
adds it through a driver connection (:class:`metawsm.storage.dbapi.Reader`).

The command line accepts a command through the driver alone (services/accept.py); it counts the
acceptance in the same transaction, so this module must not import SQLAlchemy. The writers that
run inside a SQLAlchemy unit of work use :func:`metawsm.ops.counters.record`, the same upsert.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from metawsm.storage.dbapi import Reader

SHARDS = 8
BUCKET = ":bucket"
SUM = ":sum"
UPSERT_SQL = (
    "INSERT INTO ops_counters (name, labels, shard, value) VALUES ({p}, {p}, {p}, {p})"
    " ON CONFLICT (name, labels, shard) DO UPDATE SET value = ops_counters.value + excluded.value"
)
# The statement in each driver's parameter style (sqlite3: qmark, psycopg: format).
UPSERT_BY_STYLE = {"qmark": UPSERT_SQL.format(p="?"), "format": UPSERT_SQL.format(p="%s")}
UPSERT_BY_STYLE["pyformat"] = UPSERT_BY_STYLE["format"]


@dataclass(frozen=True)
class Increment:
    """Add ``value`` to the series ``name`` with canonical ``labels`` text."""

    name: str
    labels: str
    value: float


def label_text(**labels: str) -> str:
    """Canonical label text: ``a="x",b="y"`` sorted by name, values escaped as exposed."""
    return ",".join(f'{key}="{escape(value)}"' for key, value in sorted(labels.items()))


def escape(value: str) -> str:
    """A label value escaped for the text exposition format (backslash, quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def count(name: str, value: float = 1.0, **labels: str) -> Increment:
    """An increment of counter ``name``."""
    return Increment(name, label_text(**labels), value)


def merged_rows(increments: Iterable[Increment], shard: int) -> list[tuple[str, str, int, float]]:
    """One row per series of ``increments`` (values added), sorted: a fixed lock order."""
    merged: dict[tuple[str, str], float] = {}
    for inc in increments:
        key = (inc.name, inc.labels)
        merged[key] = merged.get(key, 0.0) + inc.value
    return [(name, labels, shard, value) for (name, labels), value in sorted(merged.items())]


def shard_of(dialect: str) -> int:
    """This process's shard of a series: by pid on PostgreSQL, 0 on SQLite (one writer)."""
    return os.getpid() % SHARDS if dialect == "postgresql" else 0


def record_on_reader(db: Reader, increments: Iterable[Increment]) -> None:
    """Add ``increments`` to their series in the transaction of the driver connection ``db``."""
    rows = merged_rows(increments, shard_of(db.dialect))
    if not rows:
        return
    from metawsm.storage.dbapi import driver_errors  # the driver layer, no SQLAlchemy

    statement = UPSERT_BY_STYLE["qmark" if db.dialect == "sqlite" else "format"]
    # A failed count is a transient error of the write it belongs to (rolled back with it).
    with driver_errors():
        cursor = db.raw.cursor()
        try:
            cursor.executemany(statement, rows)
        finally:
            cursor.close()
