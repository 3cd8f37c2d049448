"""The control state of a run's agents from the few signals that decide it (from the log).

The lifecycle consumer decides from the log (this fold), not from the ``run_agent_controls`` read
model the handler writes: a consumer replaying events decides from what the log says.

:func:`metawsm.domain.control.fold_agent` reads, of an agent's signals, only these: the newest
signal (thread, time, event id), the newest guidance request or answer (pending or not, the
question), the newest request (``request_seq``), and the newest completion and validation of the
run's current epoch. Folding just those, in thread order, gives the state the whole thread gives.

So the lifecycle consumer does not load every signal of a run on every signal (quadratic over a
run's life: 82 ms per signal with 2,000 in a thread): one statement finds the deciding
``thread_seq`` of each control thread (an aggregate the database computes over the thread's rows,
through the ``(thread_id, thread_seq)`` index, without sending them), a second loads those rows
(at most five per agent), and ``fold_agent`` folds them. Same result as
:func:`metawsm.services.runs.agent_controls`, which tests compare it with.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, bindparam, case, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from metawsm.domain.control import AgentControl, SignalRecord, fold_agent
from metawsm.services.runs import _record as signal_record
from metawsm.storage.models import ForumControlThread, ForumEvent, Run, RunAgent

SIGNAL = "forum.control.signal"
_KIND = func.coalesce(ForumEvent.payload[("signal", "control_type")].as_string(), "")
_IN_EPOCH = func.coalesce(ForumEvent.payload["epoch"].as_integer(), 1) == bindparam("b_epoch")


def _newest(condition: ColumnElement[bool]) -> Any:
    """The highest thread_seq among the thread's signals meeting ``condition``."""
    return func.max(case((condition, ForumEvent.thread_seq)))


# Built once with bind parameters, so SQLAlchemy's compiled cache serves every call.
_THREAD_SIGNALS = and_(
    ForumEvent.thread_id.in_(bindparam("b_threads", expanding=True)),
    ForumEvent.event_type == SIGNAL,
)
_DECIDING = (
    select(
        ForumEvent.thread_id,
        func.max(ForumEvent.thread_seq),
        _newest(_KIND.in_(("guidance_request", "guidance_answer"))),
        _newest(_KIND == "guidance_request"),
        _newest(and_(_KIND == "completion", _IN_EPOCH)),
        _newest(and_(_KIND == "validation", _IN_EPOCH)),
    )
    .where(_THREAD_SIGNALS)
    .group_by(ForumEvent.thread_id)
)
# A superset of the deciding rows (any of the threads at any of the seqs), filtered after.
_ROWS = select(ForumEvent).where(
    _THREAD_SIGNALS, ForumEvent.thread_seq.in_(bindparam("b_seqs", expanding=True))
)
_AGENTS = select(RunAgent.agent_name).where(RunAgent.run_id == bindparam("b_run"))
_MAPPING = select(ForumControlThread.agent_name, ForumControlThread.thread_id).where(
    ForumControlThread.run_id == bindparam("b_run")
)


def latest_controls(session: Session, run: Run) -> dict[str, AgentControl]:
    """Every agent's control state (equal to ``agent_controls``) from its deciding signals."""
    names = sorted(session.execute(_AGENTS, {"b_run": run.run_id}).scalars())
    mapping = {name: thread for name, thread in session.execute(_MAPPING, {"b_run": run.run_id})}
    threads = [mapping[name] for name in names if name in mapping]
    records = _deciding_records(session, threads, run.control_epoch)
    states = {}
    for name in names:
        state = fold_agent(name, records.get(mapping.get(name, ""), []), run.control_epoch)
        state.thread_id = state.thread_id or mapping.get(name)
        states[name] = state
    return states


def _deciding_records(
    session: Session, thread_ids: list[str], epoch: int
) -> dict[str, list[SignalRecord]]:
    """Per control thread, the signal records that decide its agent's state."""
    if not thread_ids:
        return {}
    found = session.execute(_DECIDING, {"b_threads": thread_ids, "b_epoch": epoch}).all()
    wanted = {(thread_id, seq) for thread_id, *seqs in found for seq in seqs if seq is not None}
    if not wanted:
        return {}
    params = {"b_threads": thread_ids, "b_seqs": sorted({seq for _, seq in wanted})}
    records: dict[str, list[SignalRecord]] = {}
    for row in session.execute(_ROWS, params).scalars():
        if (row.thread_id, row.thread_seq) in wanted:
            records.setdefault(row.thread_id or "", []).append(signal_record(row))
    return records
