"""Shared field types, limits and enums of the message contracts."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

# Size limits: no input can bloat the database or the broker.
MAX_NAME_CHARS = 512
MAX_TITLE_CHARS = 512
MAX_ID_CHARS = 128
MAX_BODY_BYTES = 64 * 1024
MAX_REASON_CHARS = 2048


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
        if not value:
            raise ValueError("is required (blank after trimming)")
        if max_chars is not None and len(value) > max_chars:
            raise ValueError(f"must be at most {max_chars} characters (got {len(value)})")
        if max_bytes is not None and len(value.encode("utf-8")) > max_bytes:
            raise ValueError(f"must be at most {max_bytes} bytes of UTF-8")
        return value

    return AfterValidator(check)


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return _strip(value)


def _lower(value: Any) -> Any:
    return value.strip().lower() if isinstance(value, str) else value


Name = Annotated[str, BeforeValidator(_strip), _text_rule(max_chars=MAX_NAME_CHARS)]
Title = Annotated[str, BeforeValidator(_strip), _text_rule(max_chars=MAX_TITLE_CHARS)]
Identifier = Annotated[str, BeforeValidator(_strip), _text_rule(max_chars=MAX_ID_CHARS)]
Body = Annotated[str, BeforeValidator(_strip), _text_rule(max_bytes=MAX_BODY_BYTES)]
Reason = Annotated[str, BeforeValidator(_strip), _text_rule(max_chars=MAX_REASON_CHARS)]
OptName = Annotated[Name | None, BeforeValidator(_blank_to_none)]
OptIdentifier = Annotated[Identifier | None, BeforeValidator(_blank_to_none)]
OptBody = Annotated[Body | None, BeforeValidator(_blank_to_none)]
OptReason = Annotated[Reason | None, BeforeValidator(_blank_to_none)]


class ActorType(StrEnum):
    """Who acts: a coding agent, an operator, a human, or metawsm itself."""

    AGENT = "agent"
    OPERATOR = "operator"
    HUMAN = "human"
    SYSTEM = "system"


class ThreadState(StrEnum):
    """States of a forum thread (spec §2.1)."""

    NEW = "new"
    TRIAGED = "triaged"
    WAITING_OPERATOR = "waiting_operator"
    WAITING_HUMAN = "waiting_human"
    ANSWERED = "answered"
    CLOSED = "closed"


class Priority(StrEnum):
    """Thread priorities, most urgent last in declaration order of rank (spec §2.2)."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


PRIORITY_RANK = {Priority.URGENT: 1, Priority.HIGH: 2, Priority.NORMAL: 3, Priority.LOW: 4}

ActorTypeField = Annotated[ActorType, BeforeValidator(_lower)]
ThreadStateField = Annotated[ThreadState, BeforeValidator(_lower)]
PriorityField = Annotated[Priority, BeforeValidator(_lower)]
OptActorTypeField = Annotated[ActorTypeField | None, BeforeValidator(_blank_to_none)]


class Actor(Frozen):
    """An actor reference: type and name."""

    type: ActorTypeField
    name: Name
