"""The snapshot's reads: a fixed set of statements for any number of runs, through the driver.

Each function runs one statement (SQL text on a :class:`~metawsm.storage.dbapi.Reader`, so the
command line needs no SQLAlchemy) and returns its rows grouped by run, converted as the column
types convert them (timestamps aware UTC, booleans, JSON). Every statement goes through an index
(docs/performance.md, "Snapshot at scale"; ``bench/snapshot.py --plans``). Which runs a statement
reads is a :class:`Scope`: a few ids, or every run in some statuses (a subquery on ``runs``, no
thousand ids to bind).
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple

import orjson

from metawsm.domain.agent_control import AgentControl, control_in_epoch
from metawsm.storage.dbapi import Reader, json_value, placeholders

# The operator's own decisions are not activity of a run: counting them would make a stale run
# look busy again (and change its decision) every time the operator notes it.
OPERATOR_DECISION = "operator.decision"

_fromiso = datetime.fromisoformat
_new = tuple.__new__  # a row made in C: see services/snapshot_parts.py
_NAIVE_LENGTHS = (19, 26)  # how SQLite stores a timestamp: naive UTC, with or without micros


def utc(value: Any) -> Any:
    """A stored timestamp as aware UTC (SQLite: naive text; PostgreSQL: aware), None as None.

    As ``storage.types.UTCDateTime`` reads it; the common SQLite form is parsed with its UTC
    offset appended (several times cheaper than ``replace(tzinfo=...)`` afterwards).
    """
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) in _NAIVE_LENGTHS:
            return _fromiso(value + "+00:00")
        value = _fromiso(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Scope(NamedTuple):
    """Which runs a statement reads: ``ids``, or (``statuses``) every run in those statuses."""

    ids: tuple[str, ...]
    statuses: tuple[str, ...] | None = None

    def where(self, column: str) -> tuple[str, dict[str, Any]]:
        """The condition that ``column`` is one of the runs, and its parameters."""
        if self.statuses is not None:
            marks, params = placeholders("s_", self.statuses)
            return f"{column} IN (SELECT run_id FROM runs WHERE status IN ({marks}))", params
        marks, params = placeholders("r_", self.ids)
        return f"{column} IN ({marks})", params


class RunRow(NamedTuple):
    """The columns of a run the snapshot shows (and the gates read)."""

    run_id: str
    status: str
    mode: str
    tickets: list[str]
    control_epoch: int
    updated_at: datetime
    facts_version: int  # changes to its snapshot's facts so far (runs.facts_version)


class ViewRow(NamedTuple):
    """A waiting thread as the SLA rules read it (``domain.sla.ThreadFacts``)."""

    thread_id: str
    run_id: str | None
    agent_name: str | None
    title: str
    state: str
    priority: str
    updated_at: datetime


class Raised(NamedTuple):
    """An escalation raised on one of the runs."""

    thread_id: str
    tier: str
    reason: str
    subject: str
    raised_at: datetime


class DeadLetter(NamedTuple):
    """A dead letter still dead, naming one of the runs."""

    message_id: str
    topic: str
    error: str


_RUNS = (
    "SELECT run_id, status, mode, tickets, control_epoch, updated_at, facts_version"
    " FROM runs{where} ORDER BY {order}"
)
_NEWEST_FIRST = "created_at DESC, run_id DESC"


def runs(db: Reader, where: str = "", params: dict[str, Any] | None = None) -> list[RunRow]:
    """The runs matching ``where`` (SQL after WHERE; none: every run), newest first."""
    return _run_rows(db, _RUNS.format(where=f" WHERE {where}" if where else "",
                                      order=_NEWEST_FIRST), params)  # fmt: skip


def runs_by_id(db: Reader, where: str, params: dict[str, Any]) -> list[RunRow]:
    """The runs matching ``where``, by id."""
    return _run_rows(db, _RUNS.format(where=f" WHERE {where}", order="run_id"), params)


def _run_rows(db: Reader, sql: str, params: dict[str, Any] | None) -> list[RunRow]:
    rows = db.tuples(sql, params)
    if db.dialect == "sqlite":  # the tickets as JSON text: a list of names, read by orjson
        loads = orjson.loads  # (a third of the statement's time with json.loads, 1,000 runs)
        return [
            _new(RunRow, (rid, status, mode, (tickets and loads(tickets)) or [], epoch, utc(at), v))
            for rid, status, mode, tickets, epoch, at, v in rows
        ]
    return [
        RunRow(rid, status, mode, list(json_value(tickets, db.dialect) or []), epoch, utc(at), v)
        for rid, status, mode, tickets, epoch, at, v in rows
    ]


def stored_docs(db: Reader, scope: Scope) -> dict[str, tuple[int, bytes]]:
    """The stored snapshot document of each run that has one: the ``facts_version`` it was
    made at and its JSON (services/snapshot_docs.py)."""
    if scope.statuses is not None:  # joined from the runs (a third cheaper than IN (SELECT))
        marks, params = placeholders("s_", scope.statuses)
        sql = (
            "SELECT d.run_id, d.facts_version, d.doc FROM runs r"
            f" JOIN run_snapshot_docs d ON d.run_id = r.run_id WHERE r.status IN ({marks})"
        )
    else:
        where, params = scope.where("run_id")
        sql = f"SELECT run_id, facts_version, doc FROM run_snapshot_docs WHERE {where}"
    return {rid: (version, doc) for rid, version, doc in db.tuples(sql, params)}


class AgentRow(NamedTuple):
    """An agent of a run (its control state: :func:`agents`' second mapping)."""

    agent_name: str
    status: str
    last_signal_at: datetime | None


# The columns of ``run_agent_controls`` the snapshot shows. The others (the summary, the
# request's sequence, the last signal's time and event: an agent's last signal shown is
# run_agents', the last thread sequence folded) are not read: each value read costs the driver
# ~0.2 us, and a 1,000-run snapshot reads 2,000 agents.
CONTROL_COLUMNS = (
    "thread_id", "pending", "question", "context", "asked_at", "request_event_id",
    "completion_epoch", "validation_epoch", "validation_status", "validation_done_criteria",
)  # fmt: skip
_CONTROL_SELECT = ", ".join(f"c.{n}" for n in CONTROL_COLUMNS)


def shown_control(name: str, row: Sequence[Any], epoch: int) -> AgentControl:
    """Agent ``name``'s control state in ``epoch`` from the :data:`CONTROL_COLUMNS` of its
    ``run_agent_controls`` row (all None: it has no control thread yet); what is not read is
    None (the request's sequence 0)."""
    (thread_id, pending, question, context, asked_at, request_event_id, completion_epoch,
     validation_epoch, validation_status, criteria) = row  # fmt: skip
    if pending is None:  # never NULL in a row: no row
        return AgentControl(name)
    return control_in_epoch(epoch, name, thread_id, bool(pending), question, context,
                            utc(asked_at), request_event_id, 0, completion_epoch, None,
                            validation_epoch, validation_status, criteria, None, None)  # fmt: skip


def agents(
    db: Reader, scope: Scope, epochs: Mapping[str, int]
) -> tuple[dict[str, list[AgentRow]], dict[str, dict[str, AgentControl]]]:
    """Each run's agents, by name, and each one's control state in its run's epoch
    (``epochs``: of every run read) from ``run_agent_controls``: one statement for both."""
    where, params = scope.where("a.run_id")
    sql = (
        f"SELECT a.run_id, a.agent_name, a.status, a.last_signal_at, {_CONTROL_SELECT}"
        " FROM run_agents a LEFT JOIN run_agent_controls c"
        " ON c.run_id = a.run_id AND c.agent_name = a.agent_name"
        f" WHERE {where} ORDER BY a.run_id, a.agent_name"
    )
    rows: dict[str, list[AgentRow]] = {}
    controls: dict[str, dict[str, AgentControl]] = {}
    for rid, name, status, at, *control in db.tuples(sql, params):
        rows.setdefault(rid, []).append(_new(AgentRow, (name, status, utc(at))))
        controls.setdefault(rid, {})[name] = shown_control(name, control, epochs[rid])
    return rows, controls


def briefs(db: Reader, scope: Scope) -> dict[str, tuple[str, str]]:
    """(goal, done criteria) of each run's brief."""
    where, params = scope.where("run_id")
    sql = f"SELECT run_id, goal, done_criteria FROM run_briefs WHERE {where}"
    return {rid: (goal, criteria) for rid, goal, criteria in db.tuples(sql, params)}


_VIEW_STATE = 2  # of an open view's tuple (below)


def open_views(db: Reader, scope: Scope) -> dict[str, list[tuple[Any, ...]]]:
    """Each run's open non-control threads, oldest change first: (thread, title, state,
    priority, assignee, updated_at, is_unanswered as the fold stored it, agent)."""
    where, params = scope.where("run_id")
    sql = (
        "SELECT run_id, thread_id, title, state, priority, assignee_name, updated_at,"
        " is_unanswered, agent_name FROM forum_thread_views"
        f" WHERE {where} AND is_control = FALSE AND state != 'closed'"
        " ORDER BY run_id, last_event_sequence"
    )
    out: dict[str, list[tuple[Any, ...]]] = {}
    for rid, tid, title, state, prio, assignee, at, unanswered, agent in db.tuples(sql, params):
        out.setdefault(rid, []).append(
            (tid, title, state, prio, assignee or None, utc(at), bool(unanswered), agent)
        )
    return out


def state_counts(
    db: Reader, scope: Scope, views: Mapping[str, Sequence[tuple[Any, ...]]]
) -> dict[str, dict[str, int]]:
    """How many non-control threads each run has in each state, by state: the open ones
    counted from ``views`` (:func:`open_views`, read in the same transaction), the closed ones
    by one statement that reads only their range of an index (counting every thread of every
    run there cost twice as many instructions)."""
    where, params = scope.where("run_id")
    sql = (
        "SELECT run_id, count(*) FROM forum_thread_views"
        f" WHERE {where} AND is_control = FALSE AND state = 'closed' GROUP BY run_id"
    )
    counted: dict[str, dict[str, int]] = {}
    for rid, rows in views.items():
        counts = counted[rid] = {}
        for row in rows:
            state = row[_VIEW_STATE]
            counts[state] = counts.get(state, 0) + 1
    for rid, closed in db.tuples(sql, params):
        counted.setdefault(rid, {})["closed"] = int(closed)
    return {rid: dict(sorted(counts.items())) for rid, counts in counted.items()}


def escalations(db: Reader, scope: Scope) -> dict[str, list[Raised]]:
    """The escalations raised on each run, in the order they were raised."""
    where, params = scope.where("run_id")
    sql = (
        "SELECT run_id, thread_id, tier, reason, subject, raised_at FROM forum_escalations"
        f" WHERE {where} ORDER BY run_id, id"  # per run by id, in the run_id index's order
    )
    out: dict[str, list[Raised]] = {}
    times: dict[Any, datetime] = {}  # an SLA pass raises its escalations at one time
    for rid, tid, tier, reason, subject, at in db.tuples(sql, params):
        when = times.get(at)
        if when is None:
            when = times[at] = utc(at)
        out.setdefault(rid, []).append(_new(Raised, (tid, tier, reason, subject, when)))
    return out


def dead_letters(db: Reader, scope: Scope) -> dict[str, list[DeadLetter]]:
    """The dead letters still dead that name each run, oldest first."""
    where, params = scope.where("run_id")
    sql = (
        "SELECT run_id, message_id, topic, error FROM forum_dead_letters"
        f" WHERE {where} AND status = 'dead' ORDER BY run_id, id"
    )
    out: dict[str, list[DeadLetter]] = {}
    for rid, message_id, topic, error in db.tuples(sql, params):
        out.setdefault(rid, []).append(DeadLetter(message_id, topic, error))
    return out


def last_events(db: Reader, scope: Scope) -> dict[str, tuple[int, datetime | None]]:
    """Sequence and time of each run's last event that is not an operator decision.

    One statement: per run, two correlated lookups walk its (run_id, sequence, event_type,
    occurred_at) index backwards and stop at the first event that counts, one for its
    sequence, one for its time: from the index alone (migration 0009), no row of the log read.
    """
    where, params = scope.where("r.run_id")
    newest = (
        "(SELECT l.{column} FROM forum_events l WHERE l.run_id = r.run_id"
        " AND l.event_type != :decision ORDER BY l.sequence DESC LIMIT 1)"
    )
    sequence, time = newest.format(column="sequence"), newest.format(column="occurred_at")
    sql = f"SELECT r.run_id, {sequence}, {time} FROM runs r WHERE {where}"
    rows = db.tuples(sql, {**params, "decision": OPERATOR_DECISION})
    return {rid: (int(seq), utc(at)) for rid, seq, at in rows if seq}
