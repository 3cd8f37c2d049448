"""Commands checked without pydantic: the wire form of a command line's write, at ~1 ms.

A ``metawsm forum ask`` or ``forum signal`` process builds one command. Importing pydantic and
building that command's model costs it ~60-100 ms of CPU, more than everything else it does
(docs/performance.md, "Command-line start-up"). This module builds the same wire form — what
``parse_command(data).model_dump(mode="json")`` returns, key for key and in the same order —
from the same rules (``rules.py``) and the field lists below, which mirror the models.

It only ever *accepts* what the models accept: anything it does not positively recognise
(a value of another type, an unknown key, a broken rule) raises :class:`Unchecked`, and the
caller validates with the models, which give the verdict and the error message. The workers
validate every command with the models again. ``tests/unit/test_plain_commands.py`` checks the
field lists against the models and that, over a corpus of valid and invalid input, what this
module accepts the models accept with the same wire form.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from metawsm.messages.rules import (
    MAX_BODY_BYTES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
    MAX_TITLE_CHARS,
    ActorType,
    Priority,
    ThreadState,
    ValidationStatus,
    blank_to_none,
    check_text,
    lower,
    strip,
)

SCHEMA_VERSION = 1  # the one command and control schema version (commands.py, control.py)


class Unchecked(Exception):
    """This module cannot vouch for the input: validate it with the models instead."""


Rule = Callable[[Any], Any]  # the wire value of an input value, or raises Unchecked
_REQUIRED = object()


@dataclass(frozen=True)
class PlainCommand:
    """A command checked by this module: its id, type and wire form (``wire``, as the model
    dumps it, JSON types only)."""

    command_id: str
    command_type: str
    wire: dict[str, Any]

    @property
    def payload(self) -> dict[str, Any]:
        """The command's payload, wire form."""
        payload: dict[str, Any] = self.wire["payload"]
        return payload


def _text(max_chars: int | None = None, max_bytes: int | None = None) -> Rule:
    def rule(value: Any) -> str:
        if type(value) is not str:
            raise Unchecked
        try:
            value.encode("utf-8")  # pydantic refuses what is not text (a lone surrogate)
            return check_text(strip(value), max_chars, max_bytes)
        except ValueError:  # a broken rule (UnicodeEncodeError too): the models say which
            raise Unchecked from None

    return rule


def _optional(rule: Rule) -> Rule:
    def optional(value: Any) -> Any:
        value = blank_to_none(value)
        return None if value is None else rule(value)

    return optional


def _choice(values: type[ActorType | Priority | ThreadState | ValidationStatus]) -> Rule:
    allowed = {member.value for member in values}

    def rule(value: Any) -> str:
        if type(value) is not str or lower(value) not in allowed:
            raise Unchecked
        return str(lower(value))

    return rule


def _version(value: Any) -> int:
    if type(value) is not int or value != SCHEMA_VERSION:
        raise Unchecked
    return value


def _literal(expected: str) -> Rule:
    def rule(value: Any) -> str:
        if value != expected or type(value) is not str:
            raise Unchecked
        return expected

    return rule


def _issued_at(value: Any) -> str:
    # Only what make_command passes: an aware UTC datetime, dumped as pydantic dumps it.
    if type(value) is not datetime or value.utcoffset() is None or value.utcoffset():
        raise Unchecked
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


NAME = _text(max_chars=MAX_NAME_CHARS)
TITLE = _text(max_chars=MAX_TITLE_CHARS)
IDENTIFIER = _text(max_chars=MAX_ID_CHARS)
BODY = _text(max_bytes=MAX_BODY_BYTES)
REASON = _text(max_chars=MAX_REASON_CHARS)

# Field name -> (rule, default): the models' fields, in their order.
Fields = Mapping[str, tuple[Rule, Any]]

CONTROL_BASE: Fields = {
    "schema_version": (_version, SCHEMA_VERSION),
    "run_id": (NAME, _REQUIRED),
    "agent_name": (NAME, _REQUIRED),
}
CONTROL_FIELDS: dict[str, Fields] = {
    "guidance_request": {"question": (BODY, _REQUIRED), "context": (_optional(BODY), None)},
    "guidance_answer": {"answer": (BODY, _REQUIRED)},
    "completion": {"summary": (_optional(BODY), None)},
    "validation": {
        "status": (_choice(ValidationStatus), _REQUIRED),
        "done_criteria": (BODY, _REQUIRED),
    },
}


