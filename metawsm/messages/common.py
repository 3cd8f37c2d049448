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

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


def _text_rule(max_chars: int | None = None, max_bytes: int | None = None) -> Any:
    def check(value: str) -> str:
        if not value:
            raise ValueError("is required (blank after trimming)")
        if max_chars is not None and len(value) > max_chars:
            raise ValueError(f"must be at most {max_chars} characters (got {len(value)})")
        size = _utf8_size(value)  # every text: input that is not UTF-8 is said so plainly
        if max_bytes is not None and size > max_bytes:
            raise ValueError(f"must be at most {max_bytes} bytes of UTF-8 (got {size})")
        return value

    return AfterValidator(check)


def _utf8_size(value: str) -> int:
    """Bytes of ``value`` in UTF-8.

    Raises:
        ValueError: ``value`` holds bytes that are not UTF-8 (undecodable input reaches Python
            as lone surrogates), said in plain words.
    """
    try:
        return len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError(
            "is not valid UTF-8 text (it holds bytes that are not UTF-8: convert it first,"
            " e.g. with iconv)"
        ) from None


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
