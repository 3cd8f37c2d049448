"""``metawsm watch`` over the HTTP API: rebuild the snapshot when the event stream says a run
changed, instead of polling the database.

:class:`StreamRefresher` answers the loop's two questions as the local ``Refresher``
(services/snapshot_changes.py) does — ``rebuilt`` after each rebuild, ``due`` when to rebuild —
from a thread reading ``GET /api/v1/events/stream`` (filtered by the run when there is one):
a new event makes a rebuild due (and once more a second later, for the read models), as do the
next clock decision and ``--refresh``. A dead letter writes no event: ``--refresh`` covers it.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime

from metawsm.cli.remote import ApiClient
from metawsm.errors import MetawsmError

# Once more this long after a change: the read models follow the event log (seconds).
SETTLE_S = 1.0
# Rebuilds for changes take at most this share of the loop's time (as the local refresher).
CPU_SHARE = 0.05


class StreamRefresher:
    """Tells the watch loop when to rebuild, woken by the API's event stream."""

    def __init__(self, client: ApiClient, refresh_s: float, run_id: str | None, after: int):
        self.refresh_s = refresh_s
        self._changed = threading.Event()
        self._next = time.monotonic() + refresh_s
        self._quiet_until = 0.0
        self._settle_at: float | None = None
        self.error: MetawsmError | None = None
        query = {"run_id": run_id} if run_id else {}
        self._thread = threading.Thread(
            target=self._follow, args=(client, query, after), name="watch-stream", daemon=True
        )
        self._thread.start()

    def _follow(self, client: ApiClient, query: dict[str, str], after: int) -> None:
        try:
            for _ in client.events(query, after):
                self._changed.set()
        except MetawsmError as exc:  # refused or unreachable: the loop says so and stops
            self.error = exc
            self._changed.set()

    def rebuilt(self, due_at: datetime | None, now: datetime, took_s: float = 0.0) -> None:
        """The loop rebuilt at ``now`` in ``took_s``; ``due_at`` is its next clock decision."""
        started = time.monotonic()
        self._quiet_until = started + took_s * (1 / CPU_SHARE - 1)
        self._next = min(self._next, started + self.refresh_s)
        if due_at is not None:
            self._next = min(self._next, started + max(0.0, (due_at - now).total_seconds()))

    def due(self) -> bool:
        """Whether the loop should rebuild now.

        Raises:
            MetawsmError: the stream was refused or the API went away (the stream's error).
        """
        if self.error is not None:
            raise self.error
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.refresh_s
            return True
        if now < self._quiet_until:
            return False
        if self._changed.is_set():
            self._changed.clear()
            self._settle_at = now + SETTLE_S
            return True
        if self._settle_at is not None and now >= self._settle_at:
            self._settle_at = None
            return True
        return False
