"""The incremental projector equals the fold of the log, whatever order events arrive in.

The projector moves a view by one event when it arrives in order, leaves it alone when a re-fold
already read it, re-folds on a gap, and moves stats by difference. Each test checks, after every
single ``project()`` call, what must always hold: every view is the fold of a prefix of its
thread's log that includes every event delivered so far, and the stats rows are exactly
``fold_stats`` of the views (no zero rows). At the end the read models equal ``projections
rebuild``'s.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, delete, select, update

from metawsm.domain.forum import TRANSITIONS
from metawsm.domain.views import fold_stats, fold_thread
from metawsm.messages.common import ThreadState
from metawsm.messages.events import Event
from metawsm.runtime import Runtime
from metawsm.services.eventlog import row_to_event
from metawsm.services.projections import PROJECTION, project
from metawsm.services.rebuild import expected_models, rebuild
from metawsm.services.submit import make_command
from metawsm.storage.models import (
    ForumEvent,
    ForumOutbox,
    ForumProjectionEvent,
    ForumThreadStat,
    ForumThreadView,
)
from metawsm.storage.uow import unit_of_work
from tests.fixtures.pipeline import handle_in_process
from tests.integration.test_idempotency import (
    _copy,
    _fresh_database,
    _log,
    _make_history,
    _read_models,
)
from tests.integration.test_lifecycle_idempotency import (
    STORIES,
    _bootstrap,
    _runtime,
    _write_signals,
)

SEEDS = (7, 20240611, 31337, 4242)


class Checker:
    """Delivers events to a database's projector and checks the read models after each call."""

    def __init__(self, engine: Engine, log: list[Event], controls: set[str]) -> None:
        self.engine = engine
        self.by_thread: dict[str, list[Event]] = defaultdict(list)
        for event in log:
            if event.thread_id:
                self.by_thread[event.thread_id].append(event)
        self.controls = controls
        self.delivered: dict[str, int] = defaultdict(int)

    def deliver(self, event: Event) -> bool:
        """Project ``event`` once more, then check every invariant."""
        applied = project(self.engine, event, f"{event.event_id}:projector")
        if event.thread_id and event.thread_seq:
            seen = self.delivered[event.thread_id]
            self.delivered[event.thread_id] = max(seen, event.thread_seq)
        self.check()
        return applied

    def check(self) -> None:
        """Views are folds of log prefixes covering what was delivered; stats count the views."""
        views, stats = _read_models(self.engine)
        for view in views:
            thread_id = view["thread_id"]
            upto = view["last_thread_seq"]
            assert upto >= self.delivered[thread_id], (thread_id, upto)
            prefix = [e for e in self.by_thread[thread_id] if (e.thread_seq or 0) <= upto]
            assert view == fold_thread(prefix, is_control=thread_id in self.controls)
        assert {v["thread_id"] for v in views} >= {t for t, n in self.delivered.items() if n}
        assert all(row[-1] > 0 for row in stats), stats
        assert {row[:-1]: row[-1] for row in stats} == fold_stats(views)


def _reset_read_models(engine: Engine) -> None:
    with unit_of_work(engine) as s:
        s.execute(delete(ForumThreadView))
        s.execute(delete(ForumThreadStat))
        s.execute(delete(ForumProjectionEvent).where(ForumProjectionEvent.projection == PROJECTION))


def _apply(rt: Runtime, command_type: str, actor: str, **payload: Any) -> None:
    command = make_command(command_type, payload, actor_type=actor, actor_name=f"{actor}-1")
    assert handle_in_process(rt, command) == "applied", (command_type, payload)


def _events_after(engine: Engine, sequence: int) -> list[Event]:
    with unit_of_work(engine, readonly=True) as s:
        rows = s.execute(
            select(ForumEvent).where(ForumEvent.sequence > sequence).order_by(ForumEvent.sequence)
        ).scalars()
        return [row_to_event(r) for r in rows]


