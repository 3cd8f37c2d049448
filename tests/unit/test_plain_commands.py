"""The plain path (messages/plain.py) accepts what the models accept, with the same wire form.

A command line builds its command without pydantic; the models stay the contract. These tests
check the plain field lists against the models' fields and defaults, then run a corpus of
valid and broken input through both: for the values a command line can pass (strings and
None) both must give the same verdict and the same wire form, byte for byte once dumped; for
any other value the plain path may only decline (the models judge), never accept what the
models refuse.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from metawsm.errors import Forbidden
from metawsm.identity import Identity
from metawsm.messages import plain
from metawsm.messages.commands import COMMAND_MODELS, parse_command
from metawsm.messages.control import CONTROL_MODELS, parse_control
from metawsm.messages.rules import (
    MAX_BODY_BYTES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
)
from metawsm.services.accept import make_plain_command
from metawsm.services.authorization import acting_as, authorize_command

NOW = datetime(2026, 9, 1, 12, 30, 5, 250, tzinfo=UTC)
MISSING = object()

SIGNALS: dict[str, dict[str, Any]] = {
    "guidance_request": {"question": "which way?", "context": "ctx"},
    "guidance_answer": {"answer": "left"},
    "completion": {"summary": "done"},
    "validation": {"status": "passed", "done_criteria": "tests pass"},
}
PAYLOADS: dict[str, dict[str, Any]] = {
    "open_thread": {
        "thread_id": "fthr-1",
        "ticket": "T-1",
        "run_id": "run-1",
        "agent_name": "agent-1",
        "title": "A title",
        "body": "A body",
        "priority": "high",
    },
    "add_post": {"thread_id": "fthr-1", "body": "A body"},
    "answer_thread": {"thread_id": "fthr-1", "body": "An answer"},
    "assign_thread": {
        "thread_id": "fthr-1",
        "assignee_type": "operator",
        "assignee_name": "olga",
        "note": "yours",
    },
    "change_state": {"thread_id": "fthr-1", "to_state": "triaged"},
    "set_priority": {"thread_id": "fthr-1", "priority": "urgent"},
    "close_thread": {"thread_id": "fthr-1", "reason": "done"},
    "control_signal": {
        "run_id": "run-1",
        "agent_name": "agent-1",
        "ticket": "T-1",
        "signal": {
            "schema_version": 1,
            "control_type": "completion",
            "run_id": "run-1",
            "agent_name": "agent-1",
            "summary": "done",
        },
    },
}

# What a command line can pass (str or None), at and around every rule.
TEXTS: list[Any] = [
    None,
    "x",
    "  padded\t",
    "",
    "   ",
    "\t\n\r\x0b\x0c",
    "\u00a0\u2003x\u3000\u2028",
    "\x1cx\x1f\x85",
    "\u200bx\u200b",
    "\u180ex",
    "UPPER",
    " Agent ",
    "AGENT",
    "passed",
    " FAILED ",
    "Waiting_Human",
    "urgent ",
    "norMal",
    "\u212aelvin",
    "x" * MAX_ID_CHARS,
    "x" * (MAX_ID_CHARS + 1),
    " " + "y" * MAX_NAME_CHARS + " ",
    "y" * (MAX_NAME_CHARS + 1),
    "r" * MAX_REASON_CHARS,
    "r" * (MAX_REASON_CHARS + 1),
    "é" * (MAX_BODY_BYTES // 2),
    "é" * (MAX_BODY_BYTES // 2) + "e",
    "b" * MAX_BODY_BYTES,
    "\U0001f600" * (MAX_BODY_BYTES // 4 + 1),
    "lone \ud800 surrogate",
]
# Anything else: the plain path may decline, never accept what the models refuse.
OTHERS: list[Any] = [5, 1.5, True, b"bytes", ["x"], {"x": 1}, MISSING]


def envelope(command_type: str, payload: Any) -> dict[str, Any]:
    return {
        "command_id": "cmd-1",
        "command_type": command_type,
        "schema_version": 1,
        "issued_at": NOW,
        "actor_type": "agent",
        "actor_name": "alice",
        "correlation_id": None,
        "causation_id": "cmd-0",
        "payload": payload,
    }


def with_value(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    changed = dict(data)
    if value is MISSING:
        changed.pop(key, None)
    else:
        changed[key] = value
    return changed


def by_models(data: dict[str, Any]) -> str | None:
    """The models' wire form of ``data`` as JSON text (key order kept), None when refused."""
    wire = {**data, "issued_at": data["issued_at"].isoformat()}
    try:
        return json.dumps(parse_command(wire).model_dump(mode="json"))
    except ValidationError:
        return None


