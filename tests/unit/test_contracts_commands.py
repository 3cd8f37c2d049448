"""Contract tests of the command envelope and every command payload (schema version 1)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from metawsm.messages.commands import (
    COMMAND_MODELS,
    COMMAND_TYPES,
    command_thread_id,
    parse_command,
)
from metawsm.messages.common import (
    MAX_BODY_BYTES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
    MAX_TITLE_CHARS,
    ActorType,
    Priority,
    ThreadState,
)

SIGNAL = {"control_type": "completion", "run_id": "run-1", "agent_name": "agent-a"}
MINIMAL_PAYLOADS: dict[str, dict[str, Any]] = {
    "open_thread": {"thread_id": "t-1", "ticket": "T-1", "title": "Which DB?", "body": "Help"},
    "add_post": {"thread_id": "t-1", "body": "a post"},
    "answer_thread": {"thread_id": "t-1", "body": "the answer"},
    "assign_thread": {"thread_id": "t-1", "assignee_type": "operator", "assignee_name": "op"},
    "change_state": {"thread_id": "t-1", "to_state": "triaged"},
    "set_priority": {"thread_id": "t-1", "priority": "high"},
    "close_thread": {"thread_id": "t-1"},
    "control_signal": {"run_id": "run-1", "agent_name": "agent-a", "signal": SIGNAL},
}
FULL_PAYLOADS: dict[str, dict[str, Any]] = {
    **MINIMAL_PAYLOADS,
    "open_thread": {
        **MINIMAL_PAYLOADS["open_thread"],
        "run_id": "run-1",
        "agent_name": "agent-a",
        "priority": "urgent",
    },
    "assign_thread": {**MINIMAL_PAYLOADS["assign_thread"], "note": "yours"},
    "close_thread": {"thread_id": "t-1", "reason": "resolved"},
    "control_signal": {
        **MINIMAL_PAYLOADS["control_signal"],
        "ticket": "T-1",
        "signal": {
            **SIGNAL,
            "control_type": "validation",
            "status": "passed",
            "done_criteria": "ok",
        },
    },
}
ENVELOPE_REQUIRED = ["command_id", "issued_at", "actor_type", "actor_name"]
PAYLOAD_REQUIRED = {
    "open_thread": ["thread_id", "ticket", "title", "body"],
    "add_post": ["thread_id", "body"],
    "answer_thread": ["thread_id", "body"],
    "assign_thread": ["thread_id", "assignee_type", "assignee_name"],
    "change_state": ["thread_id", "to_state"],
    "set_priority": ["thread_id", "priority"],
    "close_thread": ["thread_id"],
    "control_signal": ["run_id", "agent_name", "signal"],
}
PAYLOAD_REQUIRED_TEXT = [
    (command_type, field)
    for command_type, fields in PAYLOAD_REQUIRED.items()
    for field in fields
    if field not in {"assignee_type", "to_state", "priority", "signal"}
    and command_type != "control_signal"
]
IDS = [(t, ("payload", "thread_id")) for t in COMMAND_TYPES if t != "control_signal"]
ENVELOPE_IDS = ["command_id", "correlation_id", "causation_id"]
NAMES = [
    ("open_thread", ("payload", "ticket")),
    ("open_thread", ("payload", "title")),
    ("open_thread", ("payload", "run_id")),
    ("open_thread", ("payload", "agent_name")),
    ("assign_thread", ("payload", "assignee_name")),
    ("control_signal", ("payload", "ticket")),
]
BODIES = [
    ("open_thread", ("payload", "body")),
    ("add_post", ("payload", "body")),
    ("answer_thread", ("payload", "body")),
    ("assign_thread", ("payload", "note")),
]
BLANKS = ["", " ", "\t", "\n", " \t\r\n "]


def command(command_type: str, payload: dict[str, Any] | None = None, **envelope: Any) -> dict:
    """A valid wire command of ``command_type``; ``envelope`` overrides or adds envelope fields."""
    data: dict[str, Any] = {
        "command_type": command_type,
        "command_id": "cmd-1",
        "issued_at": "2025-01-02T03:04:05+00:00",
        "actor_type": "agent",
        "actor_name": "agent-a",
        "payload": copy.deepcopy(MINIMAL_PAYLOADS[command_type] if payload is None else payload),
    }
    data.update(envelope)
    return data


def with_value(data: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """``data`` with the field at ``path`` (nested keys) set to ``value``."""
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


def only_error(data: dict[str, Any]) -> dict[str, Any]:
    """The single pydantic error raised by parsing ``data`` (fails when it parses)."""
    with pytest.raises(ValidationError) as caught:
        parse_command(data)
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    return dict(errors[0])


def test_the_size_limits_are_those_the_contract_documents() -> None:
    assert (MAX_NAME_CHARS, MAX_TITLE_CHARS, MAX_ID_CHARS) == (512, 512, 128)
    assert (MAX_BODY_BYTES, MAX_REASON_CHARS) == (64 * 1024, 2048)


def test_every_command_type_has_a_model_and_an_example() -> None:
    assert set(COMMAND_TYPES) == set(COMMAND_MODELS) == set(MINIMAL_PAYLOADS)


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_a_minimal_command_of_each_type_parses_into_its_model(command_type: str) -> None:
    parsed = parse_command(command(command_type))
    assert type(parsed) is COMMAND_MODELS[command_type]
    assert parsed.command_type == command_type
    assert parsed.schema_version == 1


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_the_required_payload_fields_listed_here_are_those_of_the_model(command_type: str) -> None:
    payload_model = COMMAND_MODELS[command_type].model_fields["payload"].annotation
    required = {n for n, f in payload_model.model_fields.items() if f.is_required()}  # type: ignore[union-attr]
    assert required == set(PAYLOAD_REQUIRED[command_type])


@pytest.mark.parametrize("field", ENVELOPE_REQUIRED)
@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_a_command_without_a_required_envelope_field_is_refused(
    command_type: str, field: str
) -> None:
    data = command(command_type)
    del data[field]
    error = only_error(data)
    assert error["type"] == "missing"
    assert error["loc"] == (command_type, field)


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_a_command_without_a_payload_is_refused(command_type: str) -> None:
    data = command(command_type)
    del data["payload"]
    error = only_error(data)
    assert error["type"] == "missing"
    assert error["loc"] == (command_type, "payload")


@pytest.mark.parametrize(
    ("command_type", "field"),
    [(t, f) for t, fields in PAYLOAD_REQUIRED.items() for f in fields],
)
def test_a_command_without_a_required_payload_field_is_refused(
    command_type: str, field: str
) -> None:
    data = command(command_type)
    del data["payload"][field]
    error = only_error(data)
    assert error["type"] == "missing"
    assert error["loc"] == (command_type, "payload", field)


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize("field", ["command_id", "actor_name"])
def test_a_blank_envelope_text_counts_as_missing(field: str, blank: str) -> None:
    error = only_error(command("add_post", **{field: blank}))
    assert error["loc"] == ("add_post", field)
    assert "is required (blank after trimming)" in error["msg"]


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize(("command_type", "field"), PAYLOAD_REQUIRED_TEXT)
def test_a_blank_payload_text_counts_as_missing(command_type: str, field: str, blank: str) -> None:
    error = only_error(with_value(command(command_type), ("payload", field), blank))
    assert error["loc"] == (command_type, "payload", field)
    assert "is required (blank after trimming)" in error["msg"]


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize("field", ["run_id", "agent_name"])
def test_a_blank_control_signal_name_counts_as_missing(field: str, blank: str) -> None:
    error = only_error(with_value(command("control_signal"), ("payload", field), blank))
    assert error["loc"] == ("control_signal", "payload", field)
    assert "is required (blank after trimming)" in error["msg"]


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize(
    ("command_type", "path"),
    [
        ("add_post", ("correlation_id",)),
        ("add_post", ("causation_id",)),
        ("open_thread", ("payload", "run_id")),
        ("open_thread", ("payload", "agent_name")),
        ("assign_thread", ("payload", "note")),
        ("close_thread", ("payload", "reason")),
        ("control_signal", ("payload", "ticket")),
    ],
)
def test_a_blank_optional_field_is_stored_as_absent(
    command_type: str, path: tuple[str, ...], blank: str
) -> None:
    parsed: Any = parse_command(with_value(command(command_type), path, blank))
    for key in path:
        parsed = getattr(parsed, key)
    assert parsed is None


@pytest.mark.parametrize(
    ("command_type", "path"),
    [
        ("add_post", ("command_id",)),
        ("add_post", ("actor_name",)),
        ("add_post", ("correlation_id",)),
        ("add_post", ("causation_id",)),
        *[(t, ("payload", f)) for t, f in PAYLOAD_REQUIRED_TEXT],
        ("open_thread", ("payload", "run_id")),
        ("open_thread", ("payload", "agent_name")),
        ("assign_thread", ("payload", "note")),
        ("close_thread", ("payload", "reason")),
        ("control_signal", ("payload", "ticket")),
    ],
)
def test_text_fields_are_stored_trimmed(command_type: str, path: tuple[str, ...]) -> None:
    parsed: Any = parse_command(with_value(command(command_type), path, "\t padded value \n"))
    for key in path:
        parsed = getattr(parsed, key)
    assert parsed == "padded value"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("agent", ActorType.AGENT),
        ("AGENT", ActorType.AGENT),
        (" Operator ", ActorType.OPERATOR),
        ("Human", ActorType.HUMAN),
        ("system\n", ActorType.SYSTEM),
    ],
)
@pytest.mark.parametrize(
    ("command_type", "path"),
    [("add_post", ("actor_type",)), ("assign_thread", ("payload", "assignee_type"))],
)
def test_actor_types_are_case_insensitive(
    command_type: str, path: tuple[str, ...], raw: str, expected: ActorType
) -> None:
    parsed: Any = parse_command(with_value(command(command_type), path, raw))
    for key in path:
        parsed = getattr(parsed, key)
    assert parsed is expected


@pytest.mark.parametrize("raw", ["robot", "agents", "admin", "", " ", "user"])
@pytest.mark.parametrize(
    ("command_type", "path"),
    [("add_post", ("actor_type",)), ("assign_thread", ("payload", "assignee_type"))],
)
def test_an_actor_type_outside_agent_operator_human_system_is_refused(
    command_type: str, path: tuple[str, ...], raw: str
) -> None:
    error = only_error(with_value(command(command_type), path, raw))
    assert error["loc"] == (command_type, *path)
    assert error["type"] == "enum"
    assert error["msg"] == "Input should be 'agent', 'operator', 'human' or 'system'"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("low", Priority.LOW),
        ("NORMAL", Priority.NORMAL),
        (" High ", Priority.HIGH),
        ("Urgent", Priority.URGENT),
    ],
)
@pytest.mark.parametrize("command_type", ["open_thread", "set_priority"])
def test_priorities_are_case_insensitive(command_type: str, raw: str, expected: Priority) -> None:
    parsed = parse_command(with_value(command(command_type), ("payload", "priority"), raw))
    assert parsed.payload.priority is expected  # type: ignore[union-attr]


@pytest.mark.parametrize("raw", ["critical", "medium", "", "p1"])
@pytest.mark.parametrize("command_type", ["open_thread", "set_priority"])
def test_an_unknown_priority_is_refused(command_type: str, raw: str) -> None:
    error = only_error(with_value(command(command_type), ("payload", "priority"), raw))
    assert error["loc"] == (command_type, "payload", "priority")
    assert error["msg"] == "Input should be 'low', 'normal', 'high' or 'urgent'"


def test_an_open_thread_without_a_priority_is_normal() -> None:
    parsed = parse_command(command("open_thread"))
    assert parsed.payload.priority is Priority.NORMAL  # type: ignore[union-attr]


@pytest.mark.parametrize("state", list(ThreadState))
def test_every_thread_state_is_accepted_in_any_case(state: ThreadState) -> None:
    raw = f" {state.value.upper()} "
    parsed = parse_command(with_value(command("change_state"), ("payload", "to_state"), raw))
    assert parsed.payload.to_state is state  # type: ignore[union-attr]


@pytest.mark.parametrize("raw", ["open", "waiting", "done", ""])
def test_an_unknown_thread_state_is_refused(raw: str) -> None:
    error = only_error(with_value(command("change_state"), ("payload", "to_state"), raw))
    assert error["loc"] == ("change_state", "payload", "to_state")
    assert error["type"] == "enum"
    assert "'waiting_operator'" in error["msg"]


@pytest.mark.parametrize("version", [0, 2, -1, 99])
@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_an_unknown_envelope_schema_version_is_refused_naming_the_supported_ones(
    command_type: str, version: int
) -> None:
    error = only_error(command(command_type, schema_version=version))
    assert error["loc"] == (command_type, "schema_version")
    assert f"schema_version {version} is not supported (supported: 1)" in error["msg"]


@pytest.mark.parametrize("raw", ["yesterday", "2025-13-01T00:00:00Z", ""])
def test_an_issued_at_that_is_not_a_timestamp_is_refused(raw: str) -> None:
    error = only_error(command("add_post", issued_at=raw))
    assert error["loc"] == ("add_post", "issued_at")
    assert error["type"].startswith("datetime")


@pytest.mark.parametrize("field", ENVELOPE_IDS)
def test_an_envelope_id_of_exactly_the_limit_is_accepted(field: str) -> None:
    value = "i" * MAX_ID_CHARS
    assert getattr(parse_command(command("add_post", **{field: value})), field) == value


@pytest.mark.parametrize("field", ENVELOPE_IDS)
def test_an_envelope_id_over_the_limit_is_refused(field: str) -> None:
    error = only_error(command("add_post", **{field: "i" * (MAX_ID_CHARS + 1)}))
    assert error["loc"] == ("add_post", field)
    assert f"at most {MAX_ID_CHARS} characters" in error["msg"]


@pytest.mark.parametrize(("command_type", "path"), IDS)
def test_a_thread_id_at_the_limit_is_accepted_and_over_it_refused(
    command_type: str, path: tuple[str, ...]
) -> None:
    at_limit = parse_command(with_value(command(command_type), path, "t" * MAX_ID_CHARS))
    assert len(at_limit.payload.thread_id) == MAX_ID_CHARS  # type: ignore[union-attr]
    error = only_error(with_value(command(command_type), path, "t" * (MAX_ID_CHARS + 1)))
    assert error["loc"] == (command_type, *path)
    assert f"at most {MAX_ID_CHARS} characters" in error["msg"]


@pytest.mark.parametrize(("command_type", "path"), [*NAMES, ("add_post", ("actor_name",))])
def test_a_name_or_title_at_the_limit_is_accepted_and_over_it_refused(
    command_type: str, path: tuple[str, ...]
) -> None:
    parse_command(with_value(command(command_type), path, "n" * MAX_NAME_CHARS))
    error = only_error(with_value(command(command_type), path, "n" * (MAX_NAME_CHARS + 1)))
    assert error["loc"] == (command_type, *path)
    assert f"at most {MAX_NAME_CHARS} characters" in error["msg"]


@pytest.mark.parametrize("field", ["run_id", "agent_name"])
def test_an_oversize_control_signal_name_is_refused_in_the_payload_and_in_the_signal(
    field: str,
) -> None:
    value = "n" * (MAX_NAME_CHARS + 1)
    data = command("control_signal")
    data["payload"][field] = value
    data["payload"]["signal"][field] = value
    with pytest.raises(ValidationError) as caught:
        parse_command(data)
    assert {e["loc"] for e in caught.value.errors()} == {
        ("control_signal", "payload", field),
        ("control_signal", "payload", "signal", "completion", field),
    }


@pytest.mark.parametrize(
    "value",
    ["b" * MAX_BODY_BYTES, "é" * (MAX_BODY_BYTES // 2), "😀" * (MAX_BODY_BYTES // 4)],
    ids=["ascii", "two-byte", "four-byte"],
)
@pytest.mark.parametrize(("command_type", "path"), BODIES)
def test_a_body_of_exactly_the_byte_limit_is_accepted(
    command_type: str, path: tuple[str, ...], value: str
) -> None:
    parse_command(with_value(command(command_type), path, value))


@pytest.mark.parametrize(
    "value",
    ["b" * (MAX_BODY_BYTES + 1), "é" * (MAX_BODY_BYTES // 2 + 1), "€" * (MAX_BODY_BYTES // 3 + 1)],
    ids=["ascii", "two-byte-under-char-count", "three-byte-under-char-count"],
)
@pytest.mark.parametrize(("command_type", "path"), BODIES)
def test_a_body_over_the_byte_limit_is_refused(
    command_type: str, path: tuple[str, ...], value: str
) -> None:
    error = only_error(with_value(command(command_type), path, value))
    assert error["loc"] == (command_type, *path)
    assert f"at most {MAX_BODY_BYTES} bytes of UTF-8" in error["msg"]


def test_a_close_reason_at_the_limit_is_accepted_and_over_it_refused() -> None:
    path = ("payload", "reason")
    parse_command(with_value(command("close_thread"), path, "r" * MAX_REASON_CHARS))
    error = only_error(with_value(command("close_thread"), path, "r" * (MAX_REASON_CHARS + 1)))
    assert error["loc"] == ("close_thread", *path)
    assert f"at most {MAX_REASON_CHARS} characters" in error["msg"]


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_an_unknown_envelope_field_is_refused(command_type: str) -> None:
    error = only_error(command(command_type, event_type="forum.post.added"))
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == (command_type, "event_type")


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_an_unknown_payload_field_is_refused(command_type: str) -> None:
    error = only_error(with_value(command(command_type), ("payload", "colour"), "red"))
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == (command_type, "payload", "colour")


def test_an_unknown_field_in_a_control_signal_is_refused() -> None:
    data = command("control_signal")
    data["payload"]["signal"]["colour"] = "red"
    error = only_error(data)
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ("control_signal", "payload", "signal", "completion", "colour")


def test_a_payload_of_another_command_type_is_refused() -> None:
    data = command("open_thread", payload=MINIMAL_PAYLOADS["add_post"])
    with pytest.raises(ValidationError) as caught:
        parse_command(data)
    assert {(e["type"], e["loc"]) for e in caught.value.errors()} == {
        ("missing", ("open_thread", "payload", "ticket")),
        ("missing", ("open_thread", "payload", "title")),
    }


@pytest.mark.parametrize("command_type", ["nope", "OPEN_THREAD", "openThread", " add_post", ""])
def test_an_unknown_command_type_is_refused(command_type: str) -> None:
    data = command("add_post")
    data["command_type"] = command_type
    error = only_error(data)
    assert error["type"] == "union_tag_invalid"
    assert error["loc"] == ()
    assert "'open_thread'" in error["msg"]


def test_a_command_without_a_command_type_is_refused() -> None:
    data = command("add_post")
    del data["command_type"]
    error = only_error(data)
    assert error["type"] == "union_tag_not_found"
    assert "command_type" in error["msg"]


def test_an_invalid_control_signal_is_refused_where_it_breaks_the_rule() -> None:
    data = command("control_signal")
    data["payload"]["signal"] = {**SIGNAL, "control_type": "validation", "status": "passd"}
    with pytest.raises(ValidationError) as caught:
        parse_command(data)
    assert {(e["type"], e["loc"]) for e in caught.value.errors()} == {
        ("enum", ("control_signal", "payload", "signal", "validation", "status")),
        ("missing", ("control_signal", "payload", "signal", "validation", "done_criteria")),
    }


@pytest.mark.parametrize(
    ("field", "signal_value"),
    [("run_id", "run-2"), ("agent_name", "agent-b"), ("agent_name", "Agent-A")],
)
def test_a_control_signal_naming_another_run_or_agent_than_its_payload_is_refused(
    field: str, signal_value: str
) -> None:
    data = command("control_signal")
    data["payload"]["signal"][field] = signal_value
    error = only_error(data)
    assert error["loc"] == ("control_signal", "payload")
    assert f"signal {field} '{signal_value}' does not match payload {field}" in error["msg"]


def test_a_control_signal_matching_its_payload_after_trimming_is_accepted() -> None:
    data = command("control_signal")
    data["payload"]["run_id"] = " run-1 "
    data["payload"]["signal"]["agent_name"] = "agent-a\n"
    parsed = parse_command(data)
    assert parsed.payload.signal.run_id == parsed.payload.run_id == "run-1"  # type: ignore[union-attr]


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_a_parsed_command_and_its_payload_are_frozen(command_type: str) -> None:
    parsed = parse_command(command(command_type))
    with pytest.raises(ValidationError) as caught:
        parsed.command_id = "other"  # type: ignore[misc]
    assert caught.value.errors()[0]["type"] == "frozen_instance"
    first_field = next(iter(type(parsed.payload).model_fields))
    with pytest.raises(ValidationError) as caught:
        setattr(parsed.payload, first_field, "other")
    assert caught.value.errors()[0]["type"] == "frozen_instance"


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_a_command_survives_a_json_round_trip(command_type: str) -> None:
    parsed = parse_command(
        command(
            command_type,
            FULL_PAYLOADS[command_type],
            correlation_id="corr-1",
            causation_id="cause-1",
            actor_type="HUMAN",
        )
    )
    wire = parsed.model_dump(mode="json")
    assert wire["command_type"] == command_type
    assert parse_command(wire) == parsed


@pytest.mark.parametrize("command_type", COMMAND_TYPES)
def test_the_thread_of_a_command_is_its_payload_thread_id(command_type: str) -> None:
    expected = None if command_type == "control_signal" else "t-1"
    assert command_thread_id(parse_command(command(command_type))) == expected