@pytest.mark.parametrize("thread_id", ["t-2", "t-4"])
def test_every_order_of_a_threads_events_gives_the_fold_of_the_log(
    engine: Engine, db_url: str, tmp_path: Path, thread_id: str
) -> None:
    _make_history(engine, db_url)
    threads, rows = _log(engine)
    events = [row_to_event(r) for r in rows]
    controls = {t.thread_id for t in threads if t.is_control}
    mine = [e for e in events if e.thread_id == thread_id]
    # t-2: open, post, priority, post, assign; t-4: open, post, priority, close.
    assert [e.thread_seq for e in mine] == list(range(1, {"t-2": 6, "t-4": 5}[thread_id]))
    want_views, _, _ = expected_models(engine)
    want = want_views[thread_id]
    with _fresh_database(db_url, tmp_path, "replica") as replica:
        _copy(replica, threads)
        _copy(replica, rows)
        checker = Checker(replica, events, controls)
        for order in itertools.permutations(mine):
            _reset_read_models(replica)
            checker.delivered.clear()
            for event in order:
                assert checker.deliver(event)
            for event in order[:2]:  # duplicates change nothing
                assert not checker.deliver(event)
            views, stats = _read_models(replica)
            assert views == [want], [e.thread_seq for e in order]
            key = (want["ticket"], want["run_id"] or "", want["state"], want["priority"])
            assert stats == [(*key, 1)]


