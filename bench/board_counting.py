"""Counting the SQL statements one board request issues, in the process that serves it.

Statements through SQLAlchemy and straight on the driver (bench/statements.py), from every
thread: a request's reads run in worker threads. The API's event follower polls the log
meanwhile (one statement every 50 ms, whatever the requests): its statement is recognised by its
text and left out. ``BEGIN`` is not counted (SQLite's engine emits it, psycopg's is implicit):
the figure is the reads.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine

from bench.statements import recorded

# The follower's poll (services/thread_reads.py events_after with no filter).
_FOLLOWER_TAIL = "FROM forum_events WHERE sequence > :cursor ORDER BY sequence LIMIT :limit"


def _a_read(sql: str) -> bool:
    return sql != "BEGIN" and not sql.endswith(_FOLLOWER_TAIL)


def statements_of(engine: Engine, action: Callable[[], object]) -> int:
    """How many statements one call of ``action`` issues on ``engine``."""
    with recorded(engine, _a_read) as seen:
        action()
    return len(seen)
