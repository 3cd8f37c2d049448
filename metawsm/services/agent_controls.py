"""The ``run_agent_controls`` read model: each agent's control state, one row per (run, agent).

The ``control_signal`` handler advances the row (:func:`record_signal`) in the transaction that
logs the signal, so the row is never behind the log. The snapshot, the close gates, the SLA pass
and the lifecycle consumer read these rows (:func:`states_of`, one statement for any number of
runs) instead of folding every signal of every agent. ``projections rebuild`` refills them from
the log (:func:`expected_rows`, :func:`refill`) and ``--check`` compares (:func:`differences`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    BindParameter,
    Connection,
    String,
    bindparam,
    delete,
    insert,
    select,
    text,
    type_coerce,
    update,
)

from metawsm.domain.control import AgentControl, ControlState, SignalRecord, advance
from metawsm.domain.control import controls_at as controls_at  # where callers have found it
from metawsm.services.bulk import driver_rows
from metawsm.services.logfold import decoded_payload
from metawsm.storage import tables
from metawsm.storage.types import as_utc

if TYPE_CHECKING:  # annotations only: a rebuild imports neither the ORM nor its classes
    from sqlalchemy.orm import Session

    from metawsm.storage.models import Run, RunAgentControl

SIGNAL = "forum.control.signal"
_CONTROLS = tables.run_agent_controls
_THREADS = tables.forum_control_threads.c
_EVENTS = tables.forum_events.c
_STATE_FIELDS = tuple(f.name for f in fields(ControlState))
COLUMNS = ("run_id", *_STATE_FIELDS)
# Every signal of every control thread, in thread order (the rebuild's input).
_LOG = (
    select(
        _THREADS.run_id,
        _THREADS.agent_name,
        _THREADS.thread_id,
        _EVENTS.event_id,
        _EVENTS.thread_seq,
        _EVENTS.occurred_at,
        _EVENTS.payload,
    )
    .outerjoin(
        tables.forum_events,
        (_EVENTS.thread_id == _THREADS.thread_id) & (_EVENTS.event_type == SIGNAL),
    )
    .order_by(_THREADS.run_id, _THREADS.agent_name, _EVENTS.thread_seq)
)
# The same, its time and payload read as the driver gives them (the rebuild's fold converts).
_DRIVER_LOG = _LOG.with_only_columns(
    *_LOG.selected_columns[:5],
    type_coerce(_EVENTS.occurred_at, String),
    type_coerce(_EVENTS.payload, String),
)
_AGENTS = (
    select(tables.run_agents.c.agent_name)
    .where(tables.run_agents.c.run_id == bindparam("b_run"))
    .order_by(tables.run_agents.c.agent_name)
)
_KEY = (_CONTROLS.c.run_id == bindparam("b_run")) & (_CONTROLS.c.agent_name == bindparam("b_agent"))
_ONE = select(_CONTROLS).where(_KEY)
_RUN_IDS: BindParameter[Any] = bindparam("run_ids", expanding=True)

Key = tuple[str, str]


def signal_record(
    event_id: str, thread_id: str, seq: int, occurred_at: datetime, payload: Mapping[str, Any]
) -> SignalRecord:
    """The control signal of one ``forum.control.signal`` event."""
    signal = payload.get("signal", {}) or {}
    return SignalRecord(
        event_id=event_id,
        thread_id=thread_id,
        thread_seq=seq,
        epoch=int(payload.get("epoch", 1)),
        occurred_at=occurred_at,
        control_type=str(signal.get("control_type", "")),
        fields={k: v for k, v in signal.items() if isinstance(v, str) or v is None},
    )


def open_thread(session: Session, run_id: str, agent_name: str, thread_id: str) -> None:
    """The (empty) row of a control thread just opened, in the caller's transaction."""
    state = ControlState(agent_name, thread_id)
    session.connection().execute(insert(_CONTROLS), {"run_id": run_id, **_values(state)})


def record_signal(session: Session, run_id: str, agent_name: str, record: SignalRecord) -> None:
    """Advance the agent's row by the signal just logged, in the caller's transaction.

    Core statements on the session's connection (one read, one write of the changed columns):
    the ORM's unit of work would cost more than the row. A row missing (a database restored
    without it) is folded from the control thread's whole log first (``record`` included, which
    :func:`advance` then skips): never wrong, only slower.
    """
    conn = session.connection()
    key = {"b_run": run_id, "b_agent": agent_name}
    found = conn.execute(_ONE, key).first()
    if found is None:
        state = fold_thread(session, agent_name, record.thread_id)
        after = advance(state, record)
        conn.execute(insert(_CONTROLS), {"run_id": run_id, **_values(after)})
        return
    state = ControlState(*found[1:])
    after = advance(state, record)
    changed = {k: v for k, v in _values(after).items() if getattr(state, k) != v}
    if changed:
        conn.execute(update(_CONTROLS).where(_KEY).values(**changed), key)


