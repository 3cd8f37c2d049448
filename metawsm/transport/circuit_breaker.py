"""A circuit breaker for publishing: after a broker failure, stop trying for a few seconds.

Every message a writer publishes is already durable in the outbox, so a publish that cannot
reach Redis loses nothing: the drainer publishes the row later. What a failed publish costs is
time — up to the publish timeout of whoever waits on it. Once a publish has failed, the next ones
in the same process would very likely fail the same way, so for ``open_s`` seconds they are
refused at once (the rows go to the drainer). Then one caller is let through as a trial: if it
succeeds publishing resumes for everyone, if it fails the breaker opens again. While the trial
runs the others are still refused, so at most one caller per ``open_s`` waits on a broker that
does not answer.

The closed state (Redis answering) costs one attribute read per publish: no lock, no clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class CircuitBreaker:
    """Refuses calls for ``open_s`` seconds after a failure, then lets one trial through.

    ``open_s`` 0 never refuses. ``clock`` returns monotonic seconds (tests pass their own).
    Thread-safe.
    """

    def __init__(self, open_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.open_s = open_s
        self._clock = clock
        self._lock = threading.Lock()
        # 0.0 while closed; else the clock time before which calls are refused.
        self._open_until = 0.0
        self._failed_at = 0.0
        self._last_error = ""

    def refusal(self) -> str | None:
        """None when the caller may go ahead (closed, or the trial after an open spell);
        otherwise why it is refused, for the caller's error message."""
        if not self._open_until:
            return None
        with self._lock:
            now = self._clock()
            if not self._open_until:
                return None
            if now >= self._open_until:
                # This caller is the trial; the others are refused until it reports (or, if it
                # never does, until the next spell ends and someone else tries).
                self._open_until = now + self.open_s
                return None
            return (
                f"not attempted: publishing paused for {self._open_until - now:.1f} s more"
                f" after a failure {now - self._failed_at:.1f} s ago ({self._last_error})"
            )

    def succeeded(self) -> None:
        """The call reached the broker: close the breaker."""
        if self._open_until:
            with self._lock:
                self._open_until = 0.0

    def failed(self, error: str) -> None:
        """The call failed because of the broker: refuse calls for ``open_s`` seconds."""
        with self._lock:
            now = self._clock()
            self._failed_at = now
            self._open_until = now + self.open_s
            self._last_error = error