def test_control_threads_in_every_order_keep_is_control(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    rt = _runtime(engine, db_url)
    run_id = _bootstrap(rt)
    _write_signals(rt, run_id, STORIES["keeps running"][0])
    threads, rows = _log(engine)
    events = [row_to_event(r) for r in rows]
    controls = {t.thread_id for t in threads if t.is_control}
    assert len(controls) == 2 and {t.thread_id for t in threads} == controls
    want_views, _, _ = expected_models(engine)
    with _fresh_database(db_url, tmp_path, "replica") as replica:
        _copy(replica, threads)
        _copy(replica, rows)
        checker = Checker(replica, events, controls)
        for event in events:
            if event.thread_id is None:  # run events: in the ledger, no read model changes
                assert checker.deliver(event)
                assert _read_models(replica) == ([], [])
        for thread_id in sorted(controls):
            mine = [e for e in events if e.thread_id == thread_id]
            assert 3 <= len(mine) <= 5
            for order in itertools.permutations(mine):
                _reset_read_models(replica)
                checker.delivered.clear()
                for event in order:
                    assert checker.deliver(event)
                views, _ = _read_models(replica)
                assert views == [want_views[thread_id]] and views[0]["is_control"] is True


def test_a_gap_is_re_folded_and_the_late_event_then_changes_nothing(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    _make_history(engine, db_url)
    threads, rows = _log(engine)
    events = [row_to_event(r) for r in rows]
    t3 = [(r, e) for r, e in zip(rows, events, strict=True) if e.thread_id == "t-3"]
    # open, post, state (waiting_human), answer's post, answer's state (answered), close.
    assert [e.event_type for _, e in t3][-1] == "forum.thread.closed" and len(t3) == 6
    with _fresh_database(db_url, tmp_path, "replica") as replica:
        _copy(replica, threads)
        checker = Checker(replica, events, set())

        def upto() -> int:
            views, _ = _read_models(replica)
            return int(views[0]["last_thread_seq"])

        _copy(replica, [t3[0][0]])
        assert checker.deliver(t3[0][1]) and upto() == 1  # the opening alone
        _copy(replica, [t3[1][0], t3[2][0]])  # seq 2 and 3 are logged
        assert checker.deliver(t3[2][1]) and upto() == 3  # 3 before 2: re-folded, 2 included
        assert checker.deliver(t3[1][1]) and upto() == 3  # 2 is already in the view
        _copy(replica, [t3[3][0]])
        assert checker.deliver(t3[3][1]) and upto() == 4  # 4 follows 3: one step
        assert not checker.deliver(t3[1][1])  # a duplicate of 2
        _copy(replica, [t3[4][0], t3[5][0]])
        assert checker.deliver(t3[5][1]) and upto() == 6  # 6 before 5: re-folded
        assert checker.deliver(t3[4][1]) and upto() == 6
        views, _ = _read_models(replica)
        assert views[0]["state"] == "closed"


@pytest.mark.parametrize("seed", SEEDS)
def test_shuffled_duplicated_deliveries_while_the_log_grows_equal_the_rebuild(
    engine: Engine, db_url: str, tmp_path: Path, seed: int
) -> None:
    _make_history(engine, db_url)
    threads, rows = _log(engine)
    events = [row_to_event(r) for r in rows]
    controls = {t.thread_id for t in threads if t.is_control}
    for event in events:  # the source: every event in log order
        assert project(engine, event, f"{event.event_id}:projector")
    live = _read_models(engine)
    assert rebuild(engine, check=True).differences == []

    rng = random.Random(seed)
    with _fresh_database(db_url, tmp_path, "replica") as replica:
        _copy(replica, threads)
        checker = Checker(replica, events, controls)
        pending: list[Event] = []
        for row, event in zip(rows, events, strict=True):
            _copy(replica, [row])  # the log grows in commit order
            pending.append(event)
            rng.shuffle(pending)
            take = rng.randint(0, len(pending))
            for e in pending[:take]:
                assert checker.deliver(e)
            for e in rng.sample(pending[:take], k=take // 2):
                assert not checker.deliver(e)
            del pending[:take]
        rng.shuffle(pending)
        for e in pending:
            assert checker.deliver(e)
        assert _read_models(replica) == live
        assert rebuild(replica, check=True).differences == []


@pytest.mark.parametrize("seed", SEEDS)
def test_stats_follow_state_and_priority_changes_by_difference(
    engine: Engine, db_url: str, seed: int
) -> None:
    rt = _runtime(engine, db_url)
    rng = random.Random(seed)
    threads = {"s-1": "run-1", "s-2": "run-1", "s-3": None, "s-4": None}
    state: dict[str, ThreadState] = {}
    priority: dict[str, str] = {}
    for thread_id, run_id in threads.items():
        _apply(rt, "open_thread", "agent", thread_id=thread_id, ticket="TCK-S", title="T",
               body="b", run_id=run_id)  # fmt: skip
        state[thread_id], priority[thread_id] = ThreadState.NEW, "normal"
    checker = Checker(engine, [], set())
    pending: list[Event] = []
    last_sequence = 0
    for step in range(48):
        open_threads = [t for t in threads if state[t] is not ThreadState.CLOSED]
        thread_id = rng.choice(open_threads)
        kind = rng.choice(("state", "priority", "post")) if step < 44 else "close"
        if kind == "state":
            targets = sorted(TRANSITIONS[state[thread_id]] - {ThreadState.CLOSED})
            state[thread_id] = rng.choice(targets)
            _apply(rt, "change_state", "operator", thread_id=thread_id,
                   to_state=state[thread_id].value)  # fmt: skip
        elif kind == "priority":
            target = rng.choice([p for p in ("low", "normal", "high", "urgent")
                                 if p != priority[thread_id]])  # fmt: skip
            priority[thread_id] = target
            _apply(rt, "set_priority", "operator", thread_id=thread_id, priority=target)
        elif kind == "post":
            _apply(rt, "add_post", "agent", thread_id=thread_id, body=f"step {step}")
        else:
            state[thread_id] = ThreadState.CLOSED
            _apply(rt, "close_thread", "operator", thread_id=thread_id)
        new = _events_after(engine, last_sequence)
        last_sequence = max(e.sequence or 0 for e in new)
        checker.by_thread.clear()
        for event in _events_after(engine, 0):
            checker.by_thread[event.thread_id or ""].append(event)
        pending += new
        # Deliver some of what is logged, in any order; hold the rest back (gaps), repeat a few.
        rng.shuffle(pending)
        take = rng.randint(0, len(pending))
        for event in pending[:take]:
            assert checker.deliver(event)
        for event in rng.sample(pending[:take], k=min(take, 2)):
            assert not checker.deliver(event)
        del pending[:take]
    for event in pending:
        assert checker.deliver(event)

    views, stats = _read_models(engine)
    assert {v["thread_id"]: (v["state"], v["priority"]) for v in views} == {
        t: (state[t].value, priority[t]) for t in threads
    }
    assert rebuild(engine, check=True).differences == []
    _, want_stats, _ = expected_models(engine)
    assert sorted((*k, n) for k, n in want_stats.items()) == stats


def test_concurrent_projectors_of_one_ticket_serialise(engine: Engine, db_url: str) -> None:
    rt = _runtime(engine, db_url)
    for n in range(8):
        _apply(rt, "open_thread", "agent", thread_id=f"c-{n}", ticket="TCK-C", title="T",
               body="b")  # fmt: skip
        _apply(rt, "set_priority", "operator", thread_id=f"c-{n}", priority="high")
    events = _events_after(engine, 0)
    random.Random(5).shuffle(events)
    # Four projectors start together, each on a quarter of the events: views of one thread and
    # stats rows of the one ticket are created and moved concurrently.
    workers = 4
    start = threading.Barrier(workers)

    def projector(share: list[Event]) -> list[bool]:
        start.wait(timeout=30)
        return [project(engine, e, f"{e.event_id}:projector") for e in share]

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(projector, [events[k::workers] for k in range(workers)]))
    assert sorted(r for share in results for r in share) == [True] * len(events)
    _, stats = _read_models(engine)
    assert stats == [("TCK-C", "", "new", "high", 8)]
    assert rebuild(engine, check=True).differences == []


def _outbox_row(engine: Engine, message_id: str) -> tuple[Any, ...]:
    with unit_of_work(engine, readonly=True) as s:
        row = s.execute(
            select(ForumOutbox).where(ForumOutbox.message_id == message_id)
        ).scalar_one()
        return row.status, row.deliveries, row.lease_owner, row.lease_until


def test_count_delivery_counts_exactly_one_delivery_per_call(engine: Engine, db_url: str) -> None:
    _make_history(engine, db_url)
    _, rows = _log(engine)
    first, second = row_to_event(rows[0]), row_to_event(rows[1])
    mid, other = f"{first.event_id}:projector", f"{second.event_id}:projector"
    with unit_of_work(engine) as s:
        s.execute(
            update(ForumOutbox)
            .where(ForumOutbox.message_id.in_((mid, other)))
            .values(status="processing", lease_owner="w-1", lease_until=rows[0].occurred_at)
        )
    _, untouched, _, _ = _outbox_row(engine, other)
    _, start, _, _ = _outbox_row(engine, mid)

    assert project(engine, first, mid, count_delivery=True)
    assert _outbox_row(engine, mid) == ("done", start + 1, None, None)
    assert not project(engine, first, mid, count_delivery=True)  # a duplicate is still counted
    assert _outbox_row(engine, mid) == ("done", start + 2, None, None)
    assert not project(engine, first, mid)
    assert not project(engine, first, mid, count_delivery=False)
    assert _outbox_row(engine, mid) == ("done", start + 2, None, None)
    # Another message's row is not touched.
    assert _outbox_row(engine, other) == ("processing", untouched, "w-1", rows[0].occurred_at)

    assert project(engine, second, other, count_delivery=False)
    assert _outbox_row(engine, other) == ("done", untouched, None, None)
    # A message sent by hand has no outbox row: nothing to mark, the event is still projected.
    third = row_to_event(rows[2])
    assert project(engine, third, "sent-by-hand", count_delivery=True)
    with unit_of_work(engine, readonly=True) as s:
        assert s.get(ForumProjectionEvent, (PROJECTION, third.event_id)) is not None
