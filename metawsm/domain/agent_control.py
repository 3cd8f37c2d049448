"""One agent's control state in its run's current epoch, as the snapshot, the gates and the SLA
rules read it: :class:`AgentControl`, and :func:`control_in_epoch` from a stored state's fields.

Apart from the folds (``domain/control.py``, which re-exports ``AgentControl``), so that a
command line read (``status``, ``watch``, ``operator``) imports neither ``ControlState`` nor
``SignalRecord``: each dataclass costs ~1 ms to make at import.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

_FIELDS = (
    "agent_name", "thread_id", "pending", "question", "context", "asked_at", "request_event_id",
    "request_seq", "completed", "summary", "validation_status", "validation_done_criteria",
    "last_signal_at", "last_event_id",
)  # fmt: skip


class AgentControl:
    """The control state of one agent in one run (slotted: a snapshot makes one per agent).

    A plain class with a dataclass's constructor, equality and repr written out: making
    ``@dataclass(slots=True)`` compiles its methods at import (~5 M instructions of every
    ``status``, ``watch`` and ``operator`` process: docs/performance.md, "Session 14").
    """

    __slots__ = _FIELDS
    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value: as a dataclass

    def __init__(
        self,
        agent_name: str,
        thread_id: str | None = None,
        pending: bool = False,
        question: str | None = None,
        context: str | None = None,
        asked_at: datetime | None = None,
        request_event_id: str | None = None,
        request_seq: int = 0,
        completed: bool = False,
        summary: str | None = None,
        validation_status: str | None = None,
        validation_done_criteria: str | None = None,
        last_signal_at: datetime | None = None,
        last_event_id: str | None = None,
    ) -> None:
        self.agent_name = agent_name
        self.thread_id = thread_id
        self.pending = pending
        self.question = question
        self.context = context
        self.asked_at = asked_at
        self.request_event_id = request_event_id
        self.request_seq = request_seq
        self.completed = completed
        self.summary = summary
        self.validation_status = validation_status
        self.validation_done_criteria = validation_done_criteria
        self.last_signal_at = last_signal_at
        self.last_event_id = last_event_id

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in _FIELDS)
        return f"AgentControl({shown})"


def control_in_epoch(
    epoch: int,
    name: str,
    thread_id: str | None,
    pending: bool,
    question: str | None,
    context: str | None,
    asked_at: datetime | None,
    request_event_id: str | None,
    request_seq: int,
    completion_epoch: int | None,
    summary: str | None,
    validation_epoch: int | None,
    validation_status: str | None,
    validation_criteria: str | None,
    last_signal_at: datetime | None,
    last_event_id: str | None,
) -> AgentControl:
    """The control state of agent ``name`` in the run's ``epoch``, from its stored state's
    fields (``ControlState``'s, but the last thread sequence): completion and validation count
    only when signalled in ``epoch``. Called positionally, once per agent of a snapshot (no
    ``ControlState`` made: a frozen dataclass costs several microseconds to make)."""
    completed = completion_epoch == epoch
    validated = validation_epoch == epoch
    return AgentControl(
        name,
        thread_id,
        pending,
        question,
        context,
        asked_at,
        request_event_id,
        request_seq,
        completed,
        summary if completed else None,
        validation_status if validated else None,
        validation_criteria if validated else None,
        last_signal_at,
        last_event_id,
    )  # positionally, in AgentControl's field order: keywords cost four times as much
