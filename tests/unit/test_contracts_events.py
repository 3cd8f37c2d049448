"""Contract tests of the event envelope, every event payload and the topic suffix rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from metawsm.messages.common import (
    MAX_BODY_BYTES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
    ActorType,
)
from metawsm.messages.events import (
    EVENT_PAYLOADS,
    EVENT_TYPES,
    Event,
    event_topic_suffix,
    parse_event,
)

SIGNAL = {"control_type": "guidance_request", "run_id": "run-1", "agent_name": "a", "question": "?"}
MINIMAL_PAYLOADS: dict[str, dict[str, Any]] = {
    "forum.thread.opened": {"title": "T", "body": "B", "priority": "normal", "post_id": "p-1"},
    "forum.post.added": {"post_id": "p-2", "body": "B"},
    "forum.control.signal": {"post_id": "p-3", "signal": SIGNAL},
    "forum.assigned": {"to_assignee_type": "operator", "to_assignee_name": "op"},
    "forum.state.changed": {"from_state": "new", "to_state": "triaged"},
    "forum.priority.changed": {"from_priority": "normal", "to_priority": "high"},
    "forum.thread.closed": {"from_state": "answered"},
    "forum.sla.escalation_requested": {
        "tier": "operator",
        "reason": "no answer for 30 minutes",
        "threshold_minutes": 30,
        "waiting_since": "2025-01-02T03:04:05+00:00",
    },
    "run.status.changed": {
        "from_status": "running",
        "to_status": "awaiting_guidance",
        "reason": "?",
    },
    "operator.decision": {
        "intent": "escalate_guidance",
        "reason": "operator input is required",
        "mode": "assist",
        "fingerprint": "abc123",
    },
}
FULL_PAYLOADS: dict[str, dict[str, Any]] = {
    **MINIMAL_PAYLOADS,
    "forum.post.added": {"post_id": "p-2", "body": "B", "answer": True},
    "forum.control.signal": {"post_id": "p-3", "epoch": 2, "signal": SIGNAL},
    "forum.assigned": {
        "from_assignee_type": "agent",
        "from_assignee_name": "agent-a",
        "to_assignee_type": "human",
        "to_assignee_name": "ann",
        "note": "over to you",
    },
    "forum.thread.closed": {"from_state": "answered", "reason": "done"},
    "run.status.changed": {**MINIMAL_PAYLOADS["run.status.changed"], "cause_event_id": "e-0"},
    "operator.decision": {
        **MINIMAL_PAYLOADS["operator.decision"],
        "command": "metawsm close --run-id r",
        "executed": True,
    },
}
PAYLOAD_REQUIRED = {
    "forum.thread.opened": ["title", "body", "priority", "post_id"],
    "forum.post.added": ["post_id", "body"],
    "forum.control.signal": ["post_id", "signal"],
    "forum.assigned": ["to_assignee_type", "to_assignee_name"],
    "forum.state.changed": ["from_state", "to_state"],
    "forum.priority.changed": ["from_priority", "to_priority"],
    "forum.thread.closed": ["from_state"],
    "forum.sla.escalation_requested": ["tier", "reason", "threshold_minutes", "waiting_since"],
    "run.status.changed": ["from_status", "to_status", "reason"],
    "operator.decision": ["intent", "reason", "mode", "fingerprint"],
}
ENVELOPE_REQUIRED = ["event_id", "event_type", "occurred_at", "actor", "payload"]
ENVELOPE_IDS = ["event_id", "thread_id", "correlation_id", "causation_id"]
ENVELOPE_NAMES = ["run_id", "ticket", "agent_name"]
PAYLOAD_TEXT = [
    ("forum.thread.opened", "title", MAX_NAME_CHARS, "characters"),
    ("forum.thread.opened", "body", MAX_BODY_BYTES, "bytes of UTF-8"),
    ("forum.thread.opened", "post_id", MAX_ID_CHARS, "characters"),
    ("forum.post.added", "post_id", MAX_ID_CHARS, "characters"),
    ("forum.post.added", "body", MAX_BODY_BYTES, "bytes of UTF-8"),
    ("forum.control.signal", "post_id", MAX_ID_CHARS, "characters"),
    ("forum.assigned", "from_assignee_name", MAX_NAME_CHARS, "characters"),
    ("forum.assigned", "to_assignee_name", MAX_NAME_CHARS, "characters"),
    ("forum.assigned", "note", MAX_BODY_BYTES, "bytes of UTF-8"),
    ("forum.thread.closed", "reason", MAX_REASON_CHARS, "characters"),
    ("forum.sla.escalation_requested", "tier", MAX_NAME_CHARS, "characters"),
    ("forum.sla.escalation_requested", "reason", MAX_REASON_CHARS, "characters"),
    ("run.status.changed", "from_status", MAX_NAME_CHARS, "characters"),
    ("run.status.changed", "to_status", MAX_NAME_CHARS, "characters"),
    ("run.status.changed", "reason", MAX_REASON_CHARS, "characters"),
    ("run.status.changed", "cause_event_id", MAX_ID_CHARS, "characters"),
]
REQUIRED_PAYLOAD_TEXT = [
    (event_type, field)
    for event_type, field, _, _ in PAYLOAD_TEXT
    if field in PAYLOAD_REQUIRED[event_type]
]
BLANKS = ["", " ", "\t", "\n", " \t\r\n "]


def event(event_type: str, payload: dict[str, Any] | None = None, **envelope: Any) -> dict:
    """A valid wire event of ``event_type``; ``envelope`` overrides or adds envelope fields."""
    data: dict[str, Any] = {
        "event_id": "evt-1",
        "event_type": event_type,
        "occurred_at": "2025-01-02T03:04:05+00:00",
        "actor": {"type": "agent", "name": "agent-a"},
        "payload": copy.deepcopy(MINIMAL_PAYLOADS[event_type] if payload is None else payload),
    }
    data.update(envelope)
    return data


def with_payload(event_type: str, **fields: Any) -> dict[str, Any]:
    """A valid wire event of ``event_type`` whose payload has ``fields`` overridden or added."""
    return event(event_type, {**MINIMAL_PAYLOADS[event_type], **fields})


def errors_of(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The pydantic errors raised by parsing ``data`` (fails when it parses)."""
    with pytest.raises(ValidationError) as caught:
        parse_event(data)
    return [dict(error) for error in caught.value.errors()]


