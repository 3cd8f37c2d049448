"""One drill from start to end: stack up, load on, fault in, load off, settle, count, report."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from sqlalchemy import Engine, make_url

from metawsm.drills import defects
from metawsm.drills.faults import FAULTS, FaultWindow, check_read_models
from metawsm.drills.health_watch import HealthWatch
from metawsm.drills.load import LoadDriver, LoadMix, Submitted, create_drill_run
from metawsm.drills.report import DrillReport
from metawsm.drills.settle import Backlog, backlog, last_sequence, wait_settled
from metawsm.drills.stack import DRILL_TIMINGS, Stack, scratch_stack
from metawsm.drills.tally import read_facts, tally
from metawsm.storage.types import utcnow

FAULT_AT = 0.3  # the fault starts this far into the load (a share of --duration)
HOLD_SHARE = 0.2  # and lasts this share of it, within HOLD_MIN_S..HOLD_MAX_S
HOLD_MIN_S = 2.0
HOLD_MAX_S = 30.0
SETTLE_MIN_S = 60.0
SAMPLE_S = 0.5

Say = Callable[[str], None]


class Monitor(threading.Thread):
    """Samples the backlog during the drill: its peaks, and when the work in flight at the
    fault's end is all done (the recovery)."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(name="drill-monitor", daemon=True)
        self.engine = engine
        self.peak = Backlog(0, 0, 0)
        self.recovered_at: float | None = None
        self._mark: tuple[datetime, int] | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        """Sample until stopped."""
        while not self._halt.wait(SAMPLE_S):
            try:
                self._sample()
            except Exception:  # a busy database now and then: the next sample will do
                continue

    def _sample(self) -> None:
        now = backlog(self.engine)
        self.peak = Backlog(*(max(a, b) for a, b in zip(
            (self.peak.commands, self.peak.events, self.peak.outbox),
            (now.commands, now.events, now.outbox), strict=True,
        )))  # fmt: skip
        mark = self._mark
        if mark is not None and self.recovered_at is None and backlog(self.engine, *mark).empty:
            self.recovered_at = time.monotonic()

    def fault_ended(self, engine: Engine) -> None:
        """From now on, watch for the work in flight at this moment to be done."""
        self._mark = (utcnow(), last_sequence(engine))

    def stop(self) -> None:
        """Stop sampling."""
        self._halt.set()
        self.join(timeout=30)


def run_drill(
    kind: str,
    duration_s: float,
    rate: float,
    database: str | None = None,
    defect: str | None = None,
    say: Say = lambda _: None,
    logs_dir: Path | None = None,
) -> DrillReport:
    """Run drill ``kind`` on a scratch stack and report it.

    Raises:
        DrillAborted: the stack did not start or the fault could not be injected.
    """
    started = time.monotonic()
    with scratch_stack(database, logs_dir) as stack:
        say(f"scratch stack up in {time.monotonic() - started:.1f} s: {stack.workdir}")
        engine = stack.container.engine
        monitor = Monitor(engine)
        monitor.start()
        health = HealthWatch(engine, stack.settings)
        health.start()
        try:
            window, submitted, t0 = _load_and_fault(stack, kind, duration_s, rate, monitor, say)
            say("load stopped; waiting for everything to settle")
            remaining = wait_settled(engine, max(SETTLE_MIN_S, duration_s))
            if monitor.recovered_at is None and remaining.empty:
                monitor.recovered_at = time.monotonic()
        finally:
            monitor.stop()
            health.stop()
        say("checking the read models against the log (projections rebuild --check)")
        differences = check_read_models(stack)
        observed = _observations(submitted, monitor, remaining, stack)
        observed += health.observations(window.started, window.ended)
        if defect:
            observed.append(f"planted defect: {defects.plant(engine, defect, submitted.accepted)}")
        counts = tally(
            submitted.accepted, submitted.uncertain, read_facts(engine, [
                *submitted.accepted, *submitted.uncertain])
        )  # fmt: skip
        recover = None if monitor.recovered_at is None else monitor.recovered_at - window.ended
        return DrillReport(
            drill=kind,
            duration_s=duration_s,
            rate=rate,
            database=make_url(stack.settings.database_url).get_backend_name(),
            tally=counts,
            read_model_differences=differences,
            time_to_recover_s=None if recover is None else round(max(recover, 0.0), 2),
            fault_started_s=window.started - t0,
            fault_ended_s=window.ended - t0,
            elapsed_s=time.monotonic() - started,
            fault=window.notes,
            observed=observed,
            timings=dict(DRILL_TIMINGS),
        )


def _load_and_fault(
    stack: Stack, kind: str, duration_s: float, rate: float, monitor: Monitor, say: Say
) -> tuple[FaultWindow, Submitted, float]:
    driver = LoadDriver(stack.container, LoadMix(create_drill_run(stack.container)), rate)
    t0 = time.monotonic()
    driver.start()
    try:
        _pause_until(t0 + duration_s * FAULT_AT)
        hold_s = min(max(duration_s * HOLD_SHARE, HOLD_MIN_S), HOLD_MAX_S)
        say(f"{driver.count()} commands submitted; injecting {kind} (hold {hold_s:g} s)")
        window = FAULTS[kind](stack, hold_s)
        monitor.fault_ended(stack.container.engine)
        say(f"fault over after {window.ended - window.started:.1f} s; load continues")
        _pause_until(max(t0 + duration_s, window.ended + 1.0))
    finally:
        submitted = driver.stop()
    return window, submitted, t0


def _pause_until(deadline: float) -> None:
    time.sleep(max(0.0, deadline - time.monotonic()))  # the drill's timeline, not a sync


def _observations(
    submitted: Submitted, monitor: Monitor, remaining: Backlog, stack: Stack
) -> list[str]:
    peak = monitor.peak
    seen = [
        f"peak backlog: {peak.commands} commands not final, {peak.events} events not projected,"
        f" {peak.outbox} outbox rows waiting",
        f"{submitted.not_published} submits accepted but not published at once (left to the"
        " outbox drainer)",
        f"worker started {stack.worker.starts} time(s), beat {stack.beat.starts}",
    ]
    if submitted.uncertain:
        seen.append(f"{len(submitted.uncertain)} submits raised: {'; '.join(submitted.errors)}")
    if not remaining.empty:
        seen.append(
            f"not settled at the deadline: {remaining.commands} commands, {remaining.events}"
            f" events, {remaining.outbox} outbox rows"
        )
    return seen
