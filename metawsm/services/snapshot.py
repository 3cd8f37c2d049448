"""Building the typed snapshot of one run, a ticket's runs, or all active runs.

Reads the database alone (no Redis). ``status`` renders it; watch and operator decide from it.
One builder, :func:`read`, on a driver-level :class:`~metawsm.storage.dbapi.Reader`: the command
line runs it straight on the driver (no SQLAlchemy imported), in-process callers through
:func:`build`, on a connection of their engine. Each run's parts that do not depend on the clock
come from its stored document while that is up to date (services/snapshot_docs.py: two
statements for runs that did not change); the others' documents are made from their facts, read
in a fixed number of statements whatever the number of runs (services/snapshot_reads.py), and
the typed parts are made from the documents and the clock (services/snapshot_parts.py;
docs/performance.md, "Snapshot at scale").
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from metawsm.domain.runs import ACTIVE, RunStatus
from metawsm.domain.snapshot import Snapshot
from metawsm.errors import NotFound
from metawsm.services import snapshot_docs as docs
from metawsm.services import snapshot_parts as parts
from metawsm.services import snapshot_reads as reads
from metawsm.services.snapshot_reads import RunRow, Scope
from metawsm.settings import Settings
from metawsm.storage.dbapi import Reader, placeholders

if TYPE_CHECKING:  # the command line builds on the driver and never imports SQLAlchemy
    from sqlalchemy import Engine

ACTIVE_STATUSES = tuple(sorted(s.value for s in ACTIVE))


def build(
    engine: Engine,
    settings: Settings,
    *,
    run_id: str | None = None,
    ticket: str | None = None,
    now: datetime | None = None,
    with_completed: bool = False,
    stored: bool = True,
    for_decisions: bool = False,
) -> Snapshot:
    """:func:`read` on a connection of ``engine``, in one read-only transaction that sees one
    state of the database (REPEATABLE READ on PostgreSQL; SQLite's read transaction already
    does); then the run documents it made are stored (services/snapshot_docs.py ``keep``).
    ``for_decisions``: as :func:`snapshot_of`.

    Raises:
        NotFound: the run (or any run on the ticket) does not exist.
    """
    from metawsm.storage.dbapi import on_connection
    from metawsm.storage.types import utcnow
    from metawsm.storage.uow import unit_of_work

    now = now or utcnow()
    fresh: list[docs.Fresh] = []
    with unit_of_work(_consistent(engine), readonly=True) as session:
        db = on_connection(session.connection())
        snap = read(db, settings, run_id=run_id, ticket=ticket, now=now,
                    with_completed=with_completed, fresh=fresh, stored=stored,
                    for_decisions=for_decisions)  # fmt: skip
    if fresh:
        # On a connection of its own: the read's is read-only on PostgreSQL.
        with engine.connect() as connection:
            docs.keep(connection.connection.driver_connection, engine.dialect.name, fresh)
    return snap


def _consistent(engine: Engine) -> Engine:
    if engine.dialect.name != "postgresql":
        return engine
    return engine.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)


def read(
    db: Reader,
    settings: Settings,
    *,
    now: datetime,
    run_id: str | None = None,
    ticket: str | None = None,
    with_completed: bool = False,
    fresh: list[docs.Fresh] | None = None,
    stored: bool = True,
    for_decisions: bool = False,
) -> Snapshot:
    """Snapshot of ``run_id``, of every run on ``ticket``, or of every active run, inside the
    caller's read transaction on ``db`` (which should see one state: see :func:`build`).

    ``with_completed`` (no selector): the completed runs too, after the active ones, by id (the
    runs the operator decides on). ``fresh``: the run documents made by this read (their
    stored ones were missing or out of date) are appended to it, for the caller to store after
    the read (services/snapshot_docs.py ``keep``). ``stored`` False: every document made
    again, none read (the cost of a snapshot after every run changed: bench/).
    ``for_decisions``: as :func:`snapshot_of`.

    Raises:
        NotFound: the run (or any run on the ticket) does not exist.
    """
    with paused_cycle_collection():
        documents = read_documents(
            db, run_id=run_id, ticket=ticket, with_completed=with_completed, fresh=fresh,
            stored=stored,
        )  # fmt: skip
        return snapshot_of(documents, settings, now, for_decisions=for_decisions)


def snapshot_of(
    documents: Sequence[tuple[RunRow, list[Any]]],
    settings: Settings,
    now: datetime,
    *,
    for_decisions: bool = False,
) -> Snapshot:
    """The snapshot at ``now`` of the runs of :func:`read_documents`; ``for_decisions``: only
    what the operator decides from (snapshot_parts.decision_snapshot), never to be shown."""
    clock = parts.Clock(settings, now)
    made = parts.decision_snapshot if for_decisions else parts.run_snapshot
    return Snapshot(now, [made(run, doc, clock) for run, doc in documents])


def read_documents(
    db: Reader,
    *,
    run_id: str | None = None,
    ticket: str | None = None,
    with_completed: bool = False,
    fresh: list[docs.Fresh] | None = None,
    stored: bool = True,
) -> list[tuple[RunRow, list[Any]]]:
    """The runs :func:`read` shows, each with its document (decoded; the parts of its snapshot
    that do not depend on the clock), in their order: what ``status --json`` writes straight
    from (cli/snapshot_json.py). ``fresh`` and ``stored`` as for :func:`read`.

    Raises:
        NotFound: the run (or any run on the ticket) does not exist.
    """
    runs, scope = _select(db, run_id, ticket, with_completed)
    return list(zip(runs, documents_of(db, runs, scope, fresh, stored=stored), strict=True))


@contextmanager
def paused_cycle_collection() -> Iterator[None]:
    """The cycle collector paused for the block (resumed after it if it was on)."""
    # A 1,000-run snapshot makes ~40,000 tuples, lists and dicts, enough allocations to set off
    # the cycle collector's full pass over the whole process (~15 ms on the 100k store, every
    # other snapshot in a long-lived process: a third of a snapshot). None of them is part of
    # a cycle (reference counting frees them), so the collector is paused for the build and
    # runs, if due, after it. Only resumed if it was on: a caller that switched it off keeps
    # it off. Another thread meanwhile is not harmed: its collections are only deferred.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _select(
    db: Reader, run_id: str | None, ticket: str | None, with_completed: bool
) -> tuple[list[RunRow], Scope]:
    if run_id is not None:
        runs = reads.runs(db, "run_id = :run_id", {"run_id": run_id})
        if not runs:
            raise NotFound(f"run {run_id} not found")
        return runs, Scope((run_id,))
    if ticket is not None:
        wanted = ticket.lower()
        runs = [r for r in reads.runs(db) if wanted in (t.lower() for t in r.tickets)]
        if not runs:
            raise NotFound(f"no run on ticket {ticket}")
        return runs, Scope(tuple(r.run_id for r in runs))
    marks, params = placeholders("s_", ACTIVE_STATUSES)
    runs = reads.runs(db, f"status IN ({marks})", params)
    statuses = ACTIVE_STATUSES
    if with_completed:
        runs += reads.runs_by_id(db, "status = :done", {"done": RunStatus.COMPLETED.value})
        statuses += (RunStatus.COMPLETED.value,)
    # Every run in these statuses: each statement reads them by a subquery, no ids bound.
    return runs, Scope(tuple(r.run_id for r in runs), statuses)


def documents_of(
    db: Reader,
    runs: Sequence[RunRow],
    scope: Scope,
    fresh: list[docs.Fresh] | None = None,
    *,
    stored: bool = True,
) -> list[list[Any]]:
    """The documents of ``runs`` (the runs of ``scope``), in their order: each the stored one
    when that is up to date (``stored``), else one made now (appended to ``fresh``)."""
    if not runs:
        return []
    found_docs = reads.stored_docs(db, scope) if stored else {}
    documents: dict[str, list[Any]] = {}
    stale = []
    for run in runs:
        found = found_docs.get(run.run_id)
        if found is not None and found[0] == run.facts_version:
            doc = docs.decode(found[1])
            if parts.doc_fits(doc, run):
                documents[run.run_id] = doc
                continue
        stale.append(run)
    if stale:
        # Every run's facts read by the selection's own condition when none is up to date.
        made = made_docs(db, stale, scope if len(stale) == len(runs) else
                         Scope(tuple(r.run_id for r in stale)))  # fmt: skip
        for run in stale:
            encoded = made[run.run_id]
            documents[run.run_id] = docs.decode(encoded)
            if fresh is not None:
                fresh.append(docs.Fresh(run.run_id, run.facts_version, encoded))
    return [documents[run.run_id] for run in runs]


def made_docs(db: Reader, runs: Sequence[RunRow], scope: Scope) -> dict[str, bytes]:
    """The documents of ``runs`` (the runs of ``scope``) made from their facts, read now in a
    fixed number of statements (services/snapshot_reads.py), encoded as stored."""
    agents, controls = reads.agents(db, scope, {r.run_id: r.control_epoch for r in runs})
    views = reads.open_views(db, scope)
    facts = parts.Facts(
        agents=agents,
        controls={r.run_id: controls.get(r.run_id, {}) for r in runs},
        briefs=reads.briefs(db, scope),
        views=views,
        counts=reads.state_counts(db, scope, views),
        raised=reads.escalations(db, scope),
        dead=reads.dead_letters(db, scope),
        last=reads.last_events(db, scope),
    )
    return {r.run_id: docs.encode(parts.doc_of(r, facts)) for r in runs}
