"""The stream's follower on its own: contiguous sequences, gaps, the buffer and filters.

The log is a list the test appends to (the follower takes its reads as functions); the stream
tests (tests/integration/test_api_stream.py) run it on real databases.
"""

from __future__ import annotations

import asyncio
from typing import Any

from metawsm.api.follower import EventFollower, StreamFilter


def _event(sequence: int, ticket: str = "T") -> dict[str, Any]:
    return {"sequence": sequence, "ticket": ticket, "run_id": None}


class Log:
    """An in-memory event log with the follower's two reads."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def after(self, cursor: int, limit: int) -> list[dict[str, Any]]:
        return [e for e in self.events if e["sequence"] > cursor][:limit]

    def head(self) -> int:
        return max((e["sequence"] for e in self.events), default=0)

    def page(self, cursor: int, limit: int, wanted: StreamFilter) -> list[dict[str, Any]]:
        return [e for e in self.after(cursor, 10**9) if wanted.keeps(e)][:limit]


def _follower(log: Log, **kw: Any) -> EventFollower:
    follower = EventFollower(log.after, log.head, **kw)
    follower._ready = True  # started by hand: these tests drive poll_once themselves
    return follower


def test_a_gap_holds_later_events_back_until_it_fills() -> None:
    log = Log()
    log.events = [_event(1), _event(3)]
    follower = _follower(log, gap_wait_s=60)
    assert asyncio.run(follower.poll_once()) == 1
    assert follower.head == 1  # 3 waits for 2
    log.events.insert(1, _event(2))
    assert asyncio.run(follower.poll_once()) == 2
    assert [e["sequence"] for e in follower.buffered_after(0)] == [1, 2, 3]


def test_a_gap_that_lasts_past_the_wait_is_moved_over() -> None:
    log = Log()
    log.events = [_event(2), _event(3)]
    follower = _follower(log, gap_wait_s=0)
    assert asyncio.run(follower.poll_once()) == 2
    assert follower.head == 3


def test_the_buffer_keeps_the_newest_events_and_raises_its_floor() -> None:
    log = Log()
    log.events = [_event(n) for n in range(1, 26)]
    follower = _follower(log, keep=5, batch=100)
    asyncio.run(follower.poll_once())
    assert follower.head == 25
    assert follower.floor == 20
    assert [e["sequence"] for e in follower.buffered_after(22)] == [23, 24, 25]


def test_a_stream_behind_the_buffer_catches_up_by_pages_then_reads_the_buffer() -> None:
    log = Log()
    log.events = [_event(n, "A" if n % 2 else "B") for n in range(1, 31)]
    follower = _follower(log, keep=4, batch=100)

    async def collect() -> list[int]:
        await follower.poll_once()
        follower._task = asyncio.create_task(asyncio.sleep(3600))  # "running"
        got = []
        async for event in follower.stream(0, StreamFilter(ticket="A"), log.page, page=3):
            assert event is not None
            got.append(event["sequence"])
            if event["sequence"] == 29:
                break
        follower._task.cancel()
        return got

    assert asyncio.run(collect()) == list(range(1, 30, 2))
    assert follower.pages >= 2


def test_a_waiter_wakes_on_an_event_it_cares_about_and_not_on_others() -> None:
    log = Log()
    follower = _follower(log, batch=100)

    async def scenario() -> tuple[int | None, int | None]:
        follower._task = asyncio.create_task(asyncio.sleep(3600))  # "running"
        log.events = [_event(1, "other")]
        await follower.poll_once()
        unrelated = await follower.until_event(0, lambda e: e["ticket"] == "mine", 0.05)
        waiting = asyncio.create_task(follower.until_event(1, lambda e: e["ticket"] == "mine", 5.0))
        await asyncio.sleep(0)  # the waiter is parked on the follower
        log.events += [_event(2, "other"), _event(3, "mine")]
        await follower.poll_once()
        woken = await waiting
        follower._task.cancel()
        return unrelated, woken

    assert asyncio.run(scenario()) == (None, 3)
