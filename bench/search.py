"""Reads at scale: ``forum list``, ``search --query``, the queues and a thread page, in-process.

    python bench/search.py --database sqlite:////tmp/copy-of-sqlite-100k.db [--repeat 30]
    python bench/search.py --database postgresql://postgres@127.0.0.1:5432/metawsm_scale_100k

Times the query functions the CLI calls (``metawsm.services.queries``) on an existing store, for
example one built by bench/scale_data.py (/work/scale-data/), and prints for each read the best
and median wall time over ``--repeat`` runs (after one warm-up), the SQL statements it issued,
and with ``--plans`` each statement's plan (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL
``EXPLAIN``). Whatever ``metawsm`` is importable is measured, so the same command run with
``PYTHONPATH`` on the code before a change and on the code after gives before/after numbers on
the same data (the store must be at that code's migration head: upgrade a copy for the after).
Nothing is written.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/search.py`

from metawsm.services import queries
from metawsm.settings import load_settings
from metawsm.storage.engine import build_engine
from metawsm.storage.models import ForumThreadRead, ForumThreadView

WORD = "kestrel"  # bench/scale_plan.py: in about 1 % of threads
COMMON = "flaky"  # one of the 32 words every post is made of
ANY = queries.ThreadFilter()


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, time every read, print the table (or JSON)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="URL of an existing store.")
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--plans", action="store_true", help="Print each statement's plan.")
    parser.add_argument("--json", action="store_true", help="One JSON object on stdout.")
    args = parser.parse_args(argv)
    engine = build_engine(load_settings(database_url=args.database))
    try:
        results = [measure(engine, name, read, args.repeat) for name, read in reads(engine)]
    finally:
        engine.dispose()
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'read':<46} {'best ms':>9} {'median ms':>10} {'stmts':>6} {'rows':>6}")
    for r in results:
        print(f"{r['read']:<46} {r['best_ms']:>9.2f} {r['median_ms']:>10.2f}"
              f" {r['statements']:>6} {r['rows']:>6}")  # fmt: skip
        for plan in r["plans"] if args.plans else []:
            print("    " + plan.replace("\n", "\n    "))


def reads(engine: Engine) -> list[tuple[str, Callable[[], Any]]]:
    """The reads of the issue's table, on this store's own tickets, viewers and threads."""
    ticket, viewer, big = _pick(engine)
    paged = "limit" in inspect.signature(queries.thread_detail).parameters
    page: dict[str, Any] = {"limit": 50} if paged else {}
    out: list[tuple[str, Callable[[], Any]]] = [
        ("forum list", lambda: queries.list_threads(engine, ANY, 50)),
        ("forum list --ticket", lambda: queries.list_threads(engine, _on(ticket), 50)),
        (f"forum search --query {WORD}", lambda: queries.search(engine, ANY, WORD)),
        (f"forum search --query {COMMON}", lambda: queries.search(engine, ANY, COMMON)),
        ("forum search --queue unanswered", lambda: _queue(engine, "unanswered", None)),
        ("forum search --queue unseen", lambda: _queue(engine, "unseen", viewer)),
    ]
    for thread_id, posts in big:
        label = f"forum thread ({posts} posts){' --limit 50' if paged else ''}"
        out.append((label, lambda t=thread_id: queries.thread_detail(engine, t, **page)))
    return out


def _queue(engine: Engine, queue: str, viewer: tuple[str, str] | None) -> Any:
    return queries.search(engine, ANY, viewer=viewer, queue=queue)


def _on(ticket: str) -> queries.ThreadFilter:
    return queries.ThreadFilter(ticket=ticket)


def _pick(engine: Engine) -> tuple[str, tuple[str, str], list[tuple[str, int]]]:
    """The busiest ticket, the viewer with the most seen marks, the two longest threads."""
    V, R = ForumThreadView, ForumThreadRead
    with engine.connect() as conn:
        ticket = conn.execute(
            select(V.ticket).group_by(V.ticket).order_by(func.count().desc()).limit(1)
        ).scalar()
        seen = conn.execute(
            select(R.viewer_type, R.viewer_id)
            .group_by(R.viewer_type, R.viewer_id)
            .order_by(func.count().desc())
            .limit(1)
        ).first()
        big = conn.execute(
            select(V.thread_id, V.posts_count).order_by(V.posts_count.desc()).limit(2)
        ).all()
    viewer = (seen[0], seen[1]) if seen else ("human", "hana")
    return str(ticket or ""), viewer, [(t, int(n)) for t, n in big]


def measure(engine: Engine, name: str, read: Callable[[], Any], repeat: int) -> dict[str, Any]:
    """Best and median wall ms of ``read``, the statements it issues and their plans."""
    statements: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        statements.append((sql, params))

    event.listen(engine, "before_cursor_execute", record)
    try:
        result = read()
    finally:
        event.remove(engine, "before_cursor_execute", record)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        read()
        times.append((time.perf_counter() - started) * 1000)
    rows = len(result["posts"]) if isinstance(result, dict) else len(result)
    return {
        "read": name,
        "best_ms": round(min(times), 3),
        "median_ms": round(statistics.median(times), 3),
        "statements": len(statements),
        "rows": rows,
        "plans": [_plan(engine, sql, params) for sql, params in statements],
    }


def _plan(engine: Engine, sql: str, params: Any) -> str:
    explain = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
    with engine.connect() as conn:
        rows = conn.exec_driver_sql(explain + sql, params).all()
    lines = [str(r[-1]) for r in rows]
    return sql.split()[0] + " ...\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