def only_error(data: dict[str, Any]) -> dict[str, Any]:
    """The single pydantic error raised by parsing ``data``."""
    errors = errors_of(data)
    assert len(errors) == 1, errors
    return errors[0]


def test_every_event_type_has_a_payload_model_and_an_example() -> None:
    assert set(EVENT_TYPES) == set(EVENT_PAYLOADS) == set(MINIMAL_PAYLOADS)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_the_required_payload_fields_listed_here_are_those_of_the_model(event_type: str) -> None:
    fields = EVENT_PAYLOADS[event_type].model_fields
    assert {name for name, f in fields.items() if f.is_required()} == set(
        PAYLOAD_REQUIRED[event_type]
    )


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_a_minimal_event_of_each_type_parses_with_its_typed_payload(event_type: str) -> None:
    parsed = parse_event(event(event_type))
    assert parsed.event_type == event_type
    assert parsed.event_version == 1
    assert type(parsed.typed_payload()) is EVENT_PAYLOADS[event_type]


@pytest.mark.parametrize("field", ENVELOPE_REQUIRED)
def test_an_event_without_a_required_envelope_field_is_refused(field: str) -> None:
    data = event("forum.post.added")
    del data[field]
    error = only_error(data)
    assert error["type"] == "missing"
    assert error["loc"] == (field,)


@pytest.mark.parametrize(
    ("event_type", "field"),
    [(t, f) for t, fields in PAYLOAD_REQUIRED.items() for f in fields],
)
def test_an_event_whose_payload_lacks_a_required_field_is_refused(
    event_type: str, field: str
) -> None:
    data = event(event_type)
    del data["payload"][field]
    error = only_error(data)
    assert error["type"] == "missing"
    assert error["loc"] == ("payload", field)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_an_event_with_the_payload_of_another_type_is_refused(event_type: str) -> None:
    other = EVENT_TYPES[(EVENT_TYPES.index(event_type) + 1) % len(EVENT_TYPES)]
    errors = errors_of(event(event_type, MINIMAL_PAYLOADS[other]))
    assert errors
    assert all(error["loc"][0] == "payload" for error in errors)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_an_unknown_payload_field_is_refused(event_type: str) -> None:
    error = only_error(with_payload(event_type, colour="red"))
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ("payload", "colour")


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_an_unknown_envelope_field_is_refused(event_type: str) -> None:
    error = only_error(event(event_type, command_type="add_post"))
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ("command_type",)


