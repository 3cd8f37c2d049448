"""Shared field types, limits and enums of the message contracts.

The rules themselves (limits, enumerations, text checks) live in ``rules.py``, without pydantic,
for the command line's plain path; here they become pydantic field types.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

from metawsm.messages.rules import (
    MAX_BODY_BYTES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_REASON_CHARS,
    MAX_TITLE_CHARS,
    ActorType,
    Priority,
    ThreadState,
    blank_to_none,
    check_text,
    lower,
    strip,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_ID_CHARS",
    "MAX_NAME_CHARS",
    "MAX_REASON_CHARS",
    "MAX_TITLE_CHARS",
    "PRIORITY_RANK",
    "Actor",
    "ActorType",
    "ActorTypeField",
    "Body",
    "Frozen",
    "Identifier",
    "Name",
    "OptActorTypeField",
    "OptBody",
    "OptIdentifier",
    "OptName",
    "OptReason",
    "Priority",
    "PriorityField",
    "Reason",
    "ThreadState",
    "ThreadStateField",
    "Title",
]


class Frozen(BaseModel):
    """Base of every message model: immutable, strict about unknown fields."""

    # defer_build: a model's validator is built when first used, not at import, so a process
    # that sends one command builds one command's schema (docs/performance.md, "Command-line
    # start-up"); the workers build each on first delivery.
    model_config = ConfigDict(
        frozen=True, extra="forbid", str_strip_whitespace=True, defer_build=True
    )


def _text_rule(max_chars: int | None = None, max_bytes: int | None = None) -> Any:
    def check(value: str) -> str:
        return check_text(value, max_chars, max_bytes)

    return AfterValidator(check)


Name = Annotated[str, BeforeValidator(strip), _text_rule(max_chars=MAX_NAME_CHARS)]
Title = Annotated[str, BeforeValidator(strip), _text_rule(max_chars=MAX_TITLE_CHARS)]
Identifier = Annotated[str, BeforeValidator(strip), _text_rule(max_chars=MAX_ID_CHARS)]
Body = Annotated[str, BeforeValidator(strip), _text_rule(max_bytes=MAX_BODY_BYTES)]
Reason = Annotated[str, BeforeValidator(strip), _text_rule(max_chars=MAX_REASON_CHARS)]
OptName = Annotated[Name | None, BeforeValidator(blank_to_none)]
OptIdentifier = Annotated[Identifier | None, BeforeValidator(blank_to_none)]
OptBody = Annotated[Body | None, BeforeValidator(blank_to_none)]
OptReason = Annotated[Reason | None, BeforeValidator(blank_to_none)]

PRIORITY_RANK = {Priority.URGENT: 1, Priority.HIGH: 2, Priority.NORMAL: 3, Priority.LOW: 4}

ActorTypeField = Annotated[ActorType, BeforeValidator(lower)]
ThreadStateField = Annotated[ThreadState, BeforeValidator(lower)]
PriorityField = Annotated[Priority, BeforeValidator(lower)]
OptActorTypeField = Annotated[ActorTypeField | None, BeforeValidator(blank_to_none)]


class Actor(Frozen):
    """An actor reference: type and name."""

    type: ActorTypeField
    name: Name
