"""Beat's scheduler: Celery's persistent scheduler that also records each tick as beat's
heartbeat (metawsm.ops.heartbeats, role ``beat``), at most once per heartbeat interval.

Beat wakes at least every ``METAWSM_HEARTBEAT_INTERVAL_S`` (``beat_max_loop_interval``), so
the age of its last tick says whether its loop still runs, not only whether the process lives.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from celery.beat import PersistentScheduler

from metawsm.ops.heartbeats import BEAT_ROLE, Heartbeat, process_name


class HeartbeatScheduler(PersistentScheduler):
    """A PersistentScheduler whose ticks are recorded in the database."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        container = self.app.container  # type: ignore[attr-defined]  # a MetawsmCelery
        self._heartbeat = Heartbeat(
            container.engine,
            process_name(f"beat@{socket.gethostname()}"),
            [BEAT_ROLE],
            container.settings.heartbeat_interval_s,
        )
        self._last_beat = 0.0

    def tick(self, *args: Any, **kwargs: Any) -> float:
        """Run due entries, record the tick (once per interval); seconds until the next tick."""
        interval: float = super().tick(*args, **kwargs)
        now = time.monotonic()
        if now - self._last_beat >= self._heartbeat.interval_s:
            self._heartbeat.beat_once(forget=self._last_beat == 0.0)
            self._last_beat = now
        return min(interval, self._heartbeat.interval_s)

    def close(self) -> None:
        """Close the schedule and delete beat's heartbeat row (a clean stop is gone at once)."""
        super().close()
        self._heartbeat.stop()