def test_an_unknown_actor_field_is_refused() -> None:
    error = only_error(event("forum.post.added", actor={"type": "agent", "name": "a", "id": 1}))
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ("actor", "id")


def test_an_unknown_field_in_a_posted_control_signal_is_refused() -> None:
    error = only_error(with_payload("forum.control.signal", signal={**SIGNAL, "colour": "red"}))
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == ("payload", "signal", "guidance_request", "colour")


def test_an_invalid_posted_control_signal_is_refused() -> None:
    error = only_error(with_payload("forum.control.signal", signal={**SIGNAL, "question": " "}))
    assert error["loc"] == ("payload", "signal", "guidance_request", "question")
    assert "is required (blank after trimming)" in error["msg"]


@pytest.mark.parametrize(
    "event_type",
    [
        "forum.thread.reopened",
        "FORUM.THREAD.OPENED",
        "thread.opened",
        "forum.integration.unknown",
        "",
    ],
)
def test_an_unknown_event_type_is_refused(event_type: str) -> None:
    data = event("forum.post.added")
    data["event_type"] = event_type
    error = only_error(data)
    assert error["type"] == "literal_error"
    assert error["loc"] == ("event_type",)
    assert "'forum.thread.opened'" in error["msg"]


@pytest.mark.parametrize("version", [0, 2, -1, 99])
def test_an_unknown_event_version_is_refused_naming_the_supported_ones(version: int) -> None:
    error = only_error(event("forum.post.added", event_version=version))
    assert error["loc"] == ("event_version",)
    assert f"event_version {version} is not supported (supported: 1)" in error["msg"]


@pytest.mark.parametrize("blank", BLANKS)
def test_a_blank_event_id_counts_as_missing(blank: str) -> None:
    error = only_error(event("forum.post.added", event_id=blank))
    assert error["loc"] == ("event_id",)
    assert "is required (blank after trimming)" in error["msg"]


@pytest.mark.parametrize("blank", BLANKS)
def test_a_blank_actor_name_counts_as_missing(blank: str) -> None:
    error = only_error(event("forum.post.added", actor={"type": "agent", "name": blank}))
    assert error["loc"] == ("actor", "name")
    assert "is required (blank after trimming)" in error["msg"]


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize("field", [*ENVELOPE_NAMES, "thread_id", "correlation_id", "causation_id"])
def test_a_blank_optional_envelope_field_is_stored_as_absent(field: str, blank: str) -> None:
    assert getattr(parse_event(event("forum.post.added", **{field: blank})), field) is None


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize(("event_type", "field"), REQUIRED_PAYLOAD_TEXT)
def test_a_blank_required_payload_text_counts_as_missing(
    event_type: str, field: str, blank: str
) -> None:
    error = only_error(with_payload(event_type, **{field: blank}))
    assert error["loc"] == ("payload", field)
    assert "is required (blank after trimming)" in error["msg"]


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("forum.assigned", "from_assignee_type"),
        ("forum.assigned", "from_assignee_name"),
        ("forum.assigned", "note"),
        ("forum.thread.closed", "reason"),
        ("run.status.changed", "cause_event_id"),
    ],
)
def test_a_blank_optional_payload_field_is_stored_as_absent(
    event_type: str, field: str, blank: str
) -> None:
    parsed = parse_event(with_payload(event_type, **{field: blank}))
    assert parsed.payload[field] is None
    assert getattr(parsed.typed_payload(), field) is None


@pytest.mark.parametrize("field", ["event_id", "thread_id", *ENVELOPE_NAMES])
def test_envelope_texts_are_stored_trimmed(field: str) -> None:
    assert getattr(parse_event(event("forum.post.added", **{field: " x\n"})), field) == "x"


@pytest.mark.parametrize(("event_type", "field"), [(t, f) for t, f, _, _ in PAYLOAD_TEXT])
def test_payload_texts_are_stored_trimmed(event_type: str, field: str) -> None:
    parsed = parse_event(with_payload(event_type, **{field: "\t padded \n"}))
    assert parsed.payload[field] == "padded"
    assert getattr(parsed.typed_payload(), field) == "padded"


