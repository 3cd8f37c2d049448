"""One follower of the event log per API process, feeding every stream client.

The follower reads ``forum_events`` after its cursor, one statement per ``poll_s`` whatever the
number of connected clients, and keeps the newest ``keep`` events in memory. A client streams
from its own cursor: out of that buffer when its cursor is inside it, else from the database in
pages (a client resuming from far back, or a slow one the buffer moved past) until it reaches
the buffer. 100 clients cost the database what one costs (docs/performance.md, "HTTP API").

Order and completeness: an event's ``sequence`` is assigned under the event-log lock, held until
commit (``storage/uow.py``), so sequences are contiguous and become visible in commit order:
reading ``sequence > cursor`` never skips an event that commits later with a lower sequence. The
follower still checks that each batch continues its cursor without a gap; if one shows (a
writer that bypassed the lock), it waits up to ``gap_wait_s`` for the missing sequences before
moving over them, and logs it.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Reads ``(after, limit)``: events with sequence > after, by sequence, at most limit (dicts as
# services/thread_reads.py events_after renders them). Blocking: run in a thread.
ReadAfter = Callable[[int, int], list[dict[str, Any]]]
# The highest sequence committed so far (0 for an empty log). Blocking.
ReadHead = Callable[[], int]


@dataclass(frozen=True)
class StreamFilter:
    """Which events a client wants (None = any); compared as stored, like the event-log read."""

    ticket: str | None = None
    run_id: str | None = None

    def keeps(self, event: dict[str, Any]) -> bool:
        """True when ``event`` passes the filter."""
        if self.ticket is not None and event.get("ticket") != self.ticket:
            return False
        return self.run_id is None or event.get("run_id") == self.run_id


class EventFollower:
    """Tails the event log for the whole process; clients read from it (:meth:`stream`).

    ``poll_s``: pause between two reads when nothing new came; ``batch``: events per read;
    ``keep``: events kept in memory; ``gap_wait_s``: how long a gap in the sequences is waited
    on before it is taken as final.
    """

    def __init__(
        self,
        read_after: ReadAfter,
        read_head: ReadHead,
        *,
        poll_s: float = 0.05,
        batch: int = 500,
        keep: int = 10_000,
        gap_wait_s: float = 2.0,
    ) -> None:
        self._read_after = read_after
        self._read_head = read_head
        self.poll_s = poll_s
        self.batch = batch
        self.keep = keep
        self.gap_wait_s = gap_wait_s
        self._events: list[dict[str, Any]] = []
        self._seqs: list[int] = []
        self.floor = 0  # every event with sequence <= floor is out of the buffer
        self.head = 0  # every event with sequence <= head has been read
        self.polls = 0  # reads of the log by the follower so far
        self.pages = 0  # reads of the log by clients catching up from behind the buffer
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._gap_since: float | None = None
        self._ready = False
        self.error: str | None = None

    @property
    def running(self) -> bool:
        """True while the follower's task runs."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start following from the current head of the log (no history is loaded); a
        database that does not answer yet is retried until it does (:attr:`error` says why)."""
        self._task = asyncio.create_task(self._run(), name="metawsm-event-follower")

    @property
    def ready(self) -> bool:
        """True once the head of the log was read: clients can stream."""
        return self._ready and self.running

    async def stop(self) -> None:
        """Stop following; clients waiting on it are woken and end."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._wake()

    async def _run(self) -> None:
        while not self._ready:
            try:
                self.head = self.floor = await asyncio.to_thread(self._read_head)
                self._ready, self.error = True, None
            except Exception as exc:  # the database is down: keep trying, readiness says so
                self._failed(exc)
                await asyncio.sleep(self.poll_s)
        while True:
            try:
                got = await self.poll_once()
                self.error = None
            except Exception as exc:  # the database is down: keep trying, readiness says so
                self._failed(exc)
                got = 0
            if got < self.batch:
                await asyncio.sleep(self.poll_s)

    def _failed(self, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        if error != self.error:  # once per distinct failure, not once per poll
            log.warning("event follower: reading the log failed: %s", error)
        self.error = error

    async def poll_once(self) -> int:
        """Read the log after :attr:`head` once; the number of events added."""
        self.polls += 1
        events = await asyncio.to_thread(self._read_after, self.head, self.batch)
        events = self._contiguous(events)
        if events:
            self._append(events)
        return len(events)

    def _contiguous(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The events up to the first gap in sequences (all of them once the gap has lasted
        ``gap_wait_s``: the missing sequences are taken to be gone for good)."""
        expected = self.head + 1
        for i, event in enumerate(events):
            if event["sequence"] != expected:
                now = time.monotonic()
                self._gap_since = self._gap_since or now
                if now - self._gap_since < self.gap_wait_s:
                    return events[:i]
                log.warning("event follower: sequences %d..%d never appeared; moving on",
                            expected, event["sequence"] - 1)  # fmt: skip
            expected = event["sequence"] + 1
        self._gap_since = None
        return events

    def _append(self, events: list[dict[str, Any]]) -> None:
        self._events.extend(events)
        self._seqs.extend(e["sequence"] for e in events)
        self.head = self._seqs[-1]
        if len(self._seqs) > 2 * self.keep:  # trim in halves: amortised O(1) per event
            cut = len(self._seqs) - self.keep
            self.floor = self._seqs[cut - 1]
            del self._events[:cut], self._seqs[:cut]
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def buffered_after(self, cursor: int) -> list[dict[str, Any]]:
        """The buffered events with sequence > ``cursor`` (``cursor`` >= :attr:`floor`)."""
        return self._events[bisect.bisect_right(self._seqs, cursor) :]

    async def wait_beyond(self, cursor: int, timeout_s: float) -> bool:
        """Wait until the head moves past ``cursor``; False after ``timeout_s`` without."""
        while self.head <= cursor:
            if not self.running:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), timeout_s)
            except TimeoutError:
                return False
        return True

    async def until_event(
        self, cursor: int, touches: Callable[[dict[str, Any]], bool], timeout_s: float
    ) -> int | None:
        """Wait until an event after ``cursor`` that ``touches`` holds for commits; the head
        then (the next cursor), or None after ``timeout_s``. Waiters cost no database read:
        a waiting request re-reads only when something it cares about happened (when the
        follower is not ready, or the cursor fell behind the buffer, it returns at once so the
        caller re-reads)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.ready and cursor >= self.floor:
            fresh = self.buffered_after(cursor)
            if any(touches(event) for event in fresh):
                return self.head
            cursor = fresh[-1]["sequence"] if fresh else cursor
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                return None
            await self.wait_beyond(cursor, remaining)
        return self.head

    async def stream(
        self,
        cursor: int,
        wanted: StreamFilter,
        read_page: Callable[[int, int, StreamFilter], list[dict[str, Any]]],
        *,
        page: int = 500,
        heartbeat_s: float = 15.0,
    ) -> AsyncIterator[dict[str, Any] | None]:
        """Every event after ``cursor`` that ``wanted`` keeps, once each, by sequence, then
        live ones as they commit; None every ``heartbeat_s`` without one (a keep-alive).

        ``read_page(after, limit, wanted)`` reads the database (blocking: run in a thread)
        for a client behind the buffer.
        """
        while self.running:
            if cursor < self.floor:  # behind the buffer: catch up from the database
                head = self.head  # committed and read: a page read now sees all up to here
                self.pages += 1
                rows = await asyncio.to_thread(read_page, cursor, page, wanted)
                for event in rows:
                    yield event
                full = len(rows) == page
                cursor = rows[-1]["sequence"] if full else max(head, cursor, *_seqs(rows))
                continue
            fresh = self.buffered_after(cursor)
            if fresh:
                cursor = fresh[-1]["sequence"]
                for event in fresh:
                    if wanted.keeps(event):
                        yield event
                continue
            if not await self.wait_beyond(cursor, heartbeat_s) and self.running:
                yield None


def _seqs(rows: list[dict[str, Any]]) -> list[int]:
    return [int(r["sequence"]) for r in rows]
