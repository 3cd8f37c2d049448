"""Where an agent (or a run-bound identity) may write: the tickets of its runs.

An agent proven by a token opens threads and posts on the tickets of the runs it takes part in
(``run_agents``); a run-bound identity only on its run's tickets and threads. A local identity
(no token) is only declared, so its place is not limited (docs/identities.md).

Checked when the command is accepted, through the same driver transaction (a few indexed reads,
for these identities only): the runs an agent belongs to are fixed when the run is created, so
the answer cannot change between accept and apply. Operators, humans and ``system`` not bound
to a run are not limited.

A post names a thread: its ticket and run come from the thread row, or, while the thread is
still being opened, from the accepted ``open_thread`` command in the ledger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from metawsm.errors import Forbidden
from metawsm.identity import Identity
from metawsm.messages.plain import payload_value
from metawsm.storage.dbapi import Reader, json_value

if TYPE_CHECKING:
    from metawsm.services.accept import Acceptable

_RUNS_OF_AGENT = (
    "SELECT r.run_id, r.tickets FROM run_agents a JOIN runs r ON r.run_id = a.run_id"
    " WHERE a.agent_name = :agent"
)
_RUN = "SELECT run_id, tickets FROM runs WHERE run_id = :run_id"
_THREAD = "SELECT ticket, run_id FROM forum_threads WHERE thread_id = :thread_id"
_OPENING = (
    "SELECT payload FROM forum_commands WHERE thread_id = :thread_id"
    " AND command_type = 'open_thread' AND status = 'accepted'"
)


def limited(identity: Identity) -> bool:
    """True when ``identity`` writes only within its runs: a proven agent, or a run-bound
    identity (a local identity is only declared: limiting its place would stop nobody)."""
    return identity.run_id is not None or (identity.proven and identity.actor_type == "agent")


def check_scope(db: Reader, identity: Identity, command: Acceptable) -> None:
    """Refuse a thread write outside the runs of a limited identity.

    Raises:
        Forbidden: ``outside_own_runs`` naming the ticket (or thread) and the identity.
    """
    if not limited(identity):
        return
    if command.command_type == "open_thread":
        ticket, run_id = payload_value(command, "ticket"), payload_value(command, "run_id")
        _check_place(db, identity, ticket, run_id, None)
        return
    thread_id = payload_value(command, "thread_id")
    place = _thread_place(db, thread_id) if thread_id else None
    if place is not None:
        _check_place(db, identity, place[0], place[1], thread_id)


def _check_place(
    db: Reader, identity: Identity, ticket: str, run_id: str | None, thread_id: str | None
) -> None:
    runs = _runs_of(db, identity)
    if run_id is not None:
        fits = ticket in runs.get(run_id, ())
    else:
        fits = any(ticket in tickets for tickets in runs.values())
    if fits:
        return
    where = f"thread {thread_id} (ticket {ticket})" if thread_id else f"ticket {ticket}"
    if run_id is not None:
        where += f" of run {run_id}"
    mine = "its run " + identity.run_id if identity.run_id else "the runs it takes part in"
    raise Forbidden(
        f"{identity.label} may not write on {where}: it writes only on the tickets of {mine}",
        rule="outside_own_runs",
    )


def _runs_of(db: Reader, identity: Identity) -> dict[str, list[str]]:
    """The runs ``identity`` may write in, with their tickets: an agent's runs (only its bound
    run, when bound), or the bound run of another identity."""
    if identity.actor_type == "agent":
        rows = db.rows(_RUNS_OF_AGENT, {"agent": identity.actor_name})
        if identity.run_id is not None:
            rows = [row for row in rows if row["run_id"] == identity.run_id]
    else:
        rows = db.rows(_RUN, {"run_id": identity.run_id})
    return {r["run_id"]: list(json_value(r["tickets"], db.dialect) or []) for r in rows}


def _thread_place(db: Reader, thread_id: str) -> tuple[str, str | None] | None:
    """(ticket, run id) of a thread, or of its accepted opening command; None if unknown."""
    rows = db.rows(_THREAD, {"thread_id": thread_id})
    if rows:
        return rows[0]["ticket"], rows[0]["run_id"]
    opening: list[dict[str, Any]] = db.rows(_OPENING, {"thread_id": thread_id})
    if not opening:
        return None  # no thread and no opening in flight: the handler rejects it as not found
    payload = json_value(opening[0]["payload"], db.dialect)["payload"]
    return payload["ticket"], payload.get("run_id")