def by_plain(data: dict[str, Any]) -> str | None:
    try:
        command = plain.command(data)
    except plain.Unchecked:
        return None
    assert command.command_id == command.wire["command_id"]
    assert command.command_type == data["command_type"]
    return json.dumps(command.wire)


def corpus() -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(case id, command data, whether a command line could send it) for every field of
    every command, envelope and control payload included."""
    for command_type, payload in PAYLOADS.items():
        base = envelope(command_type, payload)
        yield f"{command_type} valid", base, True
        for key in [*base, "extra"]:
            if key in ("payload", "issued_at", "command_type"):
                continue
            for value in TEXTS + OTHERS:
                from_cli = value in TEXTS and key != "schema_version"
                yield f"{command_type} {key}={value!r:.20}", with_value(base, key, value), from_cli
        for key in [*payload, "extra"]:
            if key == "signal":
                continue
            for value in TEXTS + OTHERS:
                changed = envelope(command_type, with_value(payload, key, value))
                yield f"{command_type} payload.{key}={value!r:.20}", changed, value in TEXTS
    yield from control_corpus()
    yield from envelope_corpus()


def control_corpus() -> Iterator[tuple[str, dict[str, Any], bool]]:
    outer = PAYLOADS["control_signal"]
    for control_type, fields in SIGNALS.items():
        signal = {**outer["signal"], "control_type": control_type, **fields}
        signal.pop("summary") if control_type != "completion" else None
        for key in [*signal, "extra", "summary", "answer"]:
            for value in TEXTS + OTHERS + [1, 2, "1", "completion"]:
                changed = {**outer, "signal": with_value(signal, key, value)}
                yield (
                    f"signal {control_type}.{key}={value!r:.20}",
                    envelope("control_signal", changed),
                    value in TEXTS and key not in ("schema_version", "control_type"),
                )
    mismatch = {**outer, "agent_name": "agent-2"}
    yield "signal for another agent", envelope("control_signal", mismatch), True


def envelope_corpus() -> Iterator[tuple[str, dict[str, Any], bool]]:
    base = envelope("add_post", PAYLOADS["add_post"])
    yield "schema_version 2", with_value(base, "schema_version", 2), False
    yield "command_type unknown", with_value(base, "command_type", "nope"), True
    yield "command_type padded", with_value(base, "command_type", " add_post"), True
    yield "payload of another type", with_value(base, "payload", PAYLOADS["open_thread"]), True
    yield "payload not a dict", with_value(base, "payload", "x"), False
    for issued_at in (
        NOW.replace(microsecond=0),
        datetime(2026, 9, 1, 14, 30, 5, tzinfo=timezone(timedelta(hours=2))),
        datetime(2026, 9, 1, 12, 30, 5),
    ):
        yield f"issued_at {issued_at.isoformat()}", with_value(base, "issued_at", issued_at), True


CASES = list(corpus())
GROUPS = sorted({case.split(" ")[0] for case, _, _ in CASES})


def test_the_corpus_has_both_verdicts_for_every_command_type() -> None:
    for command_type in PAYLOADS:
        verdicts = {
            by_plain(data) is None for case, data, _ in CASES if case.startswith(command_type)
        }
        assert verdicts == {True, False}, command_type
    assert len(CASES) > 2000


@pytest.mark.parametrize("group", GROUPS)
def test_plain_accepts_what_the_models_accept_with_the_same_wire_form(group: str) -> None:
    wrong = []
    for case, data, from_cli in CASES:
        if case.split(" ")[0] != group:
            continue
        mine, theirs = by_plain(data), by_models(data)
        if mine is not None and mine != theirs:
            wrong.append(f"{case}: plain {mine!r:.200}, models {theirs!r:.200}")
        utc = data["issued_at"].utcoffset() == timedelta(0)
        if mine is None and from_cli and utc and theirs is not None:
            wrong.append(f"{case}: declined by plain, accepted by the models")
    assert wrong == []


def test_a_control_payload_dumps_as_the_models_dump_it() -> None:
    for control_type, fields in SIGNALS.items():
        data = {"control_type": control_type, "run_id": " r ", "agent_name": "a", **fields}
        expected = parse_control(data).model_dump(mode="json")
        assert json.dumps(plain.control(data)) == json.dumps(expected)


def fields_of(model: type[BaseModel]) -> list[tuple[str, bool, Any]]:
    """(name, required, default as JSON) of every field, in order."""
    out = []
    for name, info in model.model_fields.items():
        default = None if info.is_required() else info.default
        out.append((name, info.is_required(), getattr(default, "value", default)))
    return out


def plain_fields(fields: plain.Fields) -> list[tuple[str, bool, Any]]:
    return [
        (name, default is plain._REQUIRED, None if default is plain._REQUIRED else default)
        for name, (_, default) in fields.items()
    ]


@pytest.mark.parametrize("command_type", sorted(COMMAND_MODELS))
def test_the_plain_fields_are_the_models_fields_in_order(command_type: str) -> None:
    model = COMMAND_MODELS[command_type]
    envelope_fields = [*plain_fields(plain.ENVELOPE), ("command_type", False, command_type)]
    assert fields_of(model) == [*envelope_fields, ("payload", True, None)]
    payload_model = model.model_fields["payload"].annotation
    assert isinstance(payload_model, type) and issubclass(payload_model, BaseModel)
    fields = plain.PAYLOADS[command_type]
    if callable(fields):  # control_signal: its payload and each control model
        assert [name for name, *_ in fields_of(payload_model)] == [
            "run_id",
            "agent_name",
            "ticket",
            "signal",
        ]
        for control_type, control_model in CONTROL_MODELS.items():
            expected = [
                *plain_fields(plain.CONTROL_BASE),
                ("control_type", False, control_type),
                *plain_fields(plain.CONTROL_FIELDS[control_type]),
            ]
            assert fields_of(control_model) == expected
    else:
        assert fields_of(payload_model) == plain_fields(fields)


def test_a_command_line_command_is_checked_without_the_models() -> None:
    command = make_plain_command(
        "open_thread", dict(PAYLOADS["open_thread"]), actor_type="Agent", actor_name=" bob "
    )
    assert isinstance(command, plain.PlainCommand)
    assert command.wire["actor_type"] == "agent" and command.wire["actor_name"] == "bob"


def test_invalid_input_is_judged_by_the_models_with_their_locations() -> None:
    payload = {**PAYLOADS["open_thread"], "ticket": "  "}
    with pytest.raises(ValidationError) as caught:
        make_plain_command("open_thread", payload, actor_type="agent", actor_name="bob")
    [error] = caught.value.errors()
    assert error["loc"] == ("open_thread", "payload", "ticket")
    assert error["msg"] == "Value error, is required (blank after trimming)"


def test_input_the_plain_path_declines_but_the_models_accept_is_a_model() -> None:
    payload = {**PAYLOADS["add_post"], "body": b"bytes are the models' business"}
    command = make_plain_command("add_post", payload, actor_type="agent", actor_name="bob")
    assert not isinstance(command, plain.PlainCommand)


IDENTITIES = [
    Identity("agent", "agent-1", token_id="tok-1"),
    Identity("agent", "agent-2", token_id="tok-2"),
    Identity("agent", "agent-1"),
    Identity("operator", "olga", run_id="run-2", token_id="tok-3"),
    Identity("human", "hana"),
]


@pytest.mark.parametrize("command_type", sorted(PAYLOADS))
def test_the_role_rules_judge_a_plain_command_as_its_model(command_type: str) -> None:
    data = envelope(command_type, PAYLOADS[command_type])
    model = parse_command({**data, "issued_at": NOW.isoformat()})
    checked = plain.command(data)
    for identity in IDENTITIES:
        verdicts = []
        for command in (model, checked):
            try:
                authorize_command(identity, command)
                verdicts.append(None)
            except Forbidden as exc:
                verdicts.append(exc.rule)
        assert verdicts[0] == verdicts[1], identity
        acted = acting_as(checked, identity)
        assert isinstance(acted, plain.PlainCommand)
        assert json.dumps(acted.wire) == json.dumps(
            acting_as(model, identity).model_dump(mode="json")  # type: ignore[union-attr]
        )


def test_an_actor_the_plain_path_cannot_vouch_for_is_judged_by_the_models() -> None:
    checked = plain.command(envelope("add_post", PAYLOADS["add_post"]))
    with pytest.raises(ValidationError, match="at most 512 characters"):
        acting_as(checked, Identity("agent", "n" * 513))
