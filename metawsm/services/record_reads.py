"""The run and dead-letter reads of the command line, through the driver (no SQLAlchemy).

``command_outcome`` is ``metawsm command show``: a command's outcome looked up later.

Same results as ``services/runs.py`` (``run_rows``, ``run_history``) and
``services/deadletters.py`` (``list_dead_letters``, ``show_dead_letter``), which in-process
callers use; ``tests/integration/test_direct_reads.py`` compares them on both backends. A list
of runs is three statements whatever the number of runs (runs, their agents, their briefs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metawsm.errors import NotFound
from metawsm.storage.dbapi import Reader, iso, json_value

if TYPE_CHECKING:
    from metawsm.services.accept import Outcome

_RUNS = (
    "SELECT run_id, status, mode, tickets, control_epoch, reason, created_at, updated_at"
    " FROM runs{where} ORDER BY created_at DESC, run_id DESC"
)
_AGENTS = (
    "SELECT run_id, agent_name, status, last_signal_at FROM run_agents{where}"
    " ORDER BY run_id, agent_name"
)
_BRIEFS = (
    "SELECT run_id, ticket, goal, scope, done_criteria, constraints, merge_intent"
    " FROM run_briefs{where}"
)
_HISTORY = (
    "SELECT from_status, to_status, reason, cause_event_id, created_at AS at FROM run_events"
    " WHERE run_id = :run_id ORDER BY id"
)
_DEAD = (
    "SELECT message_id, kind, task_name, topic, error, attempts, status, run_id,"
    " first_failed_at, last_failed_at, redriven_at{full} FROM forum_dead_letters{where}"
)
_DEAD_TIMES = ("first_failed_at", "last_failed_at", "redriven_at")


def run_rows(db: Reader, run_id: str | None = None) -> list[dict[str, Any]]:
    """Runs as plain data (one, or all newest first), with agents and brief.

    Raises:
        NotFound: ``run_id`` names no run.
    """
    where = "" if run_id is None else " WHERE run_id = :run_id"
    params = {} if run_id is None else {"run_id": run_id}
    runs = db.rows(_RUNS.format(where=where), params)
    if run_id is not None and not runs:
        raise NotFound(f"run {run_id} not found")
    agents: dict[str, list[dict[str, Any]]] = {}
    for a in db.rows(_AGENTS.format(where=where), params):
        agents.setdefault(a.pop("run_id"), []).append(
            {**a, "last_signal_at": iso(a["last_signal_at"])}
        )
    briefs = {b.pop("run_id"): b for b in db.rows(_BRIEFS.format(where=where), params)}
    return [_run_out(db, run, agents.get(run["run_id"], []), briefs) for run in runs]


def _run_out(
    db: Reader, run: dict[str, Any], agents: list[dict[str, Any]], briefs: dict[str, Any]
) -> dict[str, Any]:
    return {
        **run,
        "tickets": list(json_value(run["tickets"], db.dialect) or []),
        "created_at": iso(run["created_at"]),
        "updated_at": iso(run["updated_at"]),
        "agents": agents,
        "brief": briefs.get(run["run_id"]),
    }


def run_history(db: Reader, run_id: str) -> list[dict[str, Any]]:
    """The run's status transitions, oldest first, each with its cause."""
    return [{**r, "at": iso(r["at"])} for r in db.rows(_HISTORY, {"run_id": run_id})]


def list_dead_letters(db: Reader, *, include_all: bool = False) -> list[dict[str, Any]]:
    """Dead letters, newest first (only those still dead unless ``include_all``)."""
    where = "" if include_all else " WHERE status = 'dead'"
    sql = _DEAD.format(full="", where=where) + " ORDER BY last_failed_at DESC"
    return [_dead_out(db, row) for row in db.rows(sql)]


def show_dead_letter(db: Reader, message_id: str) -> dict[str, Any]:
    """One dead letter with its payload and traceback.

    Raises:
        NotFound: no dead letter has that message id.
    """
    sql = _DEAD.format(full=", payload, traceback", where=" WHERE message_id = :message_id")
    rows = db.rows(sql, {"message_id": message_id})
    if not rows:
        raise NotFound(f"no dead letter with message id {message_id}")
    return _dead_out(db, rows[0])


def _dead_out(db: Reader, row: dict[str, Any]) -> dict[str, Any]:
    for name in _DEAD_TIMES:
        row[name] = iso(row[name])
    if "payload" in row:
        row["payload"] = json_value(row["payload"], db.dialect)
    return row


_OUTBOX_STATE = "SELECT status, last_error FROM forum_outbox WHERE message_id = :cid"


def command_outcome(db: Reader, command_id: str) -> Outcome:
    """Where the command ``command_id`` stands; an accepted one says whether it is published.

    Raises:
        NotFound: no command with that id was ever accepted.
    """
    from metawsm.services.accept import read_outcome

    outcome = read_outcome(db, command_id)
    if outcome is None:
        raise NotFound(f"command {command_id} not found")
    if outcome.final:
        return outcome
    rows = db.rows(_OUTBOX_STATE, {"cid": command_id})
    if rows and rows[0]["status"] != "sent":
        return outcome.unpublished(rows[0]["last_error"] or "not published yet")
    return outcome
