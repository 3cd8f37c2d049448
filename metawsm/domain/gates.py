"""Close gates: what must hold before a run closes, and the exact command that meets each gate.

Pure rules over facts already read (the run, its failed agents, its brief's done criteria, its
agents' control states): ``services/gates.py`` reads them for a close, the snapshot for its
blockers, with the same rules.
"""

import shlex
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple, Protocol

from metawsm.domain.agent_control import AgentControl
from metawsm.domain.runs import RunStatus


class RunFacts(Protocol):
    """What the reads, gates and snapshot use of a run: an ORM ``Run`` or a plain row."""

    @property
    def run_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def control_epoch(self) -> int: ...


class Gate(NamedTuple):
    """One close gate: whether it is met, why not, and the command that would meet it.

    A ``NamedTuple``: a 1,000-run snapshot builds thousands (its blockers).
    """

    name: str
    met: bool
    reason: str
    fix: str | None = None
    agent_name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return dict(self._asdict())


@lru_cache(maxsize=8192)
def _q(value: str) -> str:
    # Run ids and agent names repeat across gates and snapshots: quote each once.
    return shlex.quote(value)


def _signal_head(run_id: str, agent: str) -> str:
    # The command that signals for ``agent``, up to its type: once per agent, whatever it fixes.
    return f"metawsm forum signal --run-id {_q(run_id)} --agent-name {_q(agent)}"


@lru_cache(maxsize=1024)
def _signal_tail(kind: str, extra: tuple[str, ...], actor: str) -> str:
    # The snapshot renders thousands of these: what follows the agent is the same for every
    # agent of a run (often of every run), so it is quoted and joined once.
    values = " ".join(map(_q, extra))
    return f"--type {_q(kind)}{' ' if values else ''}{values} --actor-type {_q(actor)}"


_ANSWER_TAIL = _signal_tail("guidance_answer", ("--answer", "<answer>"), "operator")
_COMPLETION_TAIL = _signal_tail("completion", ("--summary", "<summary>"), "agent")


def _validation_tail(want: str) -> str:
    return _signal_tail("validation", ("--status", "passed", "--done-criteria", want), "agent")


def gates_of(
    run: RunFacts,
    failed: list[str],
    done_criteria: str | None,
    controls: Mapping[str, AgentControl],
    *,
    unmet_only: bool = False,
) -> list[Gate]:
    """Every gate of ``run`` in check order, from its failed agents' names, its brief's done
    criteria (None: no brief) and its agents' control states.

    ``unmet_only``: just the unmet ones (the snapshot's blockers), without building the others.
    """
    gates = _failed_agent_gates(run, failed)
    status = _status_gate(run)
    if not (unmet_only and status.met):
        gates.append(status)
    criteria = (done_criteria.strip() if done_criteria else "") or None
    if run.mode == "bootstrap" and not (unmet_only and criteria is not None):
        gates.append(
            Gate(
                "brief",
                criteria is not None,
                "a bootstrap run needs a brief with done criteria"
                if criteria is None
                else "brief has done criteria",
            )
        )
    for name, state in controls.items():
        gates.extend(_agent_gates(run, name, state, criteria, unmet_only))
    return gates


def gate_count(mode: str, status: str, agent_count: int, failed_count: int) -> int:
    """How many gates :func:`gates_of` checks for a run in ``mode`` and ``status`` with
    ``agent_count`` agents, ``failed_count`` of them reported failed: met plus unmet, so a page
    that has only the unmet ones (the snapshot's blockers) can say how many are met."""
    failed = failed_count if status == RunStatus.FAILED.value else 0
    return failed + 1 + (1 if mode == "bootstrap" else 0) + 3 * agent_count


_DONE = frozenset({RunStatus.COMPLETED.value, RunStatus.CLOSED.value})
_RESUMABLE = frozenset({RunStatus.STOPPED.value, RunStatus.PAUSED.value, RunStatus.FAILED.value})


_STATUSES = frozenset(s.value for s in RunStatus)
_FAILED = RunStatus.FAILED.value  # an enum member's .value is a descriptor call: once, here


def _status_gate(run: RunFacts) -> Gate:
    status = str(run.status)
    if status not in _STATUSES:  # an unknown status is an error, as it always was
        RunStatus(status)  # raises ValueError naming it
    if status in _DONE:
        return Gate("status", True, f"run is {status}")
    fix = f"metawsm run resume --run-id {_q(run.run_id)}" if status in _RESUMABLE else None
    return Gate("status", False, f"run is {status}, not completed", fix)


def _failed_agent_gates(run: RunFacts, failed: list[str]) -> list[Gate]:
    # A run failed by an agent goes straight back to failed on resume while that agent is still
    # reported failed, so name the command that clears it (before the status gate's resume).
    if run.status != _FAILED:
        return []
    rid = shlex.quote(run.run_id)
    return [
        Gate(
            "agent",
            False,
            f"agent {name} is reported failed",
            f"metawsm run agent-status --run-id {rid} --agent-name {shlex.quote(name)}"
            " --status running",
            name,
        )
        for name in failed
    ]


def _agent_gates(
    run: RunFacts, name: str, state: AgentControl, criteria: str | None, unmet_only: bool = False
) -> list[Gate]:
    head = _signal_head(run.run_id, name)
    gates = []
    if not (unmet_only and not state.pending):
        gates.append(
            Gate(
                "guidance",
                not state.pending,
                f"agent {name} has pending guidance: {state.question}"
                if state.pending
                else f"agent {name} has no pending guidance",
                f"{head} {_ANSWER_TAIL}" if state.pending else None,
                name,
            )
        )
    if not (unmet_only and state.completed):
        gates.append(
            Gate(
                "completion",
                state.completed,
                f"agent {name} signalled completion"
                if state.completed
                else f"agent {name} has not signalled completion in epoch {run.control_epoch}",
                None if state.completed else f"{head} {_COMPLETION_TAIL}",
                name,
            )
        )
    status_ok = state.validation_status == "passed"
    criteria_ok = run.mode != "bootstrap" or (
        criteria is not None and state.validation_done_criteria == criteria
    )
    if unmet_only and status_ok and criteria_ok:
        return gates
    want = criteria or "<done criteria>"
    gates.append(
        Gate(
            "validation",
            status_ok and criteria_ok,
            _validation_reason(name, state, status_ok, criteria_ok, run.control_epoch),
            None if status_ok and criteria_ok else f"{head} {_validation_tail(want)}",
            name,
        )
    )
    return gates


def _validation_reason(
    name: str, state: AgentControl, status_ok: bool, criteria_ok: bool, epoch: int
) -> str:
    if state.validation_status is None:
        return f"agent {name} has no validation signal in epoch {epoch}"
    if not status_ok:
        return f"agent {name} validation status is {state.validation_status!r}, not 'passed'"
    if not criteria_ok:
        return f"agent {name} validation done_criteria does not match the brief"
    return f"agent {name} validation passed"
