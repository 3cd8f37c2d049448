"""The worker's consumer: task monitoring events published in batches, not one by one.

Celery's worker buffers task events (received, started, succeeded, retried, failed) and, by
default, publishes the buffer after every turn of its event loop: at our rates that is one Redis
``PUBLISH`` per event, and it took two fifths of a worker main process's CPU in a profile
(docs/performance.md). This consumer flushes the buffer at most every
:data:`EVENT_FLUSH_INTERVAL_S` (celery still flushes at once when 24 events are waiting), so
Flower sees the same events, up to that much later, for a fraction of the cost. The worker's
consumer, ``workers/quarantine.py``, builds on this one.
"""

from __future__ import annotations

from typing import Any

from celery.worker.consumer import Consumer

# Flower's task view refreshes for humans: a quarter of a second of delay is invisible there.
EVENT_FLUSH_INTERVAL_S = 0.25


class EventBatchingConsumer(Consumer):
    """A Celery consumer that coalesces task-event flushes (see the module docstring)."""

    hub: Any  # set by celery: the event loop (None without one)
    _flush_scheduled = False

    def on_send_event_buffered(self) -> Any:
        """Schedule one flush for everything buffered in the next interval."""
        if self.hub is None:
            super().on_send_event_buffered()
        elif not self._flush_scheduled:
            self._flush_scheduled = True
            self.hub.call_later(EVENT_FLUSH_INTERVAL_S, self._flush_buffered)

    def _flush_buffered(self) -> None:
        self._flush_scheduled = False
        flush: Any = getattr(self, "_flush_events")  # noqa: B009 (celery's own flush)
        flush()
