"""The operator loop: decide per run from the snapshot, record changed decisions, act in auto.

A decision is recorded as an ``operator.decision`` event only when it differs from the last one
recorded for the run, so nothing is repeated while nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from metawsm.domain.operator import Decision, decide
from metawsm.domain.snapshot import RunSnapshot
from metawsm.services import snapshot
from metawsm.services.snapshot_reads import Scope
from metawsm.storage.dbapi import Reader, json_value

if TYPE_CHECKING:  # a pass that records nothing imports neither SQLAlchemy nor the messages
    from sqlalchemy import Engine

    from metawsm.runtime import Runtime

OPERATOR_TYPE, OPERATOR_NAME = "operator", "metawsm-operator"
DECISION = "operator.decision"


class Acted(NamedTuple):
    """One decision and what became of it (a ``NamedTuple``: see ``Decision``)."""

    decision: Decision
    recorded: bool
    executed: bool
    error: str | None = None


def last_fingerprint(engine: Engine, run_id: str) -> str | None:
    """Fingerprint of the last decision recorded for ``run_id``."""
    return last_fingerprints(engine, [run_id]).get(run_id)


def last_fingerprints(engine: Engine, run_ids: Collection[str]) -> dict[str, str]:
    """Fingerprint of the last decision recorded for each of ``run_ids`` that has one
    (:func:`fingerprints_in` on a connection of ``engine``)."""
    from metawsm.storage.dbapi import on_connection
    from metawsm.storage.uow import unit_of_work

    if not run_ids:
        return {}
    with unit_of_work(engine, readonly=True) as session:
        return fingerprints_in(on_connection(session.connection()), Scope(tuple(run_ids)))


def fingerprints_in(db: Reader, scope: Scope) -> dict[str, str]:
    """Fingerprint of the last decision recorded for each run of ``scope`` that has one.

    One statement: per run, the newest ``operator.decision`` found through the
    (run_id, event_type, sequence) index.
    """
    where, params = scope.where("run_id")
    sql = (
        "SELECT e.run_id, e.payload FROM forum_events e JOIN (SELECT run_id,"
        " max(sequence) AS seq FROM forum_events"
        f" WHERE {where} AND event_type = :decision GROUP BY run_id) n ON e.sequence = n.seq"
    )
    rows = db.tuples(sql, {**params, "decision": DECISION})
    if db.dialect == "sqlite":  # the payload as text: orjson, ~8 times json's speed (1,000 runs)
        import orjson

        return {str(rid): str(orjson.loads(p)["fingerprint"]) for rid, p in rows}
    return {str(rid): str(json_value(p, db.dialect)["fingerprint"]) for rid, p in rows}


def operate_once(
    rt: Runtime,
    *,
    run_id: str | None,
    mode: str,
    dry_run: bool,
    stale_after_s: int,
    now: datetime | None = None,
) -> list[Acted]:
    """One pass over the selected runs (one run, or all active runs and the completed ones)."""
    now = now or rt.clock()
    return act_on(rt, selected(rt, run_id, now), mode=mode, dry_run=dry_run,
                  stale_after_s=stale_after_s, now=now)  # fmt: skip


def selected(rt: Runtime, run_id: str | None, now: datetime) -> list[RunSnapshot]:
    """The run, or every active run plus the completed ones (which close_ready acts on), as
    decided from (snapshot_parts.decision_snapshot: not to be shown)."""
    snap = snapshot.build(rt.engine, rt.settings, run_id=run_id, now=now, with_completed=True,
                          for_decisions=True)  # fmt: skip
    return snap.runs


def act_on(
    rt: Runtime,
    runs: list[RunSnapshot],
    *,
    mode: str,
    dry_run: bool,
    stale_after_s: int,
    now: datetime,
) -> list[Acted]:
    """Decide for each of ``runs``; record (and in auto execute) the decisions that changed."""
    known = {} if dry_run else last_fingerprints(rt.engine, [r.run_id for r in runs])
    return act_on_changed(lambda: rt, runs, known, mode=mode, dry_run=dry_run,
                          stale_after_s=stale_after_s, now=now)  # fmt: skip


def act_on_changed(
    runtime: Callable[[], Runtime],
    runs: list[RunSnapshot],
    known: Mapping[str, str],
    *,
    mode: str,
    dry_run: bool,
    stale_after_s: int,
    now: datetime,
) -> list[Acted]:
    """Decide for each of ``runs``; record (and in auto execute) each decision whose
    fingerprint differs from ``known`` (the last recorded, :func:`fingerprints_in`).

    ``runtime`` is asked for only when something is recorded: a pass that decides nothing new
    reads and writes through the driver alone (the command line builds no engine for it).
    """
    out = []
    for run in runs:
        decision = decide(run, mode=mode, now=now, stale_after_s=stale_after_s)
        if dry_run or decision.fingerprint == known.get(run.run_id):
            out.append(Acted(decision, recorded=False, executed=False))
            continue
        out.append(_act(runtime(), decision, mode))
    return out


def _act(rt: Runtime, decision: Decision, mode: str) -> Acted:
    from metawsm.errors import Rejected
    from metawsm.messages.common import Actor
    from metawsm.services import gates
    from metawsm.services.unit_of_work import UnitOfWork
    from metawsm.storage.models import Run

    operator = Actor(type=OPERATOR_TYPE, name=OPERATOR_NAME)
    executed, error = False, None
    if decision.executes:
        try:
            gates.close_run(rt, decision.run_id, dry_run=False, actor=operator)
            executed = True
        except Rejected as exc:
            error = str(exc)
    with UnitOfWork(rt) as uow:
        run = uow.session.get_one(Run, decision.run_id)
        payload = {
            "intent": decision.intent,
            "reason": decision.reason[:2000],
            "mode": mode,
            "command": decision.command,
            "executed": executed,
            "fingerprint": decision.fingerprint,
        }
        writer = uow.events(operator)
        writer.append("operator.decision", payload, run_id=run.run_id, ticket=run.tickets[0])
    return Acted(decision, recorded=True, executed=executed, error=error)
