"""The faults, one function each: inject, hold for ``hold_s``, end; what was done, in words.

Each returns a :class:`FaultWindow`: when the fault began and ended (monotonic seconds) and
notes on what it did. Redis's faults come from :mod:`metawsm.transport.redis_faults`, the same
the fault tests inject.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete

from metawsm.bootstrap import topics_for
from metawsm.drills.procs import children_of, environ_of, environment
from metawsm.drills.stack import WORKER_CONCURRENCY, Stack
from metawsm.errors import DrillAborted
from metawsm.services.projections import PROJECTION
from metawsm.storage import tables
from metawsm.storage.uow import connection_unit
from metawsm.transport.queues import queues_for_role
from metawsm.transport.redis_server import wait_for
from metawsm.transport.task_slots import SLOT_ENV, SlotFile

CHILDREN_TIMEOUT_S = 60.0
MID_TASK_TIMEOUT_S = 30.0
REBUILD_TIMEOUT_S = 600.0


@dataclass
class FaultWindow:
    """When the fault began and ended (``time.monotonic()``) and what was done."""

    started: float
    ended: float = 0.0
    notes: list[str] = field(default_factory=list)


def redis_outage(stack: Stack, hold_s: float) -> FaultWindow:
    """Stop Redis (SIGTERM, no AOF: every queued message is gone), start it again on the same
    port after ``hold_s`` seconds."""
    window = FaultWindow(time.monotonic())
    old_pid = stack.redis.pid
    stack.redis.stop()
    _hold(hold_s)
    stack.redis.start()
    window.ended = time.monotonic()
    window.notes.append(
        f"redis-server (pid {old_pid}) stopped; started again on port {stack.redis.port}"
        f" (pid {stack.redis.pid}) after {window.ended - window.started:.1f} s, empty"
    )
    return window


def redis_stall(stack: Stack, hold_s: float) -> FaultWindow:
    """Freeze Redis with SIGSTOP for ``hold_s`` seconds, then SIGCONT it."""
    window = FaultWindow(time.monotonic())
    stack.redis.pause()
    _hold(hold_s)
    stack.redis.resume()
    window.ended = time.monotonic()
    window.notes.append(
        f"redis-server (pid {stack.redis.pid}) SIGSTOPped for"
        f" {window.ended - window.started:.1f} s, then SIGCONTinued"
    )
    return window


def redis_flush(stack: Stack, hold_s: float) -> FaultWindow:
    """FLUSHALL with a backlog in Redis: the worker is frozen (SIGSTOP) for ``hold_s`` seconds
    so messages queue up, then every queued and unacked message and kombu's bindings are
    deleted at once, and the worker continues."""
    window = FaultWindow(time.monotonic())
    stack.worker.pause()
    try:
        _hold(hold_s)
        queues = queues_for_role(topics_for(stack.settings), "all")
        queued = stack.redis.queued(queues)
        keys = stack.redis.key_count()
        stack.redis.flushall()
    finally:
        stack.worker.resume()
    window.ended = time.monotonic()
    window.notes.append(
        f"worker frozen {hold_s:g} s; FLUSHALL deleted {keys} keys, {queued} messages queued"
        " (and whatever the workers held unacked); worker continued"
    )
    return window


def worker_kill(stack: Stack, hold_s: float) -> FaultWindow:
    """SIGKILL the worker supervisor; restart it after ``hold_s`` seconds (as a process manager
    would); then SIGKILL one of its workers while that worker runs a task."""
    window = FaultWindow(time.monotonic())
    supervisor = stack.worker.pid
    if supervisor is None:
        raise stack.aborted("the worker is not running")
    orphans = children_of(supervisor)
    stack.worker.kill()
    gone = wait_for(lambda: not any(_alive(pid) for pid in orphans), CHILDREN_TIMEOUT_S)
    window.notes.append(
        f"worker supervisor (pid {supervisor}) SIGKILLed; its {len(orphans)} workers"
        + (" shut down on their parent-death SIGTERM" if gone else " were still running")
    )
    _hold(hold_s)
    stack.worker.start()
    window.notes.append(f"worker restarted (pid {stack.worker.pid}) after {hold_s:g} s")
    victim, ran_s = _kill_a_busy_worker(stack)
    window.ended = time.monotonic()
    window.notes.append(
        f"worker child (pid {victim}) SIGKILLed while its task had run {ran_s * 1000:.0f} ms"
        if ran_s is not None
        else f"worker child (pid {victim}) SIGKILLed; no task was seen running in time"
    )
    restored = wait_for(lambda: len(_workers(stack)) >= WORKER_CONCURRENCY, CHILDREN_TIMEOUT_S)
    window.notes.append(
        "the supervisor replaced it" if restored else "the supervisor did not replace it in time"
    )
    return window


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _workers(stack: Stack) -> list[int]:
    pid = stack.worker.pid
    return [c for c in children_of(pid) if SLOT_ENV in environ_of(c)] if pid else []


def _kill_a_busy_worker(stack: Stack) -> tuple[int, float | None]:
    """SIGKILL a supervised worker that is running a task (its slot says since when); the pid
    and how long the task had run, or any worker and None when none was busy in time."""
    if not wait_for(lambda: len(_workers(stack)) >= WORKER_CONCURRENCY, CHILDREN_TIMEOUT_S):
        raise stack.aborted("the restarted worker did not start its workers")
    slots = {pid: _slot(pid) for pid in _workers(stack)}
    try:
        deadline = time.monotonic() + MID_TASK_TIMEOUT_S
        while time.monotonic() < deadline:
            for pid, (slots_file, index) in slots.items():
                state = slots_file.read(index)
                if state is not None and state.started is not None:
                    os.kill(pid, signal.SIGKILL)
                    return pid, time.monotonic() - state.started
            time.sleep(0.001)  # polling shared memory for a task start: ~1 ms resolution
        pid = next(iter(slots))
        os.kill(pid, signal.SIGKILL)
        return pid, None
    finally:
        for slots_file, _ in slots.values():
            slots_file.close()


def _slot(pid: int) -> tuple[SlotFile, int]:
    path, _, index = environ_of(pid)[SLOT_ENV].rpartition(":")
    return SlotFile(Path(path), int(index) + 1, create=False), int(index)


def replay(stack: Stack, hold_s: float) -> FaultWindow:
    """Drop the read models (views, stats, projection ledger), then rebuild them with
    ``metawsm projections rebuild`` again and again for ``hold_s`` seconds (at least once),
    while the load and the projectors run: each rebuild races the projectors anew."""
    window = FaultWindow(time.monotonic())
    with connection_unit(stack.container.engine) as conn:
        conn.execute(delete(tables.forum_thread_views))
        conn.execute(delete(tables.forum_thread_stats))
        ledger = tables.forum_projection_events
        conn.execute(delete(ledger).where(ledger.c.projection == PROJECTION))
    window.notes.append("dropped the thread views, stats and projection ledger")
    reports = [_projections(stack, "rebuild", "--json")]
    while time.monotonic() - window.started < hold_s:
        reports.append(_projections(stack, "rebuild", "--json"))
    window.ended = time.monotonic()
    first = reports[0]
    window.notes.append(
        f"projections rebuild x{len(reports)} under load; the first folded {first.get('events')}"
        f" events and rewrote {', '.join(first.get('rewritten', []))} in {first.get('seconds')}"
        f" s, the last folded {reports[-1].get('events')} in {reports[-1].get('seconds')} s;"
        f" {sum(int(r.get('caught_up', 0)) for r in reports)} events committed during a"
        " rebuild were projected again by it"
    )
    return window


def check_read_models(stack: Stack) -> list[str]:
    """``metawsm projections rebuild --check``: the differences between the read models and
    the fold of the log (none when they agree)."""
    report = _projections(stack, "rebuild", "--check", "--json")
    return [str(line) for line in report.get("differences", [])]


def _projections(stack: Stack, *args: str) -> dict[str, Any]:
    command = [sys.executable, "-m", "metawsm", "projections", *args]
    done = subprocess.run(
        command,
        env=environment(stack.settings, stack.workdir),
        cwd=stack.workdir,
        capture_output=True,
        text=True,
        timeout=REBUILD_TIMEOUT_S,
        check=False,
    )
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise DrillAborted(
            f"drill aborted: metawsm projections {' '.join(args)} exited {done.returncode}:"
            f" {done.stderr.strip()[-500:]}"
        ) from exc
    return report


def _hold(seconds: float) -> None:
    time.sleep(seconds)  # the fault lasts this long: a duration, not a synchronisation


FAULTS: dict[str, Callable[[Stack, float], FaultWindow]] = {
    "redis-outage": redis_outage,
    "redis-stall": redis_stall,
    "worker-kill": worker_kill,
    "redis-flush": redis_flush,
    "replay": replay,
}
