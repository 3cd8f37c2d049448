"""Watch classification (spec §8.3, plus SLA escalations): one class per run, from the snapshot.

Every class comes with a hint: the exact command that resolves it, filled in.
"""

from __future__ import annotations

import shlex
from functools import lru_cache
from typing import NamedTuple

from metawsm.domain.sla import ESCALATING_STATES
from metawsm.domain.snapshot import EscalationItem, RunSnapshot

# Exit codes of single-run watch when it stops on a terminal class.
WATCH_EXIT = {"run_done": 0, "run_failed": 1, "run_stopped": 5, "guidance_needed": 6}
TERMINAL = frozenset(WATCH_EXIT)
UNHEALTHY = ("stalled", "failed", "dead")


class Alert(NamedTuple):
    """A run's class with a message and the command that resolves it.

    A ``NamedTuple``: a dataclass costs ~1 ms to make at import, in every ``watch`` process.
    """

    run_id: str
    event: str
    message: str
    hint: str | None
    terminal: bool


# The words of a hint repeat in every run's (and run ids in every pass): each quoted once.
_quote = lru_cache(maxsize=8192)(shlex.quote)


def _q(*parts: str) -> str:
    return " ".join(map(_quote, parts))


def _live_escalations(run: RunSnapshot) -> list[EscalationItem]:
    """Raised escalations of what still waits (the thread, or the same guidance request),
    then the candidates due now; an answered or closed thread's escalation is history."""
    waiting = {t.thread_id for t in run.open_threads if t.state in ESCALATING_STATES}
    asked = {g.request_event_id for g in run.pending_guidance}
    raised = [
        e for e in run.escalations if e.thread_id in waiting or (e.subject and e.subject in asked)
    ]
    return raised or run.escalation_candidates


def classify(run: RunSnapshot) -> Alert:
    """The run's class, first match wins."""
    rid = run.run_id
    if run.status == "failed":
        return Alert(
            rid,
            "run_failed",
            f"run {rid} failed: see its history",
            _q("metawsm", "run", "resume", "--run-id", rid),
            True,
        )
    if run.status == "stopped":
        return Alert(
            rid,
            "run_stopped",
            f"run {rid} is stopped",
            _q("metawsm", "run", "resume", "--run-id", rid),
            True,
        )
    if run.pending_guidance:
        g = run.pending_guidance[0]
        more = f" (+{len(run.pending_guidance) - 1} more)" if len(run.pending_guidance) > 1 else ""
        hint = _q(
            "metawsm",
            "forum",
            "signal",
            "--run-id",
            rid,
            "--agent-name",
            g.agent_name,
            "--type",
            "guidance_answer",
            "--answer",
            "<answer>",
        )
        return Alert(
            rid, "guidance_needed", f"agent {g.agent_name} asks: {g.question}{more}", hint, True
        )
    live = _live_escalations(run)
    if live:
        item = live[-1]
        hint = _q("metawsm", "forum", "answer", "--thread-id", item.thread_id, "--body", "<answer>")
        return Alert(rid, "sla_escalation", f"escalated to {item.tier}: {item.reason}", hint, False)
    if run.status in ("completed", "closed"):
        done_hint = None
        if run.status == "completed":
            gated = any(b.kind == "gate" for b in run.blockers)
            done_hint = (
                _q("metawsm", "run", "why", "--run-id", rid)
                if gated
                else _q("metawsm", "close", "--run-id", rid)
            )
        return Alert(rid, "run_done", f"run {rid} is {run.status}", done_hint, True)
    sick = [a for a in run.agents if a.status in UNHEALTHY]
    if sick and run.status == "running":
        more = f" (+{len(sick) - 1} more)" if len(sick) > 1 else ""
        hint = _q(
            "metawsm",
            "run",
            "agent-status",
            "--run-id",
            rid,
            "--agent-name",
            sick[0].agent_name,
            "--status",
            "running",
        )
        return Alert(
            rid,
            "agent_unhealthy",
            f"agent {sick[0].agent_name} is {sick[0].status}{more}",
            hint,
            False,
        )
    return Alert(rid, "ok", f"run {rid} is {run.status}", None, False)
