"""The rows of bench/scale.py's table: what each runs (as a process and in-process) and its target.

Targets are issue 12's (SQLite, this machine). A process row's target is the command line's
"any read on an existing database ≤ 150 ms process wall time" unless the issue names another;
in-process rows carry the per-operation targets (snapshot ≤ 50 ms for all active runs, ≤ 5 ms
for one; search ≤ 20 ms; queues ≤ 10 ms; list ≤ 5 ms; newest 50 posts of 10,000 ≤ 10 ms).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from metawsm.settings import Settings

PROCESS_READ_MS = 150.0
VIEWER = ("human", "hana")


@dataclass(frozen=True)
class Row:
    """One operation: its label, CLI arguments, in-process call, and targets (ms)."""

    key: str
    label: str
    cli: list[str] | None
    process_target_ms: float | None = PROCESS_READ_MS
    inprocess: Callable[[Engine, Settings], Any] | None = None
    inprocess_target_ms: float | None = None


def _snapshot(run_id: str | None = None, stored: bool = True) -> Callable[[Engine, Settings], Any]:
    def call(engine: Engine, settings: Settings) -> Any:
        from metawsm.services import snapshot

        if not stored:  # every run's document made again (and stored), as after every run changed
            return snapshot.build(engine, settings, run_id=run_id, stored=False)
        return snapshot.build(engine, settings, run_id=run_id)

    return call


def _search(text: str | None, queue: str | None) -> Callable[[Engine, Settings], Any]:
    def call(engine: Engine, _settings: Settings) -> Any:
        from metawsm.services import queries

        viewer = VIEWER if queue == "unseen" else None
        return queries.search(engine, queries.ThreadFilter(), text, viewer=viewer, queue=queue)

    return call


def _list(engine: Engine, _settings: Settings) -> Any:
    from metawsm.services import queries

    return queries.list_threads(engine, queries.ThreadFilter())


def _thread(thread_id: str, limit: int | None) -> Callable[[Engine, Settings], Any]:
    def call(engine: Engine, _settings: Settings) -> Any:
        from metawsm.services import queries

        if limit is not None:
            if "limit" not in inspect.signature(queries.thread_detail).parameters:
                raise TypeError("thread_detail has no limit")
            detail: Any = queries.thread_detail
            return detail(engine, thread_id, limit=limit)  # paging, once it exists
        return queries.thread_detail(engine, thread_id)

    return call


def read_rows(word: str, big: dict[str, str], thread_paging: bool) -> list[Row]:
    """Rows that only read (any order, any number of times)."""
    unseen = ["--viewer-type", VIEWER[0], "--viewer-id", VIEWER[1]]
    rows = [
        Row("search_query", f"`forum search --query {word}`",
            ["forum", "search", "--query", word, "--json"], inprocess=_search(word, None),
            inprocess_target_ms=20),
        Row("queue_unanswered", "`forum search --queue unanswered`",
            ["forum", "search", "--queue", "unanswered", "--json"],
            inprocess=_search(None, "unanswered"), inprocess_target_ms=10),
        Row("queue_unseen", "`forum search --queue unseen`",
            ["forum", "search", "--queue", "unseen", *unseen, "--json"],
            inprocess=_search(None, "unseen"), inprocess_target_ms=10),
        Row("forum_list", "`forum list` (default limit)", ["forum", "list", "--json"],
            inprocess=_list, inprocess_target_ms=5),
        Row("thread_1000", "`forum thread` with 1,000 posts",
            ["forum", "thread", "--thread-id", big["1000"], "--json"],
            inprocess=_thread(big["1000"], None)),
    ]  # fmt: skip
    newest = ["forum", "thread", "--thread-id", big["10000"], "--limit", "50", "--json"]
    rows.append(
        Row("thread_newest_50", "`forum thread --limit 50`, newest 50 of 10,000 posts",
            newest if thread_paging else None, inprocess=_thread(big["10000"], 50),
            inprocess_target_ms=10)
    )  # fmt: skip
    return rows


def snapshot_rows(target: int, active: int, one_run: str | None) -> list[Row]:
    """Rows over the runs, measured while ``active`` runs (``target`` on a full store) are
    active; with ``one_run``, also the rows measured only with all runs active."""
    runs = f"{active:,} active runs"
    rows = [
        Row(f"status_all_{target}", f"`status --all --json`, {runs}",
            ["status", "--all", "--json"], inprocess=_snapshot(), inprocess_target_ms=50),
    ]  # fmt: skip
    if one_run and _can_remake():
        # No target of its own: the is the snapshot as it is read (documents stored);
        # this is what the first snapshot after every run changed costs (docs/performance.md).
        rows.append(Row(f"status_all_{target}_made",
                        f"snapshot of {runs}, every run's document made again and stored",
                        None, None, inprocess=_snapshot(stored=False)))  # fmt: skip
    if one_run:
        rows += [
            Row("watch_once", f"`watch --all --once`, {runs}", ["watch", "--all", "--once"]),
            Row("operator_once", f"`operator --once`, {runs}", ["operator", "--once"]),
        ]
        rows.append(
            Row("status_one", "`status --run-id` (one run)",
                ["status", "--run-id", one_run, "--json"], inprocess=_snapshot(one_run),
                inprocess_target_ms=5)
        )  # fmt: skip
    return rows


def _can_remake() -> bool:
    # Older code (measured for a before) has no stored documents to leave aside.
    from metawsm.services import snapshot

    return "stored" in inspect.signature(snapshot.build).parameters


VERSION_ROW = Row("version", "`metawsm --version` (process)", ["--version"], 60)
