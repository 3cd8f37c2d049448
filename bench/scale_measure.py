"""Timing helpers of bench/scale.py: CLI processes (wall time) and in-process service calls.

A process measurement runs the installed ``metawsm`` console script (or ``python -m metawsm``
when there is none) with ``METAWSM_DATABASE_URL`` set, output captured, and takes its wall time
from fork to exit. An in-process measurement calls the service function the command calls, on
one warm engine, and also counts the SQL statements it issued. Each is repeated up to
``repeat`` times while the row's time budget lasts (at least once): median and best reported.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

BUDGET_S = 30.0  # stop repeating a row once its samples took this long
WARM_UP_S = 1.0  # a first in-process call slower than this counts as a sample


@dataclass
class Sample:
    """Timings (seconds) of one row, with statement counts (in-process) or an error."""

    times_s: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    error: str | None = None

    @property
    def median_s(self) -> float | None:
        """Median of the timings (None when nothing ran)."""
        return statistics.median(self.times_s) if self.times_s else None

    @property
    def best_s(self) -> float | None:
        """Fastest timing (None when nothing ran)."""
        return min(self.times_s) if self.times_s else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        out: dict[str, Any] = {
            "n": len(self.times_s),
            "median_ms": _ms(self.median_s),
            "best_ms": _ms(self.best_s),
        }
        if self.statements:
            out["statements"] = statistics.median(self.statements)
        if self.error:
            out["error"] = self.error
        out["times_ms"] = [_ms(t) for t in self.times_s]
        out["statements_each"] = self.statements
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """The sample :meth:`as_dict` wrote (to render saved results again)."""
        times = [t / 1000 for t in data.get("times_ms", [])]
        return cls(times, list(data.get("statements_each", [])), data.get("error"))


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def cli_prefix() -> list[str]:
    """How to start the command line: the console script beside this Python, or ``-m``."""
    script = Path(sys.executable).parent / "metawsm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "metawsm"]


def run_process(args: Sequence[str], env: dict[str, str], repeat: int) -> Sample:
    """Wall time of ``metawsm <args>`` as a process, ``repeat`` times within the budget."""
    sample = Sample()
    full_env = {**os.environ, **env}
    spent = 0.0
    for _ in range(repeat):
        start = time.perf_counter()
        done = subprocess.run([*cli_prefix(), *args], env=full_env, capture_output=True)
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip().splitlines()
            sample.error = f"exit {done.returncode}: {err[-1] if err else ''}"[:200]
            return sample
        sample.times_s.append(elapsed)
        spent += elapsed
        if spent > BUDGET_S:
            break
    return sample


@contextmanager
def counting(engine: Engine) -> Iterator[list[int]]:
    """Count the statements ``engine`` executes inside the block (``box[0]``)."""
    box = [0]

    def count(*_args: Any) -> None:
        box[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield box
    finally:
        event.remove(engine, "before_cursor_execute", count)


def run_inprocess(engine: Engine, call: Callable[[], Any], repeat: int) -> Sample:
    """Time ``call()`` (a service function on ``engine``) ``repeat`` times within the budget.

    The first call warms up (statement cache, page cache) and is not counted, unless it took
    longer than :data:`WARM_UP_S` (then it is the first sample: a slow row is not run twice
    for nothing).
    """
    sample = Sample()
    try:
        first = _timed_call(engine, call)
        if first[0] > WARM_UP_S:
            sample.times_s.append(first[0])
            sample.statements.append(first[1])
        while len(sample.times_s) < repeat and sum(sample.times_s) <= BUDGET_S:
            elapsed, statements = _timed_call(engine, call)
            sample.times_s.append(elapsed)
            sample.statements.append(statements)
    except Exception as exc:  # reported in the table: the row is n/a, the bench goes on
        sample.error = f"{type(exc).__name__}: {exc}"[:200]
    return sample


def _timed_call(engine: Engine, call: Callable[[], Any]) -> tuple[float, int]:
    with counting(engine) as box:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start, box[0]


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy a SQLite store file (a cached store is never written to)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def loadavg() -> float:
    """The 1-minute load average (what else was running)."""
    return round(os.getloadavg()[0], 2)
