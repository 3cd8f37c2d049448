"""Timing helpers of bench/scale.py: CLI processes (wall time) and in-process service calls.

A process measurement runs the installed ``metawsm`` console script (or ``python -m metawsm``
when there is none) with ``METAWSM_DATABASE_URL`` (and a private ``METAWSM_BROKER_URL``) set,
output captured, and takes its wall time from fork to exit and its CPU time (user + system, from
``getrusage(RUSAGE_CHILDREN)``: the process and whatever it waited for). An in-process
measurement calls the service function the command calls, on one warm engine: wall time, CPU
time of this process, and the SQL statements it issued, counted both through SQLAlchemy and
straight on the driver (:class:`metawsm.storage.dbapi.Reader`, what the snapshot and the command
line read through). Each is repeated up to ``repeat`` times while the row's time budget lasts
(at least once): median (p50), p99, best and CPU reported.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

BUDGET_S = 30.0  # stop repeating a row once its samples took this long
WARM_UP_S = 1.0  # a first in-process call slower than this counts as a sample


@dataclass
class Sample:
    """Timings (seconds; wall and CPU) of one row, with statement counts (in-process) or an
    error."""

    times_s: list[float] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)
    error: str | None = None
    cpu_s: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float | None:
        """Median of the timings (None when nothing ran)."""
        return statistics.median(self.times_s) if self.times_s else None

    @property
    def p99_s(self) -> float | None:
        """99th percentile of the timings, nearest rank (the maximum below 100 samples)."""
        if not self.times_s:
            return None
        ordered = sorted(self.times_s)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]

    @property
    def cpu_median_s(self) -> float | None:
        """Median CPU time (None when it was not measured)."""
        return statistics.median(self.cpu_s) if self.cpu_s else None

    @property
    def best_s(self) -> float | None:
        """Fastest timing (None when nothing ran)."""
        return min(self.times_s) if self.times_s else None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        out: dict[str, Any] = {
            "n": len(self.times_s),
            "median_ms": _ms(self.median_s),
            "p99_ms": _ms(self.p99_s),
            "best_ms": _ms(self.best_s),
            "cpu_median_ms": _ms(self.cpu_median_s),
        }
        if self.statements:
            out["statements"] = statistics.median(self.statements)
        if self.error:
            out["error"] = self.error
        out["times_ms"] = [_ms(t) for t in self.times_s]
        out["statements_each"] = self.statements
        out["cpu_ms"] = [_ms(t) for t in self.cpu_s]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        """The sample :meth:`as_dict` wrote (to render saved results again)."""
        times = [t / 1000 for t in data.get("times_ms", [])]
        cpu = [t / 1000 for t in data.get("cpu_ms", [])]
        return cls(times, list(data.get("statements_each", [])), data.get("error"), cpu)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 2)


def cli_prefix() -> list[str]:
    """How to start the command line: the console script beside this Python, or ``-m``."""
    script = Path(sys.executable).parent / "metawsm"
    return [str(script)] if script.exists() else [sys.executable, "-m", "metawsm"]


def run_process(args: Sequence[str], env: dict[str, str], repeat: int) -> Sample:
    """Wall and CPU time of ``metawsm <args>`` as a process, ``repeat`` times within the budget."""
    sample = Sample()
    full_env = {**os.environ, **env}
    spent = 0.0
    for _ in range(repeat):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run([*cli_prefix(), *args], env=full_env, capture_output=True)
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if done.returncode != 0:
            err = done.stderr.decode(errors="replace").strip().splitlines()
            sample.error = f"exit {done.returncode}: {err[-1] if err else ''}"[:200]
            return sample
        sample.times_s.append(elapsed)
        sample.cpu_s.append(children_cpu_s(before, after))
        spent += elapsed
        if spent > BUDGET_S:
            break
    return sample


def children_cpu_s(before: resource.struct_rusage, after: resource.struct_rusage) -> float:
    """User + system CPU seconds of the children reaped between ``before`` and ``after``."""
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


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
            sample.cpu_s.append(first[1])
            sample.statements.append(first[2])
        while len(sample.times_s) < repeat and sum(sample.times_s) <= BUDGET_S:
            elapsed, cpu, statements = _timed_call(engine, call)
            sample.times_s.append(elapsed)
            sample.cpu_s.append(cpu)
            sample.statements.append(statements)
    except Exception as exc:  # reported in the table: the row is n/a, the bench goes on
        sample.error = f"{type(exc).__name__}: {exc}"[:200]
    return sample


def _timed_call(engine: Engine, call: Callable[[], Any]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds of this process, and statements of one ``call()``."""
    from bench.statements import recorded

    with recorded(engine) as seen:
        start, cpu_start = time.perf_counter(), time.process_time()
        call()
        return time.perf_counter() - start, time.process_time() - cpu_start, len(seen)


def copy_sqlite(source: Path, target: Path) -> None:
    """Copy a SQLite store file (a cached store is never written to)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def loadavg() -> float:
    """The 1-minute load average (what else was running)."""
    return round(os.getloadavg()[0], 2)


def loadavgs() -> list[float]:
    """The 1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_jiffies() -> list[int]:
    """The machine's CPU time so far by kind, from /proc/stat's ``cpu`` line (Linux; empty
    elsewhere): user, nice, system, idle, iowait, irq, softirq, steal, ..."""
    try:
        with open("/proc/stat") as stat:
            return [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return []


STEAL = 7  # the field of time a hypervisor gave another guest while this one wanted the CPU


def steal_pct(start: list[int], end: list[int]) -> float | None:
    """Of the machine's CPU time between two :func:`cpu_jiffies`, the percentage stolen by the
    hypervisor: on a shared virtual machine, how much slower its CPUs ran than their own."""
    if len(start) <= STEAL or len(end) <= STEAL:
        return None
    total = sum(end[: STEAL + 1]) - sum(start[: STEAL + 1])
    return round(100 * (end[STEAL] - start[STEAL]) / total, 1) if total > 0 else None
