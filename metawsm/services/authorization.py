"""Role rules that the acting identity alone decides, checked when a command is accepted.

Rules that need state (who asked a guidance request, which tickets an agent works on) are the
handlers' (:mod:`metawsm.services.handlers`), which see the command's actor: the actor is set
from the identity here (:func:`acting_as`), never taken from the request.

The rules (docs/identities.md): an agent may open threads and post, and send control signals
only for its own (run, agent); it may not answer guidance, assign, change state or priority, or
close threads. A run-bound identity acts only on its run. Operators and humans answer, triage
and close; ``system`` is metawsm itself.

Every refusal is :class:`metawsm.errors.Forbidden` naming its rule; nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metawsm.errors import Forbidden
from metawsm.identity import Identity

if TYPE_CHECKING:
    from metawsm.messages.commands import AnyCommand

# What agents may not do at all, with the rule each breaks.
AGENT_MAY_NOT = {
    "answer_thread": ("agents_do_not_answer", "answer threads"),
    "assign_thread": ("agents_do_not_triage", "assign threads"),
    "change_state": ("agents_do_not_triage", "change a thread's state"),
    "set_priority": ("agents_do_not_triage", "change a thread's priority"),
    "close_thread": ("agents_do_not_close", "close threads"),
}


def acting_as(command: AnyCommand, identity: Identity) -> AnyCommand:
    """``command`` with its actor set from ``identity`` (validated again as a whole)."""
    if command.actor_type == identity.actor_type and command.actor_name == identity.actor_name:
        return command
    wire = command.model_dump(mode="json")
    wire.update(actor_type=identity.actor_type, actor_name=identity.actor_name)
    return type(command).model_validate(wire)


def authorize_command(identity: Identity, command: AnyCommand) -> None:
    """Refuse what ``identity`` may not ask for, whatever the state.

    Raises:
        Forbidden: naming the rule broken.
    """
    kind = command.command_type
    if identity.actor_type == "agent" and kind in AGENT_MAY_NOT:
        rule, what = AGENT_MAY_NOT[kind]
        raise Forbidden(f"{identity.label} may not {what}: {_RULES[rule]}", rule=rule)
    payload = command.payload
    if kind == "control_signal":
        from metawsm.messages.commands import ControlSignal

        assert isinstance(command, ControlSignal)
        authorize_signal(
            identity,
            command.payload.run_id,
            command.payload.agent_name,
            command.payload.signal.control_type,
        )
    elif kind == "open_thread":
        run_id = getattr(payload, "run_id", None)
        agent_name = getattr(payload, "agent_name", None)
        check_run_bound(identity, run_id)
        if identity.actor_type == "agent" and agent_name not in (None, identity.actor_name):
            raise Forbidden(
                f"{identity.label} may not open a thread for agent {agent_name}:"
                f" {_RULES['agents_act_for_themselves']}",
                rule="agents_act_for_themselves",
            )


def authorize_signal(identity: Identity, run_id: str, agent_name: str, control_type: str) -> None:
    """A control signal of ``control_type`` for (``run_id``, ``agent_name``).

    Raises:
        Forbidden: an agent answering guidance or signalling for another (run, agent); a
            run-bound identity signalling for another run.
    """
    check_run_bound(identity, run_id)
    if identity.actor_type != "agent":
        return
    if control_type == "guidance_answer":
        raise Forbidden(
            f"{identity.label} may not answer guidance: {_RULES['agents_do_not_answer']}",
            rule="agents_do_not_answer",
        )
    if agent_name != identity.actor_name:
        raise Forbidden(
            f"{identity.label} may not signal for agent {agent_name}:"
            f" {_RULES['agents_act_for_themselves']}",
            rule="agents_act_for_themselves",
        )


def check_run_bound(identity: Identity, run_id: str | None) -> None:
    """A run-bound identity acts only on its run (``run_id`` None: not on a run, refused too).

    Raises:
        Forbidden: ``token_bound_to_run``.
    """
    if identity.run_id is None or run_id == identity.run_id:
        return
    where = f"run {run_id}" if run_id else "no run (give the run id)"
    raise Forbidden(
        f"{identity.label} is bound to run {identity.run_id} and may not act on {where}",
        rule="token_bound_to_run",
    )


def require_role(identity: Identity, roles: tuple[str, ...], rule: str, what: str) -> None:
    """Refuse ``what`` unless ``identity`` has one of ``roles`` (``system`` always may).

    Raises:
        Forbidden: naming ``rule``.
    """
    if identity.actor_type in roles or identity.actor_type == "system":
        return
    raise Forbidden(
        f"{identity.label} may not {what}: only {' and '.join(r + 's' for r in roles)} may",
        rule=rule,
    )


_RULES = {
    "agents_do_not_answer": "operators and humans answer",
    "agents_do_not_triage": "operators and humans triage",
    "agents_do_not_close": "operators and humans close",
    "agents_act_for_themselves": "an agent acts only for itself",
}
