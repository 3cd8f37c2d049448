"""Control signal payloads, schema version 1 (spec §4.1, without its quirks).

Exactly one control thread per (run_id, agent_name) carries these; they alone drive a run.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, TypeAdapter, ValidationError, field_validator

from metawsm.messages.common import Body, Frozen, Name, OptBody
from metawsm.messages.rules import ValidationStatus, lower

__all__ = [
    "CONTROL_MODELS",
    "AnyControl",
    "Completion",
    "ControlPayload",
    "ControlType",
    "GuidanceAnswer",
    "GuidanceRequest",
    "Validation",
    "ValidationStatus",
    "check_schema_version",
    "parse_control",
]

CONTROL_SCHEMA_VERSIONS = (1,)


class ControlType(StrEnum):
    """The four control signal types."""

    GUIDANCE_REQUEST = "guidance_request"
    GUIDANCE_ANSWER = "guidance_answer"
    COMPLETION = "completion"
    VALIDATION = "validation"


def check_schema_version(
    value: int, supported: tuple[int, ...], field: str = "schema_version"
) -> int:
    """Refuse a schema version we do not know, naming the ones we do.

    Raises:
        ValueError: ``<field> <value> is not supported (supported: <versions>)``.
    """
    if value not in supported:
        names = ", ".join(str(v) for v in supported)
        raise ValueError(f"{field} {value} is not supported (supported: {names})")
    return value


class _ControlBase(Frozen):
    schema_version: int = 1
    run_id: Name
    agent_name: Name

    @field_validator("schema_version")
    @classmethod
    def _version(cls, value: int) -> int:
        return check_schema_version(value, CONTROL_SCHEMA_VERSIONS)


class GuidanceRequest(_ControlBase):
    """An agent is blocked and asks a question; makes guidance pending."""

    control_type: Literal["guidance_request"] = "guidance_request"
    question: Body
    context: OptBody = None


class GuidanceAnswer(_ControlBase):
    """An operator or human answers the pending guidance request."""

    control_type: Literal["guidance_answer"] = "guidance_answer"
    answer: Body


class Completion(_ControlBase):
    """An agent reports its implementation complete."""

    control_type: Literal["completion"] = "completion"
    summary: OptBody = None


class Validation(_ControlBase):
    """An agent reports validation: status passed|failed against the brief's done criteria."""

    control_type: Literal["validation"] = "validation"
    status: Annotated[ValidationStatus, BeforeValidator(lower)]
    done_criteria: Body


ControlPayload = Annotated[
    GuidanceRequest | GuidanceAnswer | Completion | Validation,
    Field(discriminator="control_type"),
]

AnyControl = GuidanceRequest | GuidanceAnswer | Completion | Validation
CONTROL_MODELS: dict[str, type[AnyControl]] = {
    "guidance_request": GuidanceRequest,
    "guidance_answer": GuidanceAnswer,
    "completion": Completion,
    "validation": Validation,
}


@cache
def _union() -> TypeAdapter[AnyControl]:
    """The discriminated union of the control payloads, built on first use."""
    return TypeAdapter(ControlPayload)


def parse_control(data: Any) -> AnyControl:
    """Validate a control payload (dict) into its typed model.

    Only the model its ``control_type`` names is built; anything else, and any invalid payload,
    goes through the union, so errors name their locations as the union does
    (``completion.summary``).

    Raises:
        pydantic.ValidationError: naming the field and the rule it broke.
    """
    kind = data.get("control_type") if isinstance(data, dict) else None
    model = CONTROL_MODELS.get(kind) if isinstance(kind, str) else None
    if model is not None:
        try:
            return model.model_validate(data)
        except ValidationError:
            pass  # the union says it with the union's locations (the rare path)
    return _union().validate_python(data)
