"""Counting the SQL statements one board request issues, in the process that serves it.

Statements through SQLAlchemy (an engine event) and straight on the driver (the ``Reader``
methods the board's reads use, wrapped for the block), from every thread: a request's reads run
in worker threads. The API's event follower polls the log meanwhile (one statement every 50 ms,
whatever the requests): its statement is recognised by its text and left out. ``BEGIN`` is not
counted (SQLite's engine emits it, psycopg's is implicit): the figure is the reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from metawsm.storage.dbapi import Reader

# The follower's poll (services/thread_reads.py events_after with no filter).
_FOLLOWER_TAIL = "FROM forum_events WHERE sequence > :cursor ORDER BY sequence LIMIT :limit"


@contextmanager
def counting(engine: Engine) -> Iterator[list[str]]:
    """The statements executed on ``engine`` while the block runs (the follower's left out)."""
    seen: list[str] = []

    def through_sqlalchemy(*args: Any) -> None:
        if args[2] != "BEGIN":
            seen.append(args[2])

    def wrapped(method: Any) -> Any:
        def run(self: Reader, sql: str, params: Any = None) -> Any:
            if not sql.endswith(_FOLLOWER_TAIL):
                seen.append(sql)
            return method(self, sql, params)

        return run

    originals = {name: getattr(Reader, name) for name in ("rows", "tuples", "execute")}
    event.listen(engine, "before_cursor_execute", through_sqlalchemy)
    for name, method in originals.items():
        setattr(Reader, name, wrapped(method))
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", through_sqlalchemy)
        for name, method in originals.items():
            setattr(Reader, name, method)


def statements_of(engine: Engine, action: Callable[[], object]) -> int:
    """How many statements one call of ``action`` issues on ``engine``."""
    with counting(engine) as seen:
        action()
    return len(seen)
