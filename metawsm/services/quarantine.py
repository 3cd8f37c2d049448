"""Quarantine: elements of a queue that no task can take, kept as dead letters.

A worker meets them when something other than metawsm's publisher writes to a queue: bytes that
are not UTF-8 or not JSON, JSON that is not a kombu message, a message in a refused format
(pickle: only JSON is ever deserialised), a message naming no known task. They used to stop the
worker or vanish with a log line; now each becomes a ``forum_dead_letters`` row of kind
``quarantine`` that keeps the element as it was (bounded to :data:`RAW_LIMIT_BYTES`), the reason
and the queue, and the worker goes on.

Such an element has no trustworthy message id, so its id is derived from its bytes
(:func:`quarantine_id`): the same element met twice is one dead letter with two attempts. It
cannot be redriven (it is not a message any task takes); it can be purged.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, update
from sqlalchemy.exc import IntegrityError

from metawsm.errors import DatabaseBusy
from metawsm.storage.models import ForumDeadLetter
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work

QUARANTINE_KIND = "quarantine"
ID_PREFIX = "quarantine-"
ID_HEX_DIGITS = 24
RAW_LIMIT_BYTES = 64 * 1024  # of the element kept in the dead letter; the rest is cut
REASON_LIMIT_CHARS = 2_000
NAME_LIMIT_CHARS = 128  # forum_dead_letters.task_name and .topic
TRACEBACK_LIMIT_CHARS = 10_000


@dataclass(frozen=True)
class Quarantined:
    """An element taken off ``queue`` that no task can take, and why."""

    raw: bytes  # the element exactly as it was in the queue
    queue: str
    reason: str
    task_name: str = ""  # the task it names, when it names one
    traceback: str | None = None


def quarantine_id(raw: bytes) -> str:
    """The dead-letter id of an element: ``quarantine-`` and 24 hex digits of its SHA-256."""
    return ID_PREFIX + hashlib.sha256(raw).hexdigest()[:ID_HEX_DIGITS]


def kept_raw(raw: bytes, limit_bytes: int = RAW_LIMIT_BYTES) -> dict[str, Any]:
    """What a dead letter keeps of an element: at most ``limit_bytes`` of it, as text when it is
    UTF-8 without NUL characters (a multi-byte character cut by the limit is dropped whole),
    otherwise base64; its full size, whether it was cut, and the SHA-256 of all of it."""
    kept = raw[:limit_bytes]
    text = _utf8_text(kept, cut=len(raw) > limit_bytes)
    return {
        "raw": text if text is not None else base64.b64encode(kept).decode("ascii"),
        "raw_encoding": "utf-8" if text is not None else "base64",
        "raw_bytes": len(raw),
        "truncated": len(raw) > limit_bytes,
        "sha256": hashlib.sha256(raw).hexdigest(),
    }


def _utf8_text(data: bytes, *, cut: bool) -> str | None:
    """``data`` as text, or None when it is not UTF-8 or holds a NUL (PostgreSQL text cannot).
    When ``cut``, an incomplete character at the end is dropped rather than refused."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data, final=not cut)
    except UnicodeDecodeError:
        return None
    return None if "\x00" in text else text


def _clean(text: str, limit: int) -> str:
    """``text`` fit for a text column: no NUL characters, at most ``limit`` characters."""
    return text.replace("\x00", "\\x00")[:limit]


def record(engine: Engine, element: Quarantined) -> str:
    """Record ``element`` as a dead letter (or count one more attempt on it); its message id.

    A purged dead letter met again is dead again: it needs a look.

    Raises:
        DatabaseBusy: the database stayed locked past its busy timeout.
        DatabaseUnreachable: the database cannot be reached.
    """
    message_id = quarantine_id(element.raw)
    try:
        _record(engine, message_id, element)
    except DatabaseBusy as exc:
        if not isinstance(exc.__cause__, IntegrityError):
            raise
        # Another worker met the same element at the same moment and inserted the row first.
        _record(engine, message_id, element)
    return message_id


def _record(engine: Engine, message_id: str, element: Quarantined) -> None:
    now = utcnow()
    trace = element.traceback
    latest = {
        "task_name": _clean(element.task_name, NAME_LIMIT_CHARS),
        "topic": _clean(element.queue, NAME_LIMIT_CHARS),
        "error": _clean(element.reason, REASON_LIMIT_CHARS),
        "traceback": _clean(trace, TRACEBACK_LIMIT_CHARS) if trace else None,
        "status": "dead",
        "last_failed_at": now,
    }
    with unit_of_work(engine) as session:
        # One statement, so that workers counting the same element at once lose no attempt.
        counted = session.execute(
            update(ForumDeadLetter)
            .where(ForumDeadLetter.message_id == message_id)
            .values(attempts=ForumDeadLetter.attempts + 1, **latest)
        )
        if getattr(counted, "rowcount", 0):
            return
        session.add(
            ForumDeadLetter(
                message_id=message_id,
                kind=QUARANTINE_KIND,
                payload={"queue": element.queue, **kept_raw(element.raw)},
                attempts=1,
                first_failed_at=now,
                **latest,
            )
        )
