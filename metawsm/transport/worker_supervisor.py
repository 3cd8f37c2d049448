"""Supervised solo workers: N single-process Celery workers under one watchdog.

Celery's prefork pool hands every message from the worker's main process to a pool child over a
pipe and back: about a fifth of the pipeline's CPU per command (docs/performance.md). A solo
worker runs the task in the process that received it, but enforces no time limit, which the facts
sheet requires so that no task outlives the visibility timeout. ``metawsm worker --pool solo``
therefore runs ``--concurrency`` solo workers as children of this supervisor, which

* enforces the hard time limit: a child whose task has run longer than ``task_time_limit_s`` is
  SIGKILLed (its message stays unacknowledged in Redis; reconciliation re-drives it from the
  outbox, and the redelivery is counted before it runs, so a task that always hangs ends in the
  dead-letter table), then replaced;
* restarts a child that exits on its own (crash, OOM kill), with backoff when it keeps failing at
  start-up, and gives up after :data:`START_FAILURES_LIMIT` such failures in a row;
* forwards SIGTERM/SIGINT as a warm shutdown (SIGQUIT: cold) and exits when the children have.

The children enforce the soft limit themselves (``metawsm/transport/task_time_limits.py``);
this module never imports Celery or the worker code: it starts them by command line.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from metawsm.transport.task_slots import SLOT_ENV, SlotFile

log = logging.getLogger("metawsm.transport.worker_supervisor")

WATCH_INTERVAL_S = 0.25
# A child that dies within this long of its start failed to start (bad config, import error).
START_GRACE_S = 10.0
START_FAILURES_LIMIT = 5
RESTART_BACKOFF_MAX_S = 30.0
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """One supervised worker process and its restart bookkeeping."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    start_failures: int = 0
    restart_at: float = 0.0
    killed_for: int | None = None  # slot sequence of the task it was killed for


def _parent_death_signal() -> Callable[[], None] | None:
    """Linux: make a child get SIGTERM (a warm shutdown) when its supervisor dies, instead of
    consuming on as an unsupervised orphan. Loaded before fork: the hook only calls prctl."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM))

    return hook


class WorkerSupervisor:
    """Runs ``count`` copies of a worker command line and supervises them (module docstring)."""

    def __init__(
        self,
        argv_for: Callable[[int], Sequence[str]],
        count: int,
        hard_limit_s: float,
        env: dict[str, str] | None = None,
    ) -> None:
        self._argv_for = argv_for
        self._env = dict(os.environ if env is None else env)
        self._hard_limit_s = hard_limit_s
        self._children = [Child(index) for index in range(count)]
        self._stop_signal: signal.Signals | None = None
        self._wake = threading.Event()
        self._dir = Path(tempfile.mkdtemp(prefix="metawsm-solo-"))
        self._slots = SlotFile(self._dir / "slots", count, create=True)
        self._preexec = _parent_death_signal()

    @property
    def pids(self) -> list[int]:
        """Process ids of the live children."""
        return [c.proc.pid for c in self._children if c.proc and c.proc.poll() is None]

    def run(self) -> int:
        """Supervise until stopped by a signal (returns 0) or giving up (returns 1)."""
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
        }
        try:
            return self._supervise()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._shutdown()

    def request_stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop the children with ``sig`` (SIGTERM warm, SIGQUIT cold) and return from run()."""
        first = self._stop_signal is None
        self._stop_signal = sig
        if first or sig == signal.SIGQUIT:
            self._signal_all(sig)
        self._wake.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        self.request_stop(signal.SIGQUIT if sig == signal.SIGQUIT else signal.SIGTERM)

    def _supervise(self) -> int:
        while self._stop_signal is None:
            now = time.monotonic()
            for child in self._children:
                if self._stop_signal is not None:
                    break  # a stop arrived while we were starting children
                if not self._tend(child, now):
                    log.error(
                        "solo worker %d failed to start %d times in a row: giving up",
                        child.index,
                        child.start_failures,
                    )
                    self.request_stop()
                    return 1
            self._wake.wait(WATCH_INTERVAL_S)
        return 0

    def _tend(self, child: Child, now: float) -> bool:
        """Start, restart or time-limit one child; False when it keeps failing to start."""
        if child.proc is None:
            if now >= child.restart_at:
                self._start(child, now)
            return True
        code = child.proc.poll()
        if code is None:
            self._enforce_hard_limit(child, now)
            return True
        self._reap(child, code, now)
        return child.start_failures < START_FAILURES_LIMIT

    def _start(self, child: Child, now: float) -> None:
        self._slots.clear(child.index)
        env = {**self._env, SLOT_ENV: f"{self._slots.path}:{child.index}"}
        child.proc = subprocess.Popen(
            list(self._argv_for(child.index)),
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=self._preexec,  # the supervisor runs no threads
        )
        child.started_at, child.killed_for = now, None
        if self._stop_signal is not None:
            # The stop request came while we were starting it: it was not signalled.
            _send(child.proc, self._stop_signal)
        log.info("solo worker %d started (pid %d)", child.index, child.proc.pid)

    def _reap(self, child: Child, code: int, now: float) -> None:
        assert child.proc is not None
        pid, child.proc = child.proc.pid, None
        if child.killed_for is not None:  # the hard limit killed it (logged): replace at once
            child.start_failures, child.restart_at = 0, now
            return
        if now - child.started_at < START_GRACE_S:
            child.start_failures += 1
            delay = min(RESTART_BACKOFF_MAX_S, 2.0 ** (child.start_failures - 1))
        else:
            child.start_failures, delay = 0, 0.0
        log.warning(
            "solo worker %d (pid %d) exited with %s: restarting in %.1f s",
            child.index,
            pid,
            code,
            delay,
        )
        child.restart_at = now + delay

    def _enforce_hard_limit(self, child: Child, now: float) -> None:
        state = self._slots.read(child.index)
        if state is None or state.started is None or child.killed_for == state.sequence:
            return
        running = now - state.started
        if running <= self._hard_limit_s:
            return
        assert child.proc is not None
        log.error(
            "solo worker %d (pid %d): task running %.1f s, past the hard time limit of %g s: "
            "killing the process (its message is re-driven by reconciliation) and replacing it",
            child.index,
            child.proc.pid,
            running,
            self._hard_limit_s,
        )
        child.killed_for = state.sequence
        _send(child.proc, signal.SIGKILL)

    def _signal_all(self, sig: signal.Signals) -> None:
        for child in self._children:
            if child.proc is not None:
                _send(child.proc, sig)

    def _shutdown(self) -> None:
        """Wait for the children to finish their warm shutdown; remove the slot file."""
        if self._stop_signal is None:  # leaving on an exception: stop the children first
            self.request_stop()
        for child in self._children:
            while child.proc is not None and child.proc.poll() is None:
                self._enforce_hard_limit(child, time.monotonic())
                self._wake.clear()
                self._wake.wait(WATCH_INTERVAL_S)
        self._slots.close()
        with suppress(OSError):
            self._slots.path.unlink()
            self._dir.rmdir()


def _send(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    try:
        if proc.poll() is None:
            proc.send_signal(sig)
    except ProcessLookupError:
        pass  # exited meanwhile
