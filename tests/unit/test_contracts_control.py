"""Contract tests of the control signal payloads (schema version 1)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from metawsm.messages.common import MAX_BODY_BYTES, MAX_NAME_CHARS
from metawsm.messages.control import (
    Completion,
    ControlType,
    GuidanceAnswer,
    GuidanceRequest,
    Validation,
    ValidationStatus,
    parse_control,
)

MINIMAL: dict[str, dict[str, Any]] = {
    "guidance_request": {"question": "which database?"},
    "guidance_answer": {"answer": "SQLite"},
    "completion": {},
    "validation": {"status": "passed", "done_criteria": "all tests green"},
}
MODELS = {
    "guidance_request": GuidanceRequest,
    "guidance_answer": GuidanceAnswer,
    "completion": Completion,
    "validation": Validation,
}
CONTROL_TYPES = sorted(MINIMAL)
REQUIRED = [
    *[(control_type, "run_id") for control_type in CONTROL_TYPES],
    *[(control_type, "agent_name") for control_type in CONTROL_TYPES],
    ("guidance_request", "question"),
    ("guidance_answer", "answer"),
    ("validation", "status"),
    ("validation", "done_criteria"),
]
REQUIRED_TEXT = [pair for pair in REQUIRED if pair[1] != "status"]
OPTIONAL_BODIES = [("guidance_request", "context"), ("completion", "summary")]
BODIES = [
    ("guidance_request", "question"),
    ("guidance_request", "context"),
    ("guidance_answer", "answer"),
    ("completion", "summary"),
    ("validation", "done_criteria"),
]
BLANKS = ["", " ", "\t", "\n", " \t\r\n "]


def signal(control_type: str, **fields: Any) -> dict[str, Any]:
    """A valid wire payload of ``control_type``, with ``fields`` overriding or added."""
    data = {"control_type": control_type, "run_id": "run-1", "agent_name": "agent-a"}
    data.update(MINIMAL[control_type])
    data.update(fields)
    return data


def refusal(data: dict[str, Any]) -> list[dict[str, Any]]:
    """The pydantic errors raised by parsing ``data`` (fails the test when it parses)."""
    with pytest.raises(ValidationError) as caught:
        parse_control(data)
    return [dict(error) for error in caught.value.errors()]


def only_error(data: dict[str, Any]) -> dict[str, Any]:
    """The single error raised by parsing ``data``."""
    errors = refusal(data)
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize("control_type", CONTROL_TYPES)
def test_a_minimal_signal_of_each_type_parses_into_its_model(control_type: str) -> None:
    parsed = parse_control(signal(control_type))
    assert type(parsed) is MODELS[control_type]
    assert parsed.control_type == control_type
    assert parsed.schema_version == 1


def test_every_control_type_has_a_model_and_a_minimal_example() -> None:
    assert set(MODELS) == set(MINIMAL) == {member.value for member in ControlType}


@pytest.mark.parametrize(("control_type", "field"), REQUIRED)
def test_a_signal_without_a_required_field_is_refused(control_type: str, field: str) -> None:
    data = signal(control_type)
    del data[field]
    error = only_error(data)
    assert error["type"] == "missing"
    assert error["loc"] == (control_type, field)


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize(("control_type", "field"), REQUIRED_TEXT)
def test_a_required_field_that_is_blank_after_trimming_counts_as_missing(
    control_type: str, field: str, blank: str
) -> None:
    error = only_error(signal(control_type, **{field: blank}))
    assert error["loc"] == (control_type, field)
    assert "is required (blank after trimming)" in error["msg"]


@pytest.mark.parametrize("blank", BLANKS)
def test_a_blank_validation_status_is_refused(blank: str) -> None:
    error = only_error(signal("validation", status=blank))
    assert error["loc"] == ("validation", "status")
    assert error["type"] == "enum"


@pytest.mark.parametrize(("control_type", "field"), OPTIONAL_BODIES)
def test_an_optional_text_may_be_left_out(control_type: str, field: str) -> None:
    data = signal(control_type)
    data.pop(field, None)
    assert getattr(parse_control(data), field) is None


@pytest.mark.parametrize("blank", BLANKS)
@pytest.mark.parametrize(("control_type", "field"), OPTIONAL_BODIES)
def test_an_optional_text_that_is_blank_is_stored_as_absent(
    control_type: str, field: str, blank: str
) -> None:
    assert getattr(parse_control(signal(control_type, **{field: blank})), field) is None


@pytest.mark.parametrize(
    ("control_type", "field"),
    [*REQUIRED_TEXT, *OPTIONAL_BODIES],
)
def test_text_fields_are_stored_trimmed(control_type: str, field: str) -> None:
    parsed = parse_control(signal(control_type, **{field: " \t some text\r\n "}))
    assert getattr(parsed, field) == "some text"


def test_inner_whitespace_is_kept() -> None:
    parsed = parse_control(signal("guidance_request", question=" line one\n\nline two "))
    assert parsed.question == "line one\n\nline two"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("passed", ValidationStatus.PASSED),
        (" PASSED ", ValidationStatus.PASSED),
        ("Passed\n", ValidationStatus.PASSED),
        ("failed", ValidationStatus.FAILED),
        ("\tFAILED", ValidationStatus.FAILED),
    ],
)
def test_validation_status_is_trimmed_and_case_insensitive(
    raw: str, expected: ValidationStatus
) -> None:
    parsed = parse_control(signal("validation", status=raw))
    assert parsed.status is expected  # type: ignore[union-attr]


@pytest.mark.parametrize("raw", ["passd", "pass", "ok", "success", "passed failed", "1"])
def test_a_validation_status_other_than_passed_or_failed_is_refused(raw: str) -> None:
    error = only_error(signal("validation", status=raw))
    assert error["loc"] == ("validation", "status")
    assert error["type"] == "enum"
    assert "'passed' or 'failed'" in error["msg"]


@pytest.mark.parametrize("version", [0, 2, 3, -1, 100])
@pytest.mark.parametrize("control_type", CONTROL_TYPES)
def test_an_unknown_schema_version_is_refused_naming_the_supported_ones(
    control_type: str, version: int
) -> None:
    error = only_error(signal(control_type, schema_version=version))
    assert error["loc"] == (control_type, "schema_version")
    assert f"schema_version {version} is not supported (supported: 1)" in error["msg"]


@pytest.mark.parametrize("control_type", CONTROL_TYPES)
def test_schema_version_defaults_to_one_and_one_is_accepted(control_type: str) -> None:
    assert parse_control(signal(control_type)).schema_version == 1
    assert parse_control(signal(control_type, schema_version=1)).schema_version == 1


@pytest.mark.parametrize("control_type", CONTROL_TYPES)
@pytest.mark.parametrize("field", ["run_id", "agent_name"])
def test_a_name_of_exactly_the_limit_is_accepted(control_type: str, field: str) -> None:
    value = "n" * MAX_NAME_CHARS
    assert getattr(parse_control(signal(control_type, **{field: value})), field) == value


@pytest.mark.parametrize("control_type", CONTROL_TYPES)
@pytest.mark.parametrize("field", ["run_id", "agent_name"])
def test_a_name_over_the_limit_is_refused(control_type: str, field: str) -> None:
    error = only_error(signal(control_type, **{field: "n" * (MAX_NAME_CHARS + 1)}))
    assert error["loc"] == (control_type, field)
    assert f"at most {MAX_NAME_CHARS} characters" in error["msg"]


@pytest.mark.parametrize(
    "value",
    [
        "a" * MAX_BODY_BYTES,
        "é" * (MAX_BODY_BYTES // 2),
        "😀" * (MAX_BODY_BYTES // 4),
        "  " + "a" * MAX_BODY_BYTES + "\n",
    ],
    ids=["ascii", "two-byte", "four-byte", "padded-then-trimmed"],
)
@pytest.mark.parametrize(("control_type", "field"), BODIES)
def test_a_body_of_exactly_the_byte_limit_is_accepted(
    control_type: str, field: str, value: str
) -> None:
    parsed = parse_control(signal(control_type, **{field: value}))
    assert len(getattr(parsed, field).encode("utf-8")) == MAX_BODY_BYTES


@pytest.mark.parametrize(
    "value",
    [
        "a" * (MAX_BODY_BYTES + 1),
        "é" * (MAX_BODY_BYTES // 2 + 1),
        "€" * (MAX_BODY_BYTES // 3 + 1),
        "a" * (MAX_BODY_BYTES - 1) + "é",
    ],
    ids=["ascii", "two-byte", "three-byte", "last-char-crosses"],
)
@pytest.mark.parametrize(("control_type", "field"), BODIES)
def test_a_body_over_the_byte_limit_is_refused(control_type: str, field: str, value: str) -> None:
    error = only_error(signal(control_type, **{field: value}))
    assert error["loc"] == (control_type, field)
    assert f"at most {MAX_BODY_BYTES} bytes of UTF-8" in error["msg"]


def test_multibyte_text_under_the_char_count_but_over_the_byte_count_is_refused() -> None:
    value = "é" * (MAX_BODY_BYTES // 2 + 1)
    assert len(value) < MAX_BODY_BYTES < len(value.encode("utf-8"))
    error = only_error(signal("guidance_answer", answer=value))
    assert error["loc"] == ("guidance_answer", "answer")
    assert "bytes of UTF-8" in error["msg"]


@pytest.mark.parametrize("control_type", CONTROL_TYPES)
def test_an_unknown_field_is_refused(control_type: str) -> None:
    error = only_error(signal(control_type, priority="high"))
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == (control_type, "priority")


@pytest.mark.parametrize(
    ("control_type", "foreign_field"),
    [
        ("guidance_request", "answer"),
        ("guidance_answer", "question"),
        ("completion", "status"),
        ("validation", "summary"),
    ],
)
def test_a_field_of_another_control_type_is_refused(control_type: str, foreign_field: str) -> None:
    error = only_error(signal(control_type, **{foreign_field: "x"}))
    assert error["type"] == "extra_forbidden"
    assert error["loc"] == (control_type, foreign_field)


@pytest.mark.parametrize(
    "control_type", ["nope", "Completion", "GUIDANCE_REQUEST", " completion", ""]
)
def test_an_unknown_control_type_is_refused(control_type: str) -> None:
    data = signal("completion")
    data["control_type"] = control_type
    error = only_error(data)
    assert error["type"] == "union_tag_invalid"
    assert error["loc"] == ()
    assert "guidance_request" in error["msg"]


def test_a_signal_without_a_control_type_is_refused() -> None:
    data = signal("completion")
    del data["control_type"]
    error = only_error(data)
    assert error["type"] == "union_tag_not_found"
    assert "control_type" in error["msg"]


@pytest.mark.parametrize("field", ["run_id", "agent_name"])
def test_a_non_text_name_is_refused(field: str) -> None:
    error = only_error(signal("completion", **{field: 42}))
    assert error["loc"] == ("completion", field)
    assert error["type"] == "string_type"


@pytest.mark.parametrize("control_type", CONTROL_TYPES)
def test_a_parsed_signal_is_frozen(control_type: str) -> None:
    parsed = parse_control(signal(control_type))
    with pytest.raises(ValidationError) as caught:
        parsed.run_id = "other"  # type: ignore[misc]
    assert caught.value.errors()[0]["type"] == "frozen_instance"
    assert parsed.run_id == "run-1"


@pytest.mark.parametrize("control_type", CONTROL_TYPES)
def test_a_signal_survives_a_json_round_trip(control_type: str) -> None:
    extras = {
        "guidance_request": {"context": "stuck on migrations"},
        "completion": {"summary": "done"},
        "validation": {"status": "FAILED"},
    }.get(control_type, {})
    parsed = parse_control(signal(control_type, **extras))
    assert parse_control(parsed.model_dump(mode="json")) == parsed


@pytest.mark.parametrize("control_type", CONTROL_TYPES)
def test_a_model_built_directly_applies_the_same_rules(control_type: str) -> None:
    fields = signal(control_type, run_id="  ")
    del fields["control_type"]
    with pytest.raises(ValidationError) as caught:
        MODELS[control_type](**fields)
    assert [e["loc"] for e in caught.value.errors()] == [("run_id",)]
