"""Forum events: facts in the past tense, appended to ``forum_events`` and relayed to projectors.

Each event has an envelope (ids, sequences, scope, actor, causality) and one typed payload.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import Field, TypeAdapter, field_validator

from metawsm.messages.common import (
    Actor,
    ActorTypeField,
    Body,
    Frozen,
    Identifier,
    Name,
    OptActorTypeField,
    OptBody,
    OptIdentifier,
    OptName,
    OptReason,
    PriorityField,
    Reason,
    ThreadStateField,
    Title,
)
from metawsm.messages.control import ControlPayload, check_schema_version

EVENT_VERSIONS = (1,)


class ThreadOpenedPayload(Frozen):
    """A thread was opened with its first post."""

    title: Title
    body: Body
    priority: PriorityField
    post_id: Identifier


class PostAddedPayload(Frozen):
    """A post was added; ``answer`` marks a post that answered the thread."""

    post_id: Identifier
    body: Body
    answer: bool = False


class ControlSignalPostedPayload(Frozen):
    """A control signal was posted on a control thread, in the run's current control epoch."""

    post_id: Identifier
    epoch: int = Field(default=1, ge=1)
    signal: ControlPayload


class AssignedPayload(Frozen):
    """The thread's assignee changed."""

    from_assignee_type: OptActorTypeField = None
    from_assignee_name: OptName = None
    to_assignee_type: ActorTypeField
    to_assignee_name: Name
    note: OptBody = None


class StateChangedPayload(Frozen):
    """The thread's state changed."""

    from_state: ThreadStateField
    to_state: ThreadStateField


class PriorityChangedPayload(Frozen):
    """The thread's priority changed."""

    from_priority: PriorityField
    to_priority: PriorityField


class ThreadClosedPayload(Frozen):
    """The thread was closed."""

    from_state: ThreadStateField
    reason: OptReason = None


class EscalationRequestedPayload(Frozen):
    """A thread or pending guidance passed its SLA: escalate to the given tier."""

    tier: Name
    reason: Reason
    threshold_minutes: int = Field(ge=0)
    waiting_since: datetime


class RunStatusChangedPayload(Frozen):
    """A run moved from one status to another; ``cause_event_id`` is the event that moved it."""

    from_status: Name
    to_status: Name
    reason: Reason
    cause_event_id: OptIdentifier = None


class OperatorDecisionPayload(Frozen):
    """The operator decided something about a run (recorded when the decision changes)."""

    intent: Name
    reason: Reason
    mode: Name
    command: OptBody = None
    executed: bool = False
    fingerprint: Identifier


EVENT_PAYLOADS: dict[str, type[Frozen]] = {
    "forum.thread.opened": ThreadOpenedPayload,
    "forum.post.added": PostAddedPayload,
    "forum.control.signal": ControlSignalPostedPayload,
    "forum.assigned": AssignedPayload,
    "forum.state.changed": StateChangedPayload,
    "forum.priority.changed": PriorityChangedPayload,
    "forum.thread.closed": ThreadClosedPayload,
    "forum.sla.escalation_requested": EscalationRequestedPayload,
    "run.status.changed": RunStatusChangedPayload,
    "operator.decision": OperatorDecisionPayload,
}
EventType = Literal[
    "forum.thread.opened",
    "forum.post.added",
    "forum.control.signal",
    "forum.assigned",
    "forum.state.changed",
    "forum.priority.changed",
    "forum.thread.closed",
    "forum.sla.escalation_requested",
    "run.status.changed",
    "operator.decision",
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


class Event(Frozen):
    """An event as stored and relayed: envelope fields plus the typed ``payload``."""

    event_id: Identifier
    event_type: EventType
    event_version: int = 1
    occurred_at: datetime
    sequence: int | None = Field(default=None, ge=1)
    thread_id: OptIdentifier = None
    thread_seq: int | None = Field(default=None, ge=1)
    run_id: OptName = None
    ticket: OptName = None
    agent_name: OptName = None
    actor: Actor
    correlation_id: OptIdentifier = None
    causation_id: OptIdentifier = None
    payload: dict[str, Any]

    @field_validator("event_version")
    @classmethod
    def _version(cls, value: int) -> int:
        return check_schema_version(value, EVENT_VERSIONS, "event_version")

    @field_validator("payload")
    @classmethod
    def _payload_shape(cls, value: dict[str, Any], info: Any) -> dict[str, Any]:
        # Keep the normalised payload (trimmed, lower-cased enums, defaults filled in), so what is
        # stored and relayed is exactly what the payload model accepted.
        event_type = info.data.get("event_type")
        model = EVENT_PAYLOADS.get(event_type) if event_type else None
        if model is not None:
            return model.model_validate(value).model_dump(mode="json")
        return value

    @property
    def actor_type(self) -> str:
        """The actor's type as text (what the folds read: domain/views.py)."""
        return self.actor.type.value

    @property
    def actor_name(self) -> str:
        """The actor's name."""
        return self.actor.name

    def typed_payload(self) -> Frozen:
        """The payload validated into its model for this event type."""
        return EVENT_PAYLOADS[self.event_type].model_validate(self.payload)


EventAdapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: Any) -> Event:
    """Validate a wire event (dict) into an :class:`Event`.

    Raises:
        pydantic.ValidationError: naming the field and the rule it broke.
    """
    return Event.model_validate(data)


def event_topic_suffix(event_type: str) -> str:
    """Topic suffix of an event type: lower-cased, without a leading ``forum.``."""
    lowered = event_type.lower()
    return lowered.removeprefix("forum.")
