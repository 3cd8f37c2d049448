"""The store of bench/board.py: issue 16's shape, built by the scale datasets' builder.

10,000 forum threads and 100 runs (two agents each, their control threads carrying guidance
requests, a fifth of them still pending, completions and validations, so most runs have unmet
gates), one thread of 1,000 posts (``big-1000``), the seen marks of ``human/hana`` on 30 % of
threads, dead letters and escalations: bench/scale_build.py's content (bench/scale_plan.py),
written through the product's own write path in-process (bench/scale_pipeline.py). Cached under
``/work/board-bench-data/`` (SQLite) or as a database of the given PostgreSQL server, and only
ever measured on a scratch copy (the bench writes its tokens and seen marks).
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.scale_build import Shape
from bench.scale_data import (
    admin_engine,
    analyze,
    database_url,
    drop_database,
    postgres_store,
    sqlite_store,
    upgrade_to_head,
)

CACHE = Path("/work/board-bench-data")
BIG_POSTS = 1_000
VIEWER = "hana"  # the human whose seen marks the builder writes (bench/scale_build.py)


def label(threads: int, runs: int) -> str:
    """The cache's name for a shape: ``10k-100r``."""
    size = f"{threads // 1000}k" if threads % 1000 == 0 else str(threads)
    return f"{size}-{runs}r"


def cached_store(database: str, threads: int, runs: int, cache: Path = CACHE) -> str:
    """The URL of the cached store of this shape ('sqlite' or a postgresql:// server URL),
    built first when missing (minutes: see bench/README.md)."""
    shape = Shape(threads, runs, (BIG_POSTS,))
    name = label(threads, runs)
    if database == "sqlite":
        return sqlite_store(name, shape, cache=cache).url
    return postgres_store(database, name.replace("-", "_"), shape, cache=cache).url


@contextmanager
def scratch_copy(source_url: str) -> Iterator[str]:
    """A copy of the store at ``source_url``, upgraded to the code's head, removed after."""
    if source_url.startswith("sqlite"):
        with tempfile.TemporaryDirectory(prefix="board-bench-") as tmp:
            path = Path(tmp) / "store.db"
            shutil.copy(source_url.removeprefix("sqlite:///"), path)
            url = f"sqlite:///{path}"
            upgrade_to_head(url)
            yield url
        return
    template = source_url.rsplit("/", 1)[1].split("?")[0]
    name = f"metawsm_board_scratch_{uuid.uuid4().hex[:8]}"
    admin = admin_engine(source_url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        url = database_url(source_url, name)
        upgrade_to_head(url)
        analyze(url)
        yield url
    finally:
        drop_database(admin, name)
        admin.dispose()
