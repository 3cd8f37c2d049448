"""Rebuilding the read models from ``forum_events`` and comparing them with the live ones.

The search index is rebuilt and compared by :mod:`metawsm.services.search_index` (one call each).

The rebuild folds the whole log with the same functions the projector uses, into fresh
structures, then either reports the differences (``check``) or replaces the live tables.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, delete, select

from metawsm.domain.views import fold_stats, fold_thread
from metawsm.messages.events import Event
from metawsm.services import search_index
from metawsm.services.eventlog import row_to_event
from metawsm.services.projections import PROJECTION, view_dict
from metawsm.storage.models import (
    ForumEvent,
    ForumProjectionEvent,
    ForumThread,
    ForumThreadStat,
    ForumThreadView,
)
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work


@dataclass
class RebuildReport:
    """What a rebuild found: counts, differences, how long it took."""

    events: int = 0
    threads: int = 0
    stats_rows: int = 0
    differences: list[str] = field(default_factory=list)
    applied: bool = False
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return self.__dict__.copy()


def expected_models(
    engine: Engine,
) -> tuple[dict[str, dict[str, Any]], dict[tuple[str, str, str, str], int], list[str]]:
    """Fold every event into fresh views and stats; also returns the event ids folded."""
    by_thread: dict[str, list[Event]] = defaultdict(list)
    event_ids: list[str] = []
    with unit_of_work(engine, readonly=True) as session:
        controls = set(
            session.execute(select(ForumThread.thread_id).where(ForumThread.is_control)).scalars()
        )
        for row in session.execute(select(ForumEvent).order_by(ForumEvent.sequence)).scalars():
            event_ids.append(row.event_id)
            if row.thread_id:
                by_thread[row.thread_id].append(row_to_event(row))
    views: dict[str, dict[str, Any]] = {}
    for thread_id, events in by_thread.items():
        view = fold_thread(events, is_control=thread_id in controls)
        if view is not None:
            views[thread_id] = view
    return views, fold_stats(views.values()), event_ids


def rebuild(engine: Engine, *, check: bool) -> RebuildReport:
    """Rebuild every read model from the log; with ``check`` only report differences."""
    started = time.monotonic()
    views, stats, event_ids = expected_models(engine)
    report = RebuildReport(events=len(event_ids), threads=len(views), stats_rows=len(stats))
    report.differences = _diff(engine, views, stats)
    if not check:
        _replace(engine, views, stats, event_ids)
        report.applied = True
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _diff(
    engine: Engine,
    views: dict[str, dict[str, Any]],
    stats: dict[tuple[str, str, str, str], int],
) -> list[str]:
    out: list[str] = []
    with unit_of_work(engine, readonly=True) as session:
        live = {
            v.thread_id: view_dict(v) for v in session.execute(select(ForumThreadView)).scalars()
        }
        live_stats = {
            (s.ticket, s.run_id, s.state, s.priority): s.thread_count
            for s in session.execute(select(ForumThreadStat)).scalars()
        }
        out += search_index.differences(session.connection())
    for thread_id in sorted(set(views) | set(live)):
        want, have = views.get(thread_id), live.get(thread_id)
        if want is None or have is None:
            out.append(f"thread view {thread_id}: {'missing' if have is None else 'unexpected'}")
            continue
        for column in sorted(want):
            if want[column] != have.get(column):
                live_value, rebuilt = have.get(column), want[column]
                out.append(f"thread view {thread_id}.{column}: {live_value=!r} {rebuilt=!r}")
    for key in sorted(set(stats) | set(live_stats)):
        if stats.get(key) != live_stats.get(key):
            out.append(f"stats {key}: live={live_stats.get(key)} rebuilt={stats.get(key)}")
    return out


def _replace(
    engine: Engine,
    views: dict[str, dict[str, Any]],
    stats: dict[tuple[str, str, str, str], int],
    event_ids: list[str],
) -> None:
    now = utcnow()
    with unit_of_work(engine) as session:
        session.execute(delete(ForumThreadView))
        session.execute(delete(ForumThreadStat))
        session.execute(
            delete(ForumProjectionEvent).where(ForumProjectionEvent.projection == PROJECTION)
        )
        session.add_all(ForumThreadView(**v) for v in views.values())
        session.add_all(
            ForumThreadStat(ticket=t, run_id=r, state=s, priority=p, thread_count=n)
            for (t, r, s, p), n in stats.items()
        )
        session.add_all(
            ForumProjectionEvent(projection=PROJECTION, event_id=e, applied_at=now)
            for e in event_ids
        )
        session.flush()  # the index is rewritten from the views just written
        search_index.rebuild(session.connection())
