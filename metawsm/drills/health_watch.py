"""What `metawsm health` said during a drill: each check's failing spans, sampled every second.

The runbook (ops/runbook.md) tells an operator what health shows during each incident; this is
where those lines come from, observed in drills rather than expected.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import Engine

from metawsm.ops.health import judge
from metawsm.ops.readings import read
from metawsm.settings import Settings

SAMPLE_S = 1.0


@dataclass
class Span:
    """A check failing from ``first`` to ``last`` (monotonic seconds) in consecutive samples."""

    first: float
    last: float


class HealthWatch(threading.Thread):
    """Samples the health checks until stopped; keeps every failing span of every check."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        super().__init__(name="drill-health", daemon=True)
        self.engine = engine
        self.settings = settings
        self.spans: dict[str, list[Span]] = {}
        self.error: str | None = None
        self._halt = threading.Event()
        self._failing: set[str] = set()

    def run(self) -> None:
        """Sample until stopped."""
        try:
            while not self._halt.wait(SAMPLE_S):
                self.sample()
        except Exception as exc:  # reported with the observations, not lost in a thread
            self.error = f"{type(exc).__name__}: {exc}"

    def sample(self) -> None:
        """Read the checks once and extend or open the spans of the failing ones."""
        now = time.monotonic()
        failing = {
            check.name for check in judge(read(self.engine, self.settings), self.settings).failing()
        }
        for name in failing:
            spans = self.spans.setdefault(name, [])
            if name in self._failing and spans:
                spans[-1].last = now
            else:
                spans.append(Span(now, now))
        self._failing = failing

    def stop(self) -> None:
        """Stop sampling."""
        self._halt.set()
        self.join(timeout=30)

    def observations(self, fault_started: float, fault_ended: float) -> list[str]:
        """One line per check that failed after the fault began, times relative to it."""
        lines = []
        for name in sorted(self.spans):
            during = [s for s in self.spans[name] if s.last >= fault_started]
            if not during:
                continue
            first = during[0].first - fault_started
            cleared = during[-1].last - fault_ended
            lines.append(
                f"health: {name} failed from {first:+.1f} s after the fault began until"
                f" {cleared:+.1f} s after it ended ({len(during)} span(s))"
            )
        if self.error is not None:
            lines.append(f"health: sampling stopped early: {self.error}")
        return lines or ["health: no check failed after the fault began"]