def _fields(fields: Fields, data: Any) -> dict[str, Any]:
    """``data`` (a dict with no other keys) checked field by field, defaults filled in."""
    if type(data) is not dict or not set(data) <= set(fields):
        raise Unchecked
    out = {}
    for name, (rule, default) in fields.items():
        if name in data:
            out[name] = rule(data[name])
        elif default is _REQUIRED:
            raise Unchecked
        else:
            out[name] = default
    return out


def control(data: Any) -> dict[str, Any]:
    """The wire form of a control payload (``control.py``'s models, every field).

    Raises:
        Unchecked: anything the models should judge.
    """
    kind = data.get("control_type") if type(data) is dict else None
    if type(kind) is not str or kind not in CONTROL_FIELDS:
        raise Unchecked
    fields = {**CONTROL_BASE, "control_type": (_literal(kind), kind), **CONTROL_FIELDS[kind]}
    return _fields(fields, data)


def _control_signal(data: Any) -> dict[str, Any]:
    payload = _fields(
        {
            "run_id": (NAME, _REQUIRED),
            "agent_name": (NAME, _REQUIRED),
            "ticket": (_optional(NAME), None),
            "signal": (control, _REQUIRED),
        },
        data,
    )
    signal = payload["signal"]
    if (signal["run_id"], signal["agent_name"]) != (payload["run_id"], payload["agent_name"]):
        raise Unchecked  # the model's validator names the mismatch
    return payload


THREAD = {"thread_id": (IDENTIFIER, _REQUIRED)}
PAYLOADS: dict[str, Fields | Rule] = {
    "open_thread": {
        **THREAD,
        "ticket": (NAME, _REQUIRED),
        "run_id": (_optional(NAME), None),
        "agent_name": (_optional(NAME), None),
        "title": (TITLE, _REQUIRED),
        "body": (BODY, _REQUIRED),
        "priority": (_choice(Priority), Priority.NORMAL.value),
    },
    "add_post": {**THREAD, "body": (BODY, _REQUIRED)},
    "answer_thread": {**THREAD, "body": (BODY, _REQUIRED)},
    "assign_thread": {
        **THREAD,
        "assignee_type": (_choice(ActorType), _REQUIRED),
        "assignee_name": (NAME, _REQUIRED),
        "note": (_optional(BODY), None),
    },
    "change_state": {**THREAD, "to_state": (_choice(ThreadState), _REQUIRED)},
    "set_priority": {**THREAD, "priority": (_choice(Priority), _REQUIRED)},
    "close_thread": {**THREAD, "reason": (_optional(REASON), None)},
    "control_signal": _control_signal,
}
ENVELOPE: Fields = {
    "command_id": (IDENTIFIER, _REQUIRED),
    "schema_version": (_version, SCHEMA_VERSION),
    "issued_at": (_issued_at, _REQUIRED),
    "actor_type": (_choice(ActorType), _REQUIRED),
    "actor_name": (NAME, _REQUIRED),
    "correlation_id": (_optional(IDENTIFIER), None),
    "causation_id": (_optional(IDENTIFIER), None),
}


def command(data: Any) -> PlainCommand:
    """The command ``data`` describes (``issued_at`` an aware UTC datetime), checked.

    Raises:
        Unchecked: anything the models should judge.
    """
    kind = data.get("command_type") if type(data) is dict else None
    if type(kind) is not str or kind not in PAYLOADS:
        raise Unchecked
    payload = PAYLOADS[kind]
    payload_rule = payload if callable(payload) else _payload_rule(payload)
    fields = {
        **ENVELOPE,
        "command_type": (_literal(kind), kind),
        "payload": (payload_rule, _REQUIRED),
    }
    wire = _fields(fields, data)
    return PlainCommand(wire["command_id"], kind, wire)


def _payload_rule(fields: Fields) -> Rule:
    def rule(data: Any) -> dict[str, Any]:
        return _fields(fields, data)

    return rule


def with_actor(command: PlainCommand, actor_type: str, actor_name: str) -> PlainCommand:
    """``command`` acting as (``actor_type``, ``actor_name``), checked as the envelope is.

    Raises:
        Unchecked: the actor breaks a rule (the models say which).
    """
    wire = {
        **command.wire,
        "actor_type": ENVELOPE["actor_type"][0](actor_type),
        "actor_name": ENVELOPE["actor_name"][0](actor_name),
    }
    return PlainCommand(command.command_id, command.command_type, wire)


def payload_value(command: Any, *path: str) -> Any:
    """A field of a command's payload, ``path`` naming nested fields (``"signal",
    "control_type"``): from a plain command's wire form or a model's attributes alike; None
    when the payload has no such field."""
    value = command.payload
    for name in path:
        value = value.get(name) if isinstance(value, dict) else getattr(value, name, None)
    return value