def test_payload_enums_are_stored_lower_case_and_defaults_filled_in() -> None:
    parsed = parse_event(with_payload("forum.state.changed", from_state=" NEW ", to_state="Closed"))
    assert parsed.payload == {"from_state": "new", "to_state": "closed"}
    assert parse_event(event("forum.post.added")).payload["answer"] is False
    assert parse_event(event("forum.control.signal")).payload["epoch"] == 1


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("AGENT", ActorType.AGENT),
        (" operator", ActorType.OPERATOR),
        ("Human", ActorType.HUMAN),
        ("SYSTEM\n", ActorType.SYSTEM),
    ],
)
def test_actor_types_are_case_insensitive(raw: str, expected: ActorType) -> None:
    parsed = parse_event(event("forum.post.added", actor={"type": raw, "name": "x"}))
    assert parsed.actor.type is expected


@pytest.mark.parametrize("raw", ["robot", "agents", "", "bot"])
def test_an_actor_type_outside_agent_operator_human_system_is_refused(raw: str) -> None:
    error = only_error(event("forum.post.added", actor={"type": raw, "name": "x"}))
    assert error["loc"] == ("actor", "type")
    assert error["msg"] == "Input should be 'agent', 'operator', 'human' or 'system'"


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("forum.assigned", "from_assignee_type"),
        ("forum.assigned", "to_assignee_type"),
    ],
)
def test_an_unknown_assignee_type_is_refused(event_type: str, field: str) -> None:
    error = only_error(with_payload(event_type, **{field: "robot"}))
    assert error["loc"] == ("payload", field)
    assert error["type"] == "enum"


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("forum.thread.opened", "priority"),
        ("forum.priority.changed", "from_priority"),
        ("forum.priority.changed", "to_priority"),
    ],
)
def test_an_unknown_priority_is_refused(event_type: str, field: str) -> None:
    error = only_error(with_payload(event_type, **{field: "critical"}))
    assert error["loc"] == ("payload", field)
    assert error["msg"] == "Input should be 'low', 'normal', 'high' or 'urgent'"


@pytest.mark.parametrize(
    ("event_type", "field"),
    [
        ("forum.state.changed", "from_state"),
        ("forum.state.changed", "to_state"),
        ("forum.thread.closed", "from_state"),
    ],
)
def test_an_unknown_thread_state_is_refused(event_type: str, field: str) -> None:
    error = only_error(with_payload(event_type, **{field: "open"}))
    assert error["loc"] == ("payload", field)
    assert error["type"] == "enum"


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("sequence",), 0),
        (("thread_seq",), 0),
        (("sequence",), -5),
    ],
)
def test_sequences_start_at_one(path: tuple[str, ...], value: int) -> None:
    error = only_error(event("forum.post.added", **{path[0]: value}))
    assert error["loc"] == path
    assert error["type"] == "greater_than_equal"


def test_a_control_signal_epoch_starts_at_one() -> None:
    error = only_error(with_payload("forum.control.signal", epoch=0))
    assert error["loc"] == ("payload", "epoch")
    assert error["type"] == "greater_than_equal"


def test_an_escalation_threshold_is_not_negative() -> None:
    error = only_error(with_payload("forum.sla.escalation_requested", threshold_minutes=-1))
    assert error["loc"] == ("payload", "threshold_minutes")
    assert error["type"] == "greater_than_equal"


@pytest.mark.parametrize("field", ENVELOPE_IDS)
def test_an_envelope_id_at_the_limit_is_accepted_and_over_it_refused(field: str) -> None:
    parse_event(event("forum.post.added", **{field: "i" * MAX_ID_CHARS}))
    error = only_error(event("forum.post.added", **{field: "i" * (MAX_ID_CHARS + 1)}))
    assert error["loc"] == (field,)
    assert f"at most {MAX_ID_CHARS} characters" in error["msg"]


@pytest.mark.parametrize("field", ENVELOPE_NAMES)
def test_an_envelope_name_at_the_limit_is_accepted_and_over_it_refused(field: str) -> None:
    parse_event(event("forum.post.added", **{field: "n" * MAX_NAME_CHARS}))
    error = only_error(event("forum.post.added", **{field: "n" * (MAX_NAME_CHARS + 1)}))
    assert error["loc"] == (field,)
    assert f"at most {MAX_NAME_CHARS} characters" in error["msg"]


