"""Importing legacy file signals (spec §12) as control signals: the one-off cutover backfill.

Before the cutover agents wrote JSON files under ``<root>/.metawsm/``; nothing reads or writes
them any more. This module is the only place that knows their names and formats. It reads them
(never writes, moves or deletes them), checks each with the legacy acceptance rules, maps them to
control signals of one run and submits those through the pipeline in a fixed order per agent.
Command ids are derived from (run, agent, file kind, sha256 of the file's canonical content), so
importing the same files again submits the same ids and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Engine

from metawsm.errors import UsageError, WaitTimeout
from metawsm.messages.commands import AnyCommand
from metawsm.messages.control import parse_control
from metawsm.runtime import Runtime
from metawsm.services.runs import run_rows
from metawsm.services.submit import make_command, read_outcome, submit, wait_for_outcome

LEGACY_DIR = ".metawsm"
REQUEST = "guidance-request.json"
RESPONSE = "guidance-response.json"
COMPLETE = "implementation-complete.json"
VALIDATION = "validation-result.json"
FILE_NAMES = (REQUEST, RESPONSE, COMPLETE, VALIDATION)
IMPORT_ACTOR = "metawsm-legacy-import"
ASK = "guidance_request"
FAILED_OUTCOMES = ("rejected", "dead")


@dataclass(frozen=True)
class LegacyFile:
    """One legacy signal file as read from disk: its path, file name and text."""

    path: str
    name: str
    text: str


@dataclass(frozen=True)
class Skipped:
    """A file (or a root) left out of the import, and why."""

    path: str
    reason: str

    def as_dict(self) -> dict[str, str]:
        """Plain data for JSON output."""
        return {"path": self.path, "reason": self.reason}


@dataclass(frozen=True)
class RunScope:
    """What files are checked against: the run, its agents, and the ``--agent-name`` default."""

    run_id: str
    agents: tuple[str, ...]
    agent_name: str | None = None


@dataclass(frozen=True)
class PlannedSignal:
    """One control signal to submit, with the file it came from and its deterministic id."""

    path: str
    agent_name: str
    signal: dict[str, Any]
    command_id: str
    actor_type: str

    @property
    def control_type(self) -> str:
        """guidance_request, guidance_answer, completion or validation."""
        return str(self.signal["control_type"])

    def command(self, run_id: str) -> AnyCommand:
        """The ``control_signal`` command (the ticket defaults to the run's)."""
        payload: dict[str, object] = {
            "run_id": run_id,
            "agent_name": self.agent_name,
            "signal": self.signal,
        }
        return make_command(
            "control_signal",
            payload,
            actor_type=self.actor_type,
            actor_name=IMPORT_ACTOR,
            command_id=self.command_id,
        )


@dataclass(frozen=True)
class Plan:
    """The signals to submit, in order, and every file left out."""

    run_id: str
    signals: list[PlannedSignal]
    skipped: list[Skipped]


@dataclass(frozen=True)
class _Accepted:
    file: LegacyFile
    agent: str
    signals: dict[str, PlannedSignal]  # by control type (a response gives a request and answer)


def signal_dir(root: Path) -> Path:
    """``<root>/.metawsm``, or ``root`` itself when it already is a ``.metawsm`` directory."""
    return root if root.name == LEGACY_DIR else root / LEGACY_DIR


def read_roots(roots: Iterable[Path]) -> list[LegacyFile | Skipped]:
    """The legacy files under each root, in root order; unreadable ones as skipped entries."""
    found: list[LegacyFile | Skipped] = []
    seen: set[Path] = set()
    for root in roots:
        directory = signal_dir(root)
        if directory.resolve() in seen:
            continue  # the same root given twice (or as itself and as its .metawsm)
        seen.add(directory.resolve())
        if not directory.is_dir():
            found.append(Skipped(str(directory), "no legacy signal directory here"))
            continue
        for name in FILE_NAMES:
            path = directory / name
            if not path.exists():
                continue
            try:
                found.append(LegacyFile(str(path), name, path.read_text(encoding="utf-8")))
            except (OSError, UnicodeError) as exc:
                found.append(Skipped(str(path), f"malformed: cannot read as UTF-8 text ({exc})"))
    return found


def plan_import(entries: Iterable[LegacyFile | Skipped], scope: RunScope) -> Plan:
    """Check every file (spec §12.2) and order the signals per agent (pure: no I/O).

    Per agent the first acceptable file of each kind counts (roots in the order given), later
    ones are skipped as duplicates. Order: the request a response answered, the answer, a request
    still open, completion, validation — the order that yields the status the files meant.
    """
    skipped: list[Skipped] = []
    chosen: dict[tuple[str, str], _Accepted] = {}
    for entry in entries:
        result = entry if isinstance(entry, Skipped) else accept_file(entry, scope)
        if isinstance(result, Skipped):
            skipped.append(result)
            continue
        taken = chosen.setdefault((result.agent, result.file.name), result)
        if taken is not result:
            skipped.append(
                Skipped(
                    result.file.path,
                    f"duplicate: agent {result.agent}'s {result.file.name}"
                    f" was already taken from {taken.file.path}",
                )
            )
    signals = [s for agent in scope.agents for s in _agent_signals(chosen, agent)]
    return Plan(run_id=scope.run_id, signals=signals, skipped=skipped)


def _agent_signals(chosen: dict[tuple[str, str], _Accepted], agent: str) -> list[PlannedSignal]:
    request, response = chosen.get((agent, REQUEST)), chosen.get((agent, RESPONSE))
    out: list[PlannedSignal] = []
    if response is not None:
        asked = response.signals[ASK]
        if request is not None and _question(request) == asked.signal["question"]:
            asked, request = request.signals[ASK], None  # the request this response answered
        out += [asked, response.signals["guidance_answer"]]
    if request is not None:
        out.append(request.signals[ASK])
    for name in (COMPLETE, VALIDATION):
        if (agent, name) in chosen:
            out += chosen[(agent, name)].signals.values()
    return out


def _question(accepted: _Accepted) -> str:
    return str(accepted.signals[ASK].signal["question"])


def accept_file(file: LegacyFile, scope: RunScope) -> _Accepted | Skipped:
    """Apply the acceptance rules to one file: its signals, or why it is skipped."""
    try:
        data = json.loads(file.text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        bodies = _FIELDS[file.name](data)
        run_id, named = _text(data, "run_id"), _text(data, "agent")
    except ValueError as exc:
        return Skipped(file.path, f"malformed: {_detail(exc)}")
    if run_id and run_id != scope.run_id:
        return Skipped(file.path, f"run_id mismatch: the file names {run_id}, not {scope.run_id}")
    agent, problem = _pick_agent(named, scope)
    if problem:
        return Skipped(file.path, problem)
    digest = content_digest(data)
    try:
        signals = {
            kind: _planned(file, scope.run_id, agent, kind, body, digest)
            for kind, body in bodies.items()
        }
    except ValueError as exc:  # pydantic: a body too large for a control signal
        return Skipped(file.path, f"malformed: {_detail(exc)}")
    return _Accepted(file=file, agent=agent, signals=signals)


def _pick_agent(named: str, scope: RunScope) -> tuple[str, str | None]:
    """The file's agent, else --agent-name, else the run's only agent; and why it cannot be."""
    if named and scope.agent_name and named != scope.agent_name:
        return named, f"agent mismatch: the file names {named}, --agent-name is {scope.agent_name}"
    agent = named or scope.agent_name or (scope.agents[0] if len(scope.agents) == 1 else "")
    if not agent:
        return agent, (
            "cannot tell the agent: the file names none, no --agent-name was given"
            f" and run {scope.run_id} has {len(scope.agents)} agents"
        )
    if agent not in scope.agents:
        return agent, f"agent {agent} is not in run {scope.run_id}"
    return agent, None


def _text(data: dict[str, Any], key: str, required: bool = False) -> str:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key} must be a string")
    text = (value or "").strip()
    if required and not text:
        raise ValueError(f"{key} is required (blank or missing)")
    return text


def _json_text(data: dict[str, Any], key: str) -> str | None:
    """A string as it is; any other JSON value re-serialised compactly (legacy ``context``)."""
    value = data.get(key)
    if value is None or isinstance(value, str):
        return (value or "").strip() or None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _request(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    question = _text(data, "question", required=True)
    return {ASK: {"question": question, "context": _json_text(data, "context")}}


def _response(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    question = _text(data, "question", required=True)
    answer = _text(data, "answer", required=True)
    return {ASK: {"question": question}, "guidance_answer": {"answer": answer}}


def _complete(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"completion": {"summary": _json_text(data, "summary")}}


def _validation(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    status = _text(data, "status", required=True).lower()
    if status not in ("passed", "failed"):
        raise ValueError(f"status must be passed or failed, not {status!r}")
    criteria = _text(data, "done_criteria", required=True)
    return {"validation": {"status": status, "done_criteria": criteria}}


_FIELDS = {REQUEST: _request, RESPONSE: _response, COMPLETE: _complete, VALIDATION: _validation}


def _planned(
    file: LegacyFile, run_id: str, agent: str, control_type: str, body: dict[str, Any], digest: str
) -> PlannedSignal:
    signal = parse_control(
        {"control_type": control_type, "run_id": run_id, "agent_name": agent, **body}
    ).model_dump(mode="json", exclude_none=True)
    return PlannedSignal(
        path=file.path,
        agent_name=agent,
        signal=signal,
        command_id=legacy_command_id(run_id, agent, f"{file.name}#{control_type}", digest),
        actor_type="operator" if control_type == "guidance_answer" else "system",
    )


def content_digest(data: Any) -> str:
    """sha256 (hex) of a file's canonical JSON: sorted keys, no spaces, so layout does not count."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def legacy_command_id(run_id: str, agent: str, kind: str, digest: str) -> str:
    """``legacy-<24 hex>``: sha256 of (run, agent, file kind and role, content digest)."""
    key = "\n".join((run_id, agent, kind, digest))
    return "legacy-" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


def _detail(exc: ValueError) -> str:
    if isinstance(exc, ValidationError):  # loc[0] is the control type (the union's tag)
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON ({exc})"
    return str(exc)


@dataclass(frozen=True)
class Imported:
    """What became of one planned signal.

    ``outcome`` is applied, rejected or dead (final), timeout (still in flight), planned (dry
    run) or not_submitted (after a timeout the rest waits for the next import, to keep order).
    """

    signal: PlannedSignal
    outcome: str
    already_imported: bool = False
    reason: str | None = None
    thread_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {
            "path": self.signal.path,
            "agent_name": self.signal.agent_name,
            "signal_type": self.signal.control_type,
            "command_id": self.signal.command_id,
            "outcome": self.outcome,
            "already_imported": self.already_imported,
            "reason": self.reason,
            "thread_id": self.thread_id,
        }


@dataclass
class Report:
    """Everything an import did (or, dry, would do) and every file it left out."""

    imported: list[Imported] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """True when a signal was rejected or dead-lettered."""
        return any(i.outcome in FAILED_OUTCOMES for i in self.imported)

    @property
    def timed_out(self) -> bool:
        """True when waiting for a signal's outcome timed out (the rest was not submitted)."""
        return any(i.outcome == "timeout" for i in self.imported)

    def as_dict(self) -> dict[str, Any]:
        """``{"imported": [...], "skipped": [...]}``."""
        return {
            "imported": [i.as_dict() for i in self.imported],
            "skipped": [s.as_dict() for s in self.skipped],
        }


def run_scope(engine: Engine, run_id: str, agent_name: str | None) -> RunScope:
    """The run's agents and the default agent.

    Raises:
        NotFound: no such run.
        UsageError: ``agent_name`` is not an agent of the run.
    """
    agents = tuple(a["agent_name"] for a in run_rows(engine, run_id)[0]["agents"])
    if agent_name and agent_name not in agents:
        raise UsageError(f"--agent-name {agent_name} is not an agent of run {run_id}")
    return RunScope(run_id=run_id, agents=agents, agent_name=agent_name or None)


def import_legacy(
    rt: Runtime,
    plan: Plan,
    *,
    dry_run: bool = False,
) -> Report:
    """Submit the plan's signals one by one, each waited for so the order holds.

    A known command id is not submitted again (``already_imported``). On a wait timeout the
    remaining signals are left ``not_submitted``; importing again picks them up.
    """
    report = Report(skipped=list(plan.skipped))
    for planned in plan.signals:
        if report.timed_out:
            report.imported.append(Imported(planned, "not_submitted"))
            continue
        known = read_outcome(rt.engine, planned.command_id)
        if known is not None and known.final:
            report.imported.append(
                Imported(planned, known.status, True, known.reason, known.thread_id)
            )
        elif dry_run:
            report.imported.append(Imported(planned, "planned", known is not None))
        else:
            sent = _submit_one(rt, plan.run_id, planned)
            report.imported.append(replace(sent, already_imported=known is not None))
    return report


def _submit_one(rt: Runtime, run_id: str, planned: PlannedSignal) -> Imported:
    sent = submit(rt, planned.command(run_id))
    try:
        done = wait_for_outcome(rt.engine, planned.command_id, rt.settings.wait_timeout_s)
    except WaitTimeout as exc:
        reason = f"{sent.publish_error}; {exc}" if sent.publish_error else str(exc)
        return Imported(planned, "timeout", reason=reason)
    return Imported(planned, done.status, reason=done.reason, thread_id=done.thread_id)
