"""Recording the SQL statements a block of code runs, through SQLAlchemy and straight on the
driver (:class:`metawsm.storage.dbapi.Reader`, whose statements SQLAlchemy's events do not see).

The one recorder of the benchmarks (statement counts, query plans) and of the tests that count
statements (``tests/fixtures/statements.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event

from metawsm.storage.dbapi import Reader

# Reader.scalar goes through rows.
DRIVER_METHODS = ("rows", "tuples", "execute")

Statement = tuple[str, dict[str, Any]]


@contextmanager
def recorded(
    engine: Engine, keep: Callable[[str], bool] = lambda _sql: True
) -> Iterator[list[Statement]]:
    """Every statement (in the driver's parameter style, with its parameters) run on ``engine``
    or through a ``Reader`` while the block runs, that ``keep`` keeps. The Reader's methods are
    wrapped, not replaced, and restored at the end; a statement from any thread is seen (a
    ``keep`` can tell threads apart)."""
    seen: list[Statement] = []

    def through_sqlalchemy(*args: Any) -> None:
        if keep(args[2]):
            seen.append((args[2], args[3]))

    def wrapped(method: Any) -> Any:
        def run(self: Reader, sql: str, params: Any = None) -> Any:
            if keep(sql):
                seen.append((self.native(sql), dict(params or {})))
            return method(self, sql, params)

        return run

    originals = {name: getattr(Reader, name) for name in DRIVER_METHODS}
    event.listen(engine, "before_cursor_execute", through_sqlalchemy)
    for name, method in originals.items():
        setattr(Reader, name, wrapped(method))
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", through_sqlalchemy)
        for name, method in originals.items():
            setattr(Reader, name, method)
