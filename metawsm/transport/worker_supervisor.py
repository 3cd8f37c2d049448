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
* restarts a child that dies: at once when it had got going (it was ready or ran a task, see
  :meth:`WorkerSupervisor._reap`) or was SIGKILLed, with backoff when it exits on its own before
  it was ready; it gives up only on a child that cannot start, one that does that
  :data:`START_FAILURES_LIMIT` times in a row, and logs its exit code and the tail of what it
  printed (``metawsm/transport/child_output.py``);
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

from metawsm.transport.child_output import StartupOutput, exit_text, saved_output, spawn
from metawsm.transport.task_slots import SLOT_ENV, SlotFile

log = logging.getLogger("metawsm.transport.worker_supervisor")

WATCH_INTERVAL_S = 0.25
# While a child starts, its output comes through us: forward it promptly, so that it shows in
# order with what the child writes itself once ready (child_output.py).
STARTING_INTERVAL_S = 0.02
# A child that exits on its own before it was ready, within this long of its start, failed to
# start (bad settings, an import error). One not ready by then waits for something outside (the
# broker; Celery retries it for ever): when it dies, it is restarted at once, not counted.
START_GRACE_S = 10.0
START_FAILURES_LIMIT = 5
RESTART_BACKOFF_MAX_S = 30.0
PR_SET_PDEATHSIG = 1


@dataclass
class Child:
    """One supervised worker process and its restart bookkeeping."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    output: StartupOutput | None = None  # what it prints until it is ready
    started_at: float = 0.0
    restart_at: float = 0.0
    killed_for: int | None = None  # slot sequence of the task it was killed for
    # exits on its own before it was ready, in a row: the restart backoff, giving up at the limit
    start_failures: int = 0
    last_exit: str = ""  # how the last failed start went, and what it printed
    last_output: str = ""


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
        self._own_output = saved_output()  # where the children write once ready

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
                        "solo worker %d cannot start: it exited on its own before it was ready "
                        "%d times in a row, the last time %s; giving up. Its last output:\n%s",
                        child.index,
                        child.start_failures,
                        child.last_exit,
                        child.last_output or "(nothing)",
                    )
                    self.request_stop()
                    return 1
            self._wake.wait(self._interval_s())
        return 0

    def _interval_s(self) -> float:
        starting = any(c.output is not None and c.output.open for c in self._children)
        return STARTING_INTERVAL_S if starting else WATCH_INTERVAL_S

    def _tend(self, child: Child, now: float) -> bool:
        """Start, restart or time-limit one child; False when it keeps failing to start."""
        if child.proc is None:
            if now >= child.restart_at:
                self._start(child, now)
            return True
        if child.output is not None:
            child.output.pump()
        code = child.proc.poll()
        if code is None:
            self._enforce_hard_limit(child, now)
            return True
        self._reap(child, code, now)
        return child.start_failures < START_FAILURES_LIMIT

    def _start(self, child: Child, now: float) -> None:
        self._slots.clear(child.index)
        env = {**self._env, SLOT_ENV: f"{self._slots.path}:{child.index}"}
        argv = list(self._argv_for(child.index))
        # the supervisor runs no threads: preexec_fn is safe
        child.proc, child.output = spawn(argv, env, self._own_output, self._preexec)
        child.started_at, child.killed_for = now, None
        if self._stop_signal is not None:
            # The stop request came while we were starting it: it was not signalled.
            _send(child.proc, self._stop_signal)
        log.info("solo worker %d started (pid %d)", child.index, child.proc.pid)

    def _reap(self, child: Child, code: int, now: float) -> None:
        """Schedule the restart of a child that exited with ``code``; count a failed start.

        Whether it got going is read from its slot, not guessed from how long it lived: it
        writes the slot when Celery says it is ready (``worker_ready``, task_time_limits.py)
        and at each task. The ready mark, not only the tasks, because a worker on quiet queues
        is healthy too; the slot, because it is already shared and cleared at each start.
        """
        assert child.proc is not None
        pid, child.proc = child.proc.pid, None
        output = self._read_out(child)
        if child.killed_for is not None:  # the hard limit killed it (logged): replace at once
            child.start_failures, child.restart_at = 0, now
            return
        ready, lived_s = self._slots.written(child.index), now - child.started_at
        if ready:
            child.start_failures, when = 0, "after it was ready"
        elif lived_s >= START_GRACE_S:
            child.start_failures, when = 0, f"not ready after {lived_s:.0f} s"
        elif code == -signal.SIGKILL:
            # Never how a start fails on its own: it comes from outside (the OOM killer, an
            # operator) and says nothing about whether the child can start. Not counted, and
            # not backed off: that would leave the role without workers while kills go on.
            when = "before it was ready"
        else:
            self._failed_start(child, pid, code, output, now)
            return
        child.restart_at = now
        log.warning(
            "solo worker %d (pid %d) %s %s: restarting it now",
            child.index,
            pid,
            exit_text(code),
            when,
        )

    def _failed_start(self, child: Child, pid: int, code: int, output: str, now: float) -> None:
        """A child exited on its own before it was ready: count it, back off its restart."""
        child.start_failures += 1
        child.last_exit, child.last_output = exit_text(code), output
        delay = min(RESTART_BACKOFF_MAX_S, 2.0 ** (child.start_failures - 1))
        child.restart_at = now + delay
        log.warning(
            "solo worker %d (pid %d) %s before it was ready (start failures in a row: %d of %d):"
            " restarting in %.1f s",
            child.index,
            pid,
            child.last_exit,
            child.start_failures,
            START_FAILURES_LIMIT,
            delay,
        )

    @staticmethod
    def _read_out(child: Child) -> str:
        """The tail of what an exited child printed while not ready; closes its pipe."""
        if child.output is None:
            return ""
        child.output.pump()  # it exited: read to the end
        child.output.close()
        output, child.output = child.output.tail(), None
        return output

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
                for starting in self._children:  # never leave one blocked on a full pipe
                    if starting.output is not None:
                        starting.output.pump()
                self._wake.clear()
                self._wake.wait(self._interval_s())
            self._read_out(child)
        for fd in self._own_output or ():
            os.close(fd)
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