def fold_thread(session: Session, agent_name: str, thread_id: str) -> ControlState:
    """The state of one control thread folded from every signal logged on it."""
    e = _EVENTS
    rows = session.execute(
        select(e.event_id, e.thread_seq, e.occurred_at, e.payload)
        .where(e.thread_id == thread_id, e.event_type == SIGNAL)
        .order_by(e.thread_seq)
    )
    state = ControlState(agent_name=agent_name, thread_id=thread_id)
    for event_id, seq, at, payload in rows:
        state = advance(state, signal_record(event_id, thread_id, seq or 0, at, payload))
    return state


def states_of(session: Session, run_ids: Collection[str]) -> dict[str, dict[str, ControlState]]:
    """The stored state of every agent with a control thread, per run (one statement)."""
    if not run_ids:
        return {}
    return states_in(session, lambda c: c.in_(_RUN_IDS), {"run_ids": list(run_ids)})


def states_in(
    session: Session, runs: Callable[[Any], Any], params: Mapping[str, Any]
) -> dict[str, dict[str, ControlState]]:
    """The stored states of the runs ``runs(run_id column)`` selects, per run and agent."""
    out: dict[str, dict[str, ControlState]] = {}
    query = select(_CONTROLS).where(runs(_CONTROLS.c.run_id))
    for row in session.execute(query, params):
        values = row._asdict()
        run_id = values.pop("run_id")
        out.setdefault(run_id, {})[values["agent_name"]] = ControlState(**values)
    return out


def controls_of_run(session: Session, run: Run) -> dict[str, AgentControl]:
    """Every agent's control state in the run's current epoch, by name (two statements)."""
    agents = session.execute(_AGENTS, {"b_run": run.run_id}).scalars().all()
    return controls_at(agents, states_of(session, [run.run_id]).get(run.run_id, {}),
                       run.control_epoch)  # fmt: skip


def _state(row: RunAgentControl) -> ControlState:
    return ControlState(**{name: getattr(row, name) for name in _STATE_FIELDS})


def _values(state: ControlState) -> dict[str, Any]:
    # Its fields as they are (each immutable): dataclasses.asdict deep-copies every value, a
    # tenth of a rebuild's time on the 10k store.
    return {name: getattr(state, name) for name in _STATE_FIELDS}


# Rebuild ------------------------------------------------------------------------------------


def hold_writers(conn: Connection) -> None:
    """Keep control-signal handlers from writing a row until ``conn``'s transaction ends
    (PostgreSQL; on SQLite a writing transaction already excludes every other writer)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("LOCK TABLE run_agent_controls IN EXCLUSIVE MODE"))


def expected_rows(conn: Connection) -> dict[Key, dict[str, Any]]:
    """Every row as the log implies it: each control thread's signals folded in thread order."""
    states: dict[Key, tuple[str, ControlState]] = {}
    # The rows as the driver gives them (SQLite: times and payloads as text), converted here:
    # SQLAlchemy's per-row processors and row objects cost more than the fold of the signal.
    for run_id, agent, thread_id, event_id, seq, at, payload in driver_rows(conn, _DRIVER_LOG):
        key = (run_id, agent)
        if key not in states:
            states[key] = (run_id, ControlState(agent_name=agent, thread_id=thread_id))
        if event_id is not None:
            record = signal_record(event_id, thread_id, seq or 0, as_utc(at),
                                   decoded_payload(payload))  # fmt: skip
            states[key] = (run_id, advance(states[key][1], record))
    return {key: {"run_id": run_id, **_values(s)} for key, (run_id, s) in states.items()}


def differences(conn: Connection, expected: Mapping[Key, dict[str, Any]]) -> list[str]:
    """Rows that differ from ``expected``, are missing or unexpected (one line each)."""
    live = {(r.run_id, r.agent_name): r._asdict() for r in conn.execute(select(_CONTROLS))}
    lines = []
    for key in sorted(set(live) | set(expected)):
        have, want = live.get(key), expected.get(key)
        if have == want:
            continue
        label = f"agent control {key[0]}/{key[1]}"
        if have is None or want is None:
            lines.append(f"{label}: {'missing' if have is None else 'unexpected'}")
            continue
        lines += [
            f"{label}.{c}: live={have[c]!r} rebuilt={want[c]!r}"
            for c in COLUMNS
            if have[c] != want[c]
        ]
    return lines


def refill(conn: Connection, expected: Mapping[Key, dict[str, Any]]) -> None:
    """Replace every row with ``expected``."""
    conn.execute(delete(_CONTROLS))
    if expected:
        conn.execute(insert(_CONTROLS), list(expected.values()))
