"""Forum commands: an envelope (the idempotency key and who asks) plus one payload per type.

A command is imperative: it asks for a change that its handler may still reject.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, TypeAdapter, ValidationError, field_validator, model_validator

from metawsm.messages.common import (
    ActorTypeField,
    Body,
    Frozen,
    Identifier,
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
from metawsm.messages.control import ControlPayload, check_schema_version

COMMAND_SCHEMA_VERSIONS = (1,)

CommandType = Literal[
    "open_thread",
    "add_post",
    "answer_thread",
    "assign_thread",
    "change_state",
    "set_priority",
    "close_thread",
    "control_signal",
]
COMMAND_TYPES: tuple[str, ...] = get_args(CommandType)


class OpenThreadPayload(Frozen):
    """Open a thread on a ticket with a title and a first post."""

    thread_id: Identifier
    ticket: Name
    run_id: OptName = None
    agent_name: OptName = None
    title: Title
    body: Body
    priority: PriorityField = Priority.NORMAL


class AddPostPayload(Frozen):
    """Add a post to an open thread."""

    thread_id: Identifier
    body: Body


class AnswerThreadPayload(Frozen):
    """Add a post that answers the thread and marks it answered."""

    thread_id: Identifier
    body: Body


class AssignThreadPayload(Frozen):
    """Assign an open thread to one assignee (replacing the current one)."""

    thread_id: Identifier
    assignee_type: ActorTypeField
    assignee_name: Name
    note: OptBody = None


class ChangeStatePayload(Frozen):
    """Move a thread to another state, subject to the transition table."""

    thread_id: Identifier
    to_state: ThreadStateField


class SetPriorityPayload(Frozen):
    """Change the priority of an open thread."""

    thread_id: Identifier
    priority: PriorityField


class CloseThreadPayload(Frozen):
    """Close a thread (closing a closed thread is an idempotent no-op)."""

    thread_id: Identifier
    reason: OptReason = None


class ControlSignalPayload(Frozen):
    """Post a control signal on the control thread of (run_id, agent_name)."""

    run_id: Name
    agent_name: Name
    ticket: OptName = None
    signal: ControlPayload

    @model_validator(mode="after")
    def _signal_matches(self) -> ControlSignalPayload:
        # The control thread is chosen by (run_id, agent_name): a signal naming another agent
        # would land on the wrong thread and drive the wrong run.
        for field in ("run_id", "agent_name"):
            outer, inner = getattr(self, field), getattr(self.signal, field)
            if outer != inner:
                raise ValueError(
                    f"signal {field} {inner!r} does not match payload {field} {outer!r}"
                )
        return self


class _Envelope(Frozen):
    command_id: Identifier
    schema_version: int = 1
    issued_at: datetime
    actor_type: ActorTypeField
    actor_name: Name
    correlation_id: OptIdentifier = None
    causation_id: OptIdentifier = None

    @field_validator("schema_version")
    @classmethod
    def _version(cls, value: int) -> int:
        return check_schema_version(value, COMMAND_SCHEMA_VERSIONS)


class OpenThread(_Envelope):
    """Command: open a thread."""

    command_type: Literal["open_thread"] = "open_thread"
    payload: OpenThreadPayload


class AddPost(_Envelope):
    """Command: add a post."""

    command_type: Literal["add_post"] = "add_post"
    payload: AddPostPayload


class AnswerThread(_Envelope):
    """Command: answer a thread."""

    command_type: Literal["answer_thread"] = "answer_thread"
    payload: AnswerThreadPayload


class AssignThread(_Envelope):
    """Command: assign a thread."""

    command_type: Literal["assign_thread"] = "assign_thread"
    payload: AssignThreadPayload


class ChangeState(_Envelope):
    """Command: change a thread's state."""

    command_type: Literal["change_state"] = "change_state"
    payload: ChangeStatePayload


class SetPriority(_Envelope):
    """Command: set a thread's priority."""

    command_type: Literal["set_priority"] = "set_priority"
    payload: SetPriorityPayload


class CloseThread(_Envelope):
    """Command: close a thread."""

    command_type: Literal["close_thread"] = "close_thread"
    payload: CloseThreadPayload


class ControlSignal(_Envelope):
    """Command: post a control signal for a run's agent."""

    command_type: Literal["control_signal"] = "control_signal"
    payload: ControlSignalPayload


Command = Annotated[
    OpenThread
    | AddPost
    | AnswerThread
    | AssignThread
    | ChangeState
    | SetPriority
    | CloseThread
    | ControlSignal,
    Field(discriminator="command_type"),
]
AnyCommand = (
    OpenThread
    | AddPost
    | AnswerThread
    | AssignThread
    | ChangeState
    | SetPriority
    | CloseThread
    | ControlSignal
)
COMMAND_MODELS: dict[str, type[_Envelope]] = {
    "open_thread": OpenThread,
    "add_post": AddPost,
    "answer_thread": AnswerThread,
    "assign_thread": AssignThread,
    "change_state": ChangeState,
    "set_priority": SetPriority,
    "close_thread": CloseThread,
    "control_signal": ControlSignal,
}


@cache
def _union() -> TypeAdapter[AnyCommand]:
    """The discriminated union of every command, built on first use (it builds every model)."""
    return TypeAdapter(Command)


def parse_command(data: Any) -> AnyCommand:
    """Validate a wire command (dict) into its typed model.

    Only the model its ``command_type`` names is built (the models build on first use:
    ``messages/common.py``); anything else, and any invalid command, goes through the union,
    so errors name their locations as the union does (``open_thread.payload.title``).

    Raises:
        pydantic.ValidationError: naming the field and the rule it broke.
    """
    kind = data.get("command_type") if isinstance(data, dict) else None
    model = COMMAND_MODELS.get(kind) if isinstance(kind, str) else None
    if model is not None:
        try:
            return model.model_validate(data)  # type: ignore[return-value]
        except ValidationError:
            pass  # the union says it with the union's locations (the rare path)
    return _union().validate_python(data)


def command_thread_id(command: AnyCommand) -> str | None:
    """The thread a command acts on, when it names one (control signals resolve theirs later)."""
    return getattr(command.payload, "thread_id", None)
