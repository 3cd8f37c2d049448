"""Every message model by a stable name, for ``metawsm schema`` and the docs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, TypeAdapter

from metawsm.messages import commands, control, events

MESSAGES: dict[str, Any] = {
    "command": commands.Command,
    **{f"command.{name}": model for name, model in commands.COMMAND_MODELS.items()},
    "event": events.Event,
    **{f"event.{name}": model for name, model in events.EVENT_PAYLOADS.items()},
    "control": control.ControlPayload,
    "control.guidance_request": control.GuidanceRequest,
    "control.guidance_answer": control.GuidanceAnswer,
    "control.completion": control.Completion,
    "control.validation": control.Validation,
}


def json_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of the message called ``name`` (see :data:`MESSAGES`).

    Raises:
        KeyError: when no message has that name.
    """
    model = MESSAGES[name]
    if isinstance(model, type) and issubclass(model, BaseModel):
        return model.model_json_schema()
    return TypeAdapter(model).json_schema()
