"""One agent's control state in its run's current epoch, as the snapshot, the gates and the SLA
rules read it: :class:`AgentControl`, and :func:`control_of` the stored state's columns.

Apart from the folds (``domain/control.py``, which re-exports both), so that a command line
read (``status``, ``watch``, ``operator``) imports neither ``ControlState`` nor
``SignalRecord``: each dataclass costs ~1 ms to make at import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class AgentControl:
    """The control state of one agent in one run (slotted: a snapshot makes one per agent)."""

    agent_name: str
    thread_id: str | None = None
    pending: bool = False
    question: str | None = None
    context: str | None = None
    asked_at: datetime | None = None
    request_event_id: str | None = None
    request_seq: int = 0
    completed: bool = False
    summary: str | None = None
    validation_status: str | None = None
    validation_done_criteria: str | None = None
    last_signal_at: datetime | None = None
    last_event_id: str | None = None


def control_of(values: Sequence[Any], epoch: int) -> AgentControl:
    """:func:`control_at` of the state whose fields are ``values``, in ``ControlState``'s
    order (as ``run_agent_controls`` stores them): a snapshot reads one per agent, and makes
    no ``ControlState`` (a frozen dataclass costs several microseconds to make)."""
    (name, thread_id, pending, question, context, asked_at, request_event_id, request_seq,
     completion_epoch, summary, validation_epoch, validation_status, validation_criteria,
     last_signal_at, last_event_id, _) = values  # fmt: skip
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