def test_an_actor_name_at_the_limit_is_accepted_and_over_it_refused() -> None:
    parse_event(event("forum.post.added", actor={"type": "agent", "name": "n" * MAX_NAME_CHARS}))
    error = only_error(
        event("forum.post.added", actor={"type": "agent", "name": "n" * (MAX_NAME_CHARS + 1)})
    )
    assert error["loc"] == ("actor", "name")
    assert f"at most {MAX_NAME_CHARS} characters" in error["msg"]


@pytest.mark.parametrize(("event_type", "field", "limit", "unit"), PAYLOAD_TEXT)
def test_a_payload_text_at_the_limit_is_accepted_and_over_it_refused(
    event_type: str, field: str, limit: int, unit: str
) -> None:
    parse_event(with_payload(event_type, **{field: "x" * limit}))
    error = only_error(with_payload(event_type, **{field: "x" * (limit + 1)}))
    assert error["loc"] == ("payload", field)
    assert f"at most {limit} {unit}" in error["msg"]


@pytest.mark.parametrize(
    ("event_type", "field"),
    [(t, f) for t, f, _, unit in PAYLOAD_TEXT if unit == "bytes of UTF-8"],
)
def test_a_multibyte_payload_body_is_limited_by_its_utf8_bytes(event_type: str, field: str) -> None:
    parse_event(with_payload(event_type, **{field: "é" * (MAX_BODY_BYTES // 2)}))
    over = "é" * (MAX_BODY_BYTES // 2 + 1)
    assert len(over) < MAX_BODY_BYTES
    error = only_error(with_payload(event_type, **{field: over}))
    assert error["loc"] == ("payload", field)
    assert f"at most {MAX_BODY_BYTES} bytes of UTF-8" in error["msg"]


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_a_parsed_event_is_frozen(event_type: str) -> None:
    parsed = parse_event(event(event_type))
    with pytest.raises(ValidationError) as caught:
        parsed.event_id = "other"  # type: ignore[misc]
    assert caught.value.errors()[0]["type"] == "frozen_instance"
    typed = parsed.typed_payload()
    first_field = next(iter(type(typed).model_fields))
    with pytest.raises(ValidationError) as caught:
        setattr(typed, first_field, "other")
    assert caught.value.errors()[0]["type"] == "frozen_instance"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_an_event_survives_a_json_round_trip(event_type: str) -> None:
    parsed = parse_event(
        event(
            event_type,
            FULL_PAYLOADS[event_type],
            sequence=42,
            thread_id="t-1",
            thread_seq=3,
            run_id="run-1",
            ticket="T-1",
            agent_name="agent-a",
            correlation_id="corr-1",
            causation_id="cause-1",
        )
    )
    wire = parsed.model_dump(mode="json")
    again = parse_event(wire)
    assert again == parsed
    assert again.typed_payload() == parsed.typed_payload()


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_an_event_built_directly_validates_its_payload_too(event_type: str) -> None:
    fields = event(event_type, {})
    with pytest.raises(ValidationError) as caught:
        Event(**fields)
    assert {e["loc"] for e in caught.value.errors()} == {
        ("payload", field) for field in PAYLOAD_REQUIRED[event_type]
    }


@pytest.mark.parametrize(
    ("event_type", "suffix"),
    [
        ("forum.thread.opened", "thread.opened"),
        ("forum.post.added", "post.added"),
        ("forum.control.signal", "control.signal"),
        ("forum.assigned", "assigned"),
        ("forum.state.changed", "state.changed"),
        ("forum.priority.changed", "priority.changed"),
        ("forum.thread.closed", "thread.closed"),
        ("forum.sla.escalation_requested", "sla.escalation_requested"),
        ("run.status.changed", "run.status.changed"),
        ("Forum.Thread.Opened", "thread.opened"),
    ],
)
def test_the_topic_suffix_is_the_lower_cased_type_without_forum(
    event_type: str, suffix: str
) -> None:
    assert event_topic_suffix(event_type) == suffix


def test_every_event_type_has_a_distinct_topic_suffix() -> None:
    suffixes = [event_topic_suffix(event_type) for event_type in EVENT_TYPES]
    assert len(set(suffixes)) == len(EVENT_TYPES)
