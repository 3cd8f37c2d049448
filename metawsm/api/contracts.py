"""Request bodies and response shapes of the API, from the message contracts.

Each write body holds the fields of its command's payload with the same field types
(``messages/common.py``: the same limits, trimming and enums), so the OpenAPI document states
the rules the pipeline enforces; the thread id comes from the path and the actor from the
bearer token, never from the body. Bodies reject unknown fields, as every message does.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from metawsm.messages.commands import ControlSignalPayload
from metawsm.messages.common import (
    MAX_ID_CHARS,
    ActorType,
    ActorTypeField,
    Body,
    Name,
    OptBody,
    OptIdentifier,
    OptName,
    OptReason,
    Priority,
    PriorityField,
    ThreadStateField,
    Title,
)


class WriteBody(BaseModel):
    """Fields every write accepts besides its payload: correlation and causation ids."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    correlation_id: OptIdentifier = None
    causation_id: OptIdentifier = None

    def payload(self) -> dict[str, Any]:
        """The command payload fields of this body (JSON data)."""
        return self.model_dump(mode="json", exclude={"correlation_id", "causation_id"})


class OpenThreadBody(WriteBody):
    """Open a thread on a ticket (``thread_id`` generated when absent)."""

    thread_id: OptIdentifier = None
    ticket: Name
    run_id: OptName = None
    agent_name: OptName = None
    title: Title
    body: Body
    priority: PriorityField = Priority.NORMAL


class PostBody(WriteBody):
    """Add a post (``/posts``) or answer the thread (``/answer``)."""

    body: Body


class AssignBody(WriteBody):
    """Assign the thread (replacing the current assignee)."""

    assignee_type: ActorTypeField = ActorType.OPERATOR
    assignee_name: Name
    note: OptBody = None


class StateBody(WriteBody):
    """Move the thread to another state (subject to the transition table)."""

    to_state: ThreadStateField


class PriorityBody(WriteBody):
    """Set the thread's priority."""

    priority: PriorityField


class CloseBody(WriteBody):
    """Close the thread (closing a closed thread changes nothing)."""

    reason: OptReason = None


class SeenBody(BaseModel):
    """Move the caller's 'last seen' watermark on the thread forward (0: its latest event)."""

    model_config = ConfigDict(extra="forbid")

    sequence: int = Field(default=0, ge=0)


class CloseRunBody(BaseModel):
    """Close a run: ``dry_run`` checks the gates and changes nothing."""

    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False


class BriefBody(BaseModel):
    """The bootstrap brief of a new run (``run create --mode bootstrap``)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    goal: Body
    scope: Body
    done_criteria: Body
    constraints: Body
    merge_intent: Name = "default"


class CreateRunBody(BaseModel):
    """Create a run on ``tickets`` with ``agents`` (``mode`` bootstrap: one ticket and a brief)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    tickets: list[Name] = Field(min_length=1, max_length=100)
    agents: list[Name] = Field(min_length=1, max_length=100)
    mode: Literal["run", "bootstrap"] = "run"
    brief: BriefBody | None = None


class IterateBody(BaseModel):
    """Start a new control epoch; ``feedback`` is posted on every control thread."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    feedback: Body


class AgentStatusBody(BaseModel):
    """An agent's status in its run (a failed agent fails its running run)."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["running", "idle", "stalled", "failed"]


class PurgeBody(BaseModel):
    """Purge one dead letter (``message_id``) or, with ``all``, every one still dead."""

    model_config = ConfigDict(extra="forbid")

    message_id: str | None = Field(default=None, min_length=1, max_length=2 * MAX_ID_CHARS)
    all: bool = False


class SignalBody(ControlSignalPayload):
    """A control signal for (run, agent): the control payload of ``metawsm forum signal``."""

    correlation_id: OptIdentifier = None
    causation_id: OptIdentifier = None

    def payload(self) -> dict[str, Any]:
        """The command payload fields of this body (JSON data)."""
        return self.model_dump(
            mode="json", exclude={"correlation_id", "causation_id"}, exclude_none=True
        )


class OutcomeOut(BaseModel):
    """Where a command stands (what ``--json`` prints for a write)."""

    command_id: str
    command_type: str
    status: str = Field(description="accepted, applied, rejected or dead")
    reason: str | None
    thread_id: str | None
    delivery_attempts: int
    published: bool
    publish_error: str | None
