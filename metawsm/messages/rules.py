"""The rules of message fields, without pydantic: size limits, enumerations and text checks.

The pydantic message models apply them (``common.py`` wraps the checks into field types), and
so does the command line's plain path (``plain.py``), which builds a command's wire form
without importing pydantic: one copy of each rule and of each error message.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

# Size limits: no input can bloat the database or the broker.
MAX_NAME_CHARS = 512
MAX_TITLE_CHARS = 512
MAX_ID_CHARS = 128
MAX_BODY_BYTES = 64 * 1024
MAX_REASON_CHARS = 2048


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


class ValidationStatus(StrEnum):
    """Outcome an agent reports in a validation signal."""

    PASSED = "passed"
    FAILED = "failed"


def check_text(value: str, max_chars: int | None = None, max_bytes: int | None = None) -> str:
    """``value`` (already trimmed) when it is not blank and within the limits.

    Raises:
        ValueError: naming the rule it broke (blank, too many characters, too many bytes).
    """
    if not value:
        raise ValueError("is required (blank after trimming)")
    if max_chars is not None and len(value) > max_chars:
        raise ValueError(f"must be at most {max_chars} characters (got {len(value)})")
    size = utf8_size(value)  # every text: input that is not UTF-8 is said so plainly
    if max_bytes is not None and size > max_bytes:
        raise ValueError(f"must be at most {max_bytes} bytes of UTF-8 (got {size})")
    return value


def utf8_size(value: str) -> int:
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


def strip(value: Any) -> Any:
    """A string trimmed of surrounding whitespace; anything else unchanged."""
    return value.strip() if isinstance(value, str) else value


def blank_to_none(value: Any) -> Any:
    """None for a blank string (an optional field left empty), else :func:`strip`."""
    if isinstance(value, str) and not value.strip():
        return None
    return strip(value)


def lower(value: Any) -> Any:
    """A string trimmed and lower-cased (enumerations are case-insensitive); else unchanged."""
    return value.strip().lower() if isinstance(value, str) else value
