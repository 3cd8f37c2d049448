"""Legacy file signals (spec §12): the acceptance rules, the mapping and the order, all pure.

Also: since the cutover nothing but the importer knows the legacy file names, and there is no
``guide`` command.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pytest

from metawsm.cli import cli
from metawsm.domain.control import SignalRecord, fold_agent, target_status
from metawsm.domain.runs import RunStatus
from metawsm.services import legacy
from metawsm.services.legacy import (
    COMPLETE,
    FILE_NAMES,
    REQUEST,
    RESPONSE,
    VALIDATION,
    LegacyFile,
    Plan,
    RunScope,
    Skipped,
    plan_import,
    read_roots,
)

ROOT = Path(__file__).resolve().parents[2]
RUN = "run-20260207-abcde"
ONE = RunScope(run_id=RUN, agents=("alice",))
TWO = RunScope(run_id=RUN, agents=("alice", "bob"))


def lf(name: str, data: Any, root: str = "/ws/a") -> LegacyFile:
    """A legacy file under ``<root>/.metawsm`` whose text is ``data`` (JSON unless a str)."""
    text = data if isinstance(data, str) else json.dumps(data, indent=2)
    return LegacyFile(f"{root}/.metawsm/{name}", name, text)


def plan(*files: LegacyFile | Skipped, scope: RunScope = ONE) -> Plan:
    """The plan for ``files`` in ``scope``."""
    return plan_import(files, scope)


def signals(p: Plan) -> list[dict[str, Any]]:
    """The planned signals without the fields every one of them has."""
    return [
        {k: v for k, v in s.signal.items() if k not in ("schema_version", "run_id")}
        for s in p.signals
    ]


def skipped(p: Plan) -> dict[str, str]:
    """Skipped path -> reason."""
    return {s.path: s.reason for s in p.skipped}


# Mapping --------------------------------------------------------------------------------------


def test_each_file_kind_maps_to_its_control_signal() -> None:
    p = plan(
        lf(REQUEST, {"question": " Which DB? ", "context": "the schema"}),
        lf(COMPLETE, {"summary": "done"}),
        lf(VALIDATION, {"status": " PASSED ", "done_criteria": " tests pass "}),
    )
    assert p.skipped == []
    assert signals(p) == [
        {
            "control_type": "guidance_request",
            "agent_name": "alice",
            "question": "Which DB?",
            "context": "the schema",
        },
        {"control_type": "completion", "agent_name": "alice", "summary": "done"},
        {
            "control_type": "validation",
            "agent_name": "alice",
            "status": "passed",
            "done_criteria": "tests pass",
        },
    ]
    assert {s.actor_type for s in p.signals} == {"system"}


@pytest.mark.parametrize(
    ("context", "stored"),
    [
        ({"b": [1, 2], "a": {"x": None}}, '{"b":[1,2],"a":{"x":null}}'),
        (["é", 1.5, True], '["é",1.5,true]'),
        (42, "42"),
        (False, "false"),
        ("  text  ", "text"),
        ("", None),
        (None, None),
    ],
)
def test_a_request_context_is_a_string_or_any_json_value_stored_compactly(
    context: Any, stored: str | None
) -> None:
    (signal,) = plan(lf(REQUEST, {"question": "Q?", "context": context})).signals
    assert signal.signal.get("context") == stored


def test_a_response_without_its_request_file_imports_the_request_first() -> None:
    response = {
        "guidance_id": 7,
        "run_id": RUN,
        "agent": "alice",
        "question": "Which DB?",
        "answer": "SQLite",
        "answered_at": "2026-02-07T10:00:00Z",
    }
    p = plan(lf(RESPONSE, response))
    assert [(s["control_type"], s.get("question"), s.get("answer")) for s in signals(p)] == [
        ("guidance_request", "Which DB?", None),
        ("guidance_answer", None, "SQLite"),
    ]
    assert [s.actor_type for s in p.signals] == ["system", "operator"]
    assert p.signals[0].command_id != p.signals[1].command_id


def test_a_response_answering_the_request_file_pairs_with_it_and_keeps_its_context() -> None:
    p = plan(
        lf(RESPONSE, {"question": "Which DB?", "answer": "SQLite"}),
        lf(REQUEST, {"question": " Which DB? ", "context": {"k": 1}}),
    )
    assert [(s["control_type"], s.get("context")) for s in signals(p)] == [
        ("guidance_request", '{"k":1}'),
        ("guidance_answer", None),
    ]
    assert p.signals[0].path.endswith(REQUEST)


def test_a_request_asked_after_the_last_response_stays_pending_after_the_answer() -> None:
    p = plan(
        lf(REQUEST, {"question": "And the cache?"}),
        lf(RESPONSE, {"question": "Which DB?", "answer": "SQLite"}),
    )
    assert [(s["control_type"], s.get("question")) for s in signals(p)] == [
        ("guidance_request", "Which DB?"),
        ("guidance_answer", None),
        ("guidance_request", "And the cache?"),
    ]


@pytest.mark.parametrize(
    ("data", "summary"),
    [
        ({"status": "done"}, None),
        ({}, None),
        ({"summary": "  shipped  "}, "shipped"),
        ({"summary": {"files": 3}}, '{"files":3}'),
    ],
)
def test_any_json_object_is_a_completion(data: dict[str, Any], summary: str | None) -> None:
    (signal,) = plan(lf(COMPLETE, data)).signals
    assert signal.signal["control_type"] == "completion"
    assert signal.signal.get("summary") == summary


def test_signals_are_ordered_per_agent_request_answer_completion_validation() -> None:
    files = [
        lf(VALIDATION, {"agent": "bob", "status": "failed", "done_criteria": "x"}),
        lf(COMPLETE, {"agent": "bob"}),
        lf(VALIDATION, {"agent": "alice", "status": "passed", "done_criteria": "x"}),
        lf(COMPLETE, {"agent": "alice"}),
        lf(RESPONSE, {"agent": "alice", "question": "Q", "answer": "A"}),
        lf(REQUEST, {"agent": "bob", "question": "Q2"}),
    ]
    p = plan(*files, scope=TWO)
    assert [(s.agent_name, s.control_type) for s in p.signals] == [
        ("alice", "guidance_request"),
        ("alice", "guidance_answer"),
        ("alice", "completion"),
        ("alice", "validation"),
        ("bob", "guidance_request"),
        ("bob", "completion"),
        ("bob", "validation"),
    ]


def _folded_status(p: Plan, agents: tuple[str, ...]) -> list[RunStatus]:
    at = datetime(2026, 2, 7, tzinfo=UTC)
    records: dict[str, list[SignalRecord]] = {a: [] for a in agents}
    for seq, s in enumerate(p.signals, start=1):
        fields = {k: v for k, v in s.signal.items() if isinstance(v, str)}
        record = SignalRecord(f"e{seq}", f"t-{s.agent_name}", seq, 1, at, s.control_type, fields)
        records[s.agent_name].append(record)
    states = {a: fold_agent(a, r, 1) for a, r in records.items()}
    return target_status(RunStatus.RUNNING, states, agent_failed=False)


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ((REQUEST, RESPONSE, COMPLETE, VALIDATION), [RunStatus.COMPLETED]),
        ((RESPONSE, COMPLETE, VALIDATION), [RunStatus.COMPLETED]),
        ((REQUEST, COMPLETE, VALIDATION), [RunStatus.AWAITING_GUIDANCE]),
        ((COMPLETE,), []),
        ((RESPONSE,), []),
    ],
)
def test_the_order_folds_into_the_run_status_the_files_meant(
    names: tuple[str, ...], expected: list[RunStatus]
) -> None:
    bodies = {
        REQUEST: {"question": "Q"},
        RESPONSE: {"question": "Q", "answer": "A"},
        COMPLETE: {"summary": "s"},
        VALIDATION: {"status": "passed", "done_criteria": "tests pass"},
    }
    # Files listed validation first: the plan's order, not the files', decides.
    p = plan(*(lf(n, bodies[n]) for n in reversed(names)))
    assert _folded_status(p, ONE.agents) == expected


# Acceptance rules -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "reason"),
    [
        (REQUEST, '{"question": "Q?",', "invalid JSON"),
        (REQUEST, "", "invalid JSON"),
        (COMPLETE, '["done"]', "not a JSON object"),
        (COMPLETE, '"done"', "not a JSON object"),
        (REQUEST, '{"question": "   "}', "question is required"),
        (REQUEST, '{"context": "c"}', "question is required"),
        (REQUEST, '{"question": 5}', "question must be a string"),
        (RESPONSE, '{"question": "Q", "answer": ""}', "answer is required"),
        (RESPONSE, '{"answer": "A"}', "question is required"),
        (VALIDATION, '{"done_criteria": "x"}', "status is required"),
        (VALIDATION, '{"status": "ok", "done_criteria": "x"}', "status must be passed or failed"),
        (VALIDATION, '{"status": "passed", "done_criteria": " "}', "done_criteria is required"),
        (COMPLETE, '{"run_id": 7}', "run_id must be a string"),
        (COMPLETE, '{"agent": ["alice"]}', "agent must be a string"),
    ],
)
def test_a_malformed_file_is_skipped_and_reported_by_its_path(
    name: str, text: str, reason: str
) -> None:
    file = lf(name, text)
    p = plan(file)
    assert p.signals == []
    assert list(skipped(p)) == [file.path]
    assert skipped(p)[file.path].startswith("malformed: ")
    assert reason in skipped(p)[file.path]


def test_a_body_too_large_for_a_control_signal_is_malformed() -> None:
    file = lf(REQUEST, {"question": "x" * (64 * 1024 + 1)})
    p = plan(file)
    assert p.signals == []
    assert re.match(r"malformed: question: must be at most 65536 bytes", skipped(p)[file.path])


@pytest.mark.parametrize("run_id", ["", "  ", RUN, f"  {RUN} ", None])
def test_a_file_with_no_run_id_or_the_run_s_own_is_accepted(run_id: str | None) -> None:
    assert len(plan(lf(COMPLETE, {"run_id": run_id})).signals) == 1


def test_a_file_of_another_run_is_skipped_as_a_run_id_mismatch() -> None:
    file = lf(COMPLETE, {"run_id": "run-20260101-zzzzz"})
    p = plan(file)
    assert p.signals == []
    assert skipped(p)[file.path].startswith("run_id mismatch")


@pytest.mark.parametrize(
    ("scope", "named", "agent"),
    [
        (ONE, None, "alice"),  # the run's only agent
        (TWO, "bob", "bob"),  # the file says
        (RunScope(RUN, ("alice", "bob"), "bob"), None, "bob"),  # --agent-name
        (RunScope(RUN, ("alice", "bob"), "bob"), "bob", "bob"),
    ],
)
def test_the_agent_is_the_file_s_else_agent_name_else_the_run_s_only_agent(
    scope: RunScope, named: str | None, agent: str
) -> None:
    (signal,) = plan(lf(COMPLETE, {"agent": named}), scope=scope).signals
    assert (signal.agent_name, signal.signal["agent_name"]) == (agent, agent)


@pytest.mark.parametrize(
    ("scope", "named", "reason"),
    [
        (TWO, None, "cannot tell the agent"),
        (TWO, "  ", "cannot tell the agent"),
        (ONE, "mallory", f"agent mallory is not in run {RUN}"),
        (RunScope(RUN, ("alice", "bob"), "bob"), "alice", "agent mismatch"),
    ],
)
def test_a_file_whose_agent_cannot_be_told_or_is_not_in_the_run_is_skipped(
    scope: RunScope, named: str | None, reason: str
) -> None:
    file = lf(COMPLETE, {"agent": named})
    p = plan(file, scope=scope)
    assert p.signals == []
    assert skipped(p)[file.path].startswith(reason)


def test_per_agent_and_kind_the_first_acceptable_file_wins_and_later_ones_are_skipped() -> None:
    broken = lf(REQUEST, "{", root="/ws/a")
    first = lf(REQUEST, {"question": "first"}, root="/ws/b")
    second = lf(REQUEST, {"question": "second"}, root="/ws/c")
    p = plan(broken, first, second)
    assert [s.signal["question"] for s in p.signals] == ["first"]
    assert list(skipped(p)) == [broken.path, second.path]
    assert skipped(p)[second.path] == (
        f"duplicate: agent alice's {REQUEST} was already taken from {first.path}"
    )


def test_skipped_entries_from_reading_are_passed_through() -> None:
    unread = Skipped("/ws/x/.metawsm", "no legacy signal directory here")
    assert plan(unread).skipped == [unread]


# Deterministic command ids ---------------------------------------------------------------------


def _id(file: LegacyFile, scope: RunScope = ONE) -> str:
    return plan(file, scope=scope).signals[0].command_id


def test_command_ids_depend_on_run_agent_kind_and_content_not_on_layout_or_path() -> None:
    data = {"summary": "done", "agent": "alice"}
    base = _id(lf(COMPLETE, data))
    assert re.fullmatch(r"legacy-[0-9a-f]{24}", base)
    assert _id(lf(COMPLETE, json.dumps(dict(reversed(data.items()))), root="/elsewhere")) == base
    assert _id(lf(COMPLETE, {"summary": "done!", "agent": "alice"})) != base
    assert _id(lf(COMPLETE, data), RunScope("run-other", ("alice",))) != base
    assert _id(lf(COMPLETE, {**data, "agent": "bob"}), TWO) != base
    assert _id(lf(REQUEST, {**data, "question": "q"})) != _id(
        lf(COMPLETE, {**data, "question": "q"})
    )


def test_the_same_files_plan_the_same_commands_again() -> None:
    files = [lf(RESPONSE, {"question": "Q", "answer": "A"}), lf(COMPLETE, {})]
    assert plan(*files) == plan(*files)


def test_a_planned_signal_becomes_a_control_signal_command_of_the_import_actor() -> None:
    answer = plan(lf(RESPONSE, {"question": "Q", "answer": "A"})).signals[1]
    command = answer.command(RUN)
    assert command.command_type == "control_signal"
    assert command.command_id == answer.command_id
    assert (command.actor_type.value, command.actor_name) == ("operator", "metawsm-legacy-import")
    assert command.payload.ticket is None  # the handler takes the run's ticket
    assert command.payload.signal.model_dump(mode="json", exclude_none=True) == answer.signal


# Reading roots --------------------------------------------------------------------------------


def _write(directory: Path, name: str, data: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(data))
    return path


def test_roots_are_read_from_their_metawsm_directory_or_as_that_directory(tmp_path: Path) -> None:
    a = _write(tmp_path / "ws-a" / ".metawsm", REQUEST, {"question": "Q"})
    b = _write(tmp_path / "ws-b" / ".metawsm", COMPLETE, {})
    _write(tmp_path / "ws-a" / ".metawsm", "operator-feedback.md", "not a signal")
    (tmp_path / "bare").mkdir()
    roots = [tmp_path / "ws-a", b.parent, tmp_path / "bare", a.parent, tmp_path / "ws-b"]
    found = read_roots(roots)  # the last two are roots already read
    assert found == [
        LegacyFile(str(a), REQUEST, a.read_text()),
        LegacyFile(str(b), COMPLETE, b.read_text()),
        Skipped(str(tmp_path / "bare" / ".metawsm"), "no legacy signal directory here"),
    ]


def test_a_file_that_is_not_utf8_is_reported_by_path(tmp_path: Path) -> None:
    path = tmp_path / ".metawsm" / VALIDATION
    path.parent.mkdir()
    path.write_bytes(b'{"status": "passed\xff"}')
    (entry,) = read_roots([tmp_path])
    assert isinstance(entry, Skipped) and entry.path == str(path)
    assert entry.reason.startswith("malformed: cannot read as UTF-8")


def test_reading_and_planning_leave_the_files_untouched(tmp_path: Path) -> None:
    directory = tmp_path / ".metawsm"
    paths = [_write(directory, n, {"question": "Q", "answer": "A"}) for n in FILE_NAMES]
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths}
    plan_import(read_roots([tmp_path]), ONE)
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in paths} == before
    assert sorted(p.name for p in directory.iterdir()) == sorted(FILE_NAMES)


# The cutover: nothing else knows the legacy files, and there is no `guide` command ------------


def test_no_source_outside_the_importer_mentions_a_legacy_signal_file() -> None:
    importer = Path(legacy.__file__).resolve()
    offenders = [
        f"{path.relative_to(ROOT)} mentions {name}"
        for top in ("metawsm", "workers", "beat")
        for path in sorted((ROOT / top).rglob("*.py"))
        if path.resolve() != importer
        for name in FILE_NAMES
        if name in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


def _command_paths(group: click.Group, prefix: str = "") -> list[str]:
    # Through list_commands/get_command: the root group loads its commands lazily.
    paths = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        paths.append(f"{prefix}{name}")
        if isinstance(command, click.Group):
            paths += _command_paths(command, f"{prefix}{name} ")
    return paths


def test_there_is_no_guide_command_and_the_importer_is_registered() -> None:
    paths = _command_paths(cli)
    assert not [p for p in paths if p.split()[-1] == "guide"]
    assert "migrate legacy-signals" in paths
