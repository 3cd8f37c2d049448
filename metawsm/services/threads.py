"""Thread rows for command handlers: loaded and written with prebuilt Core statements.

Handlers change a :class:`ThreadRecord` like a plain object; :class:`ThreadStore` inserts new
threads at once and, at the end of the handler, writes each changed thread back in one
``UPDATE``. This is the hot path of every command: the ORM's identity map and flush cost ~10x
more per row here (docs/performance.md).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from metawsm.storage import tables

THREADS = tables.forum_threads
_INSERT = insert(THREADS)
_SELECT = select(THREADS).where(THREADS.c.thread_id == bindparam("tid"))


@dataclass
class ThreadRecord:
    """One ``forum_threads`` row as a mutable record (the columns, by name)."""

    thread_id: str
    ticket: str
    run_id: str | None
    agent_name: str | None
    title: str
    state: str
    priority: str
    assignee_type: str | None
    assignee_name: str | None
    opened_by_type: str
    opened_by_name: str
    is_control: bool
    last_thread_seq: int
    opened_at: datetime
    updated_at: datetime
    closed_at: datetime | None = None


COLUMNS = tuple(f.name for f in fields(ThreadRecord))
assert set(COLUMNS) == {c.name for c in THREADS.columns}, "ThreadRecord must mirror forum_threads"
# Every column but the key: one statement shape, so one compiled-cache entry.
_UPDATE = (
    update(THREADS)
    .where(THREADS.c.thread_id == bindparam("key"))
    .values({c: bindparam(c) for c in COLUMNS if c != "thread_id"})
)


class ThreadStore:
    """The threads one handler transaction touches, with their values as first seen."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._seen: dict[str, tuple[ThreadRecord, dict[str, Any]]] = {}

    def get(self, thread_id: str) -> ThreadRecord | None:
        """The thread, or None when there is no such row."""
        if thread_id in self._seen:
            return self._seen[thread_id][0]
        row = self._conn.execute(_SELECT, {"tid": thread_id}).first()
        if row is None:
            return None
        record = ThreadRecord(**row._asdict())
        self._seen[thread_id] = (record, _values(record))
        return record

    def insert(self, record: ThreadRecord) -> ThreadRecord:
        """Insert a new thread row now; later changes are written by :meth:`save`."""
        values = _values(record)
        self._conn.execute(_INSERT, values)
        self._seen[record.thread_id] = (record, values)
        return record

    def save(self) -> None:
        """Write back each thread that changed (one statement per changed thread)."""
        for record, before in self._seen.values():
            values = _values(record)
            if values != before:
                params = {k: v for k, v in values.items() if k != "thread_id"}
                self._conn.execute(_UPDATE, {"key": record.thread_id, **params})
                before.update(values)


def _values(record: ThreadRecord) -> dict[str, Any]:
    # A shallow copy: every column value is immutable (dataclasses.asdict deep-copies, 10x slower).
    return dict(vars(record))
