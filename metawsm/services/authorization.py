"""Role rules that the acting identity alone decides, checked when a command is accepted.

Rules that need state (who asked a guidance request, which tickets an agent works on) are the
handlers' (:mod:`metawsm.services.handlers`), which see the command's actor: the actor is set
from the identity here (:func:`acting_as`), never taken from the request.

The rules (docs/identities.md): an agent may open threads and post, and send control signals
only for its own (run, agent); it may not answer guidance, assign, change state or priority, or
close threads. A run-bound identity acts only on its run. The limits of place (its own agent,
its runs) bind identities proven by a token; a local identity is only declared. Operators and
humans answer, triage and close; ``system`` is metawsm itself.

Every refusal is :class:`metawsm.errors.Forbidden` naming its rule; nothing is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from metawsm.errors import Forbidden
from metawsm.identity import Identity
from metawsm.messages.plain import PlainCommand, payload_value

if TYPE_CHECKING:
    from metawsm.messages.common import Actor
    from metawsm.services.accept import Acceptable

# What agents may not do at all, with the rule each breaks.
AGENT_MAY_NOT = {
    "answer_thread": ("agents_do_not_answer", "answer threads"),
    "assign_thread": ("agents_do_not_triage", "assign threads"),
    "change_state": ("agents_do_not_triage", "change a thread's state"),
    "set_priority": ("agents_do_not_triage", "change a thread's priority"),
    "close_thread": ("agents_do_not_close", "close threads"),
}


def acting_as(command: Acceptable, identity: Identity) -> Acceptable:
    """``command`` with its actor set from ``identity`` (validated again as a whole)."""
    if isinstance(command, PlainCommand):
        from metawsm.messages import plain

        try:
            return plain.with_actor(command, identity.actor_type, identity.actor_name)
        except plain.Unchecked:  # the models judge it, and say what is wrong
            from metawsm.messages.commands import parse_command

            command = parse_command(command.wire)
    if command.actor_type == identity.actor_type and command.actor_name == identity.actor_name:
        return command
    wire = command.model_dump(mode="json")
    wire.update(actor_type=identity.actor_type, actor_name=identity.actor_name)
    return type(command).model_validate(wire)


def authorize_command(identity: Identity, command: Acceptable) -> None:
    """Refuse what ``identity`` may not ask for, whatever the state.

    Raises:
        Forbidden: naming the rule broken.
    """
    kind = command.command_type
    if identity.actor_type == "agent" and kind in AGENT_MAY_NOT:
        rule, what = AGENT_MAY_NOT[kind]
        raise Forbidden(f"{identity.label} may not {what}: {_RULES[rule]}", rule=rule)
    if kind == "control_signal":
        authorize_signal(
            identity,
            payload_value(command, "run_id"),
            payload_value(command, "agent_name"),
            payload_value(command, "signal", "control_type"),
        )
    elif kind == "open_thread":
        run_id = payload_value(command, "run_id")
        agent_name = payload_value(command, "agent_name")
        check_run_bound(identity, run_id)
        if _for_itself_only(identity) and agent_name not in (None, identity.actor_name):
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
    if _for_itself_only(identity) and agent_name != identity.actor_name:
        raise Forbidden(
            f"{identity.label} may not signal for agent {agent_name}:"
            f" {_RULES['agents_act_for_themselves']}",
            rule="agents_act_for_themselves",
        )


def _for_itself_only(identity: Identity) -> bool:
    """A proven agent acts only for itself; a local agent identity is only declared (it could
    declare the other agent's name), so its name does not limit it."""
    return identity.actor_type == "agent" and identity.proven


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


# Run writes outside the command pipeline (services/runs.py, lifecycle.py, gates.py).
RUN_STEERING = ("operator", "human")
RUN_ACTIONS = {
    "create": "create runs",
    "close": "close runs",
    "stop": "stop runs",
    "resume": "resume runs",
    "iterate": "iterate runs",
}


def run_actor(who: Actor | Identity, action: str, run_id: str | None) -> Actor:
    """The actor to record for a run write ``action`` (create, close, stop, resume, iterate) on
    ``run_id``. An :class:`Identity` is checked first: only operators and humans (and
    ``system``) steer runs, a run-bound one only its run. An :class:`Actor` is an in-process
    caller's own (metawsm itself, tests): recorded as given.

    Raises:
        Forbidden: ``runs_are_steered_by_operators_and_humans`` or ``token_bound_to_run``.
    """
    from metawsm.messages.common import Actor

    if isinstance(who, Actor):
        return who
    require_role(who, RUN_STEERING, "runs_are_steered_by_operators_and_humans", RUN_ACTIONS[action])
    if run_id is not None:
        check_run_bound(who, run_id)
    elif who.run_id is not None:
        raise Forbidden(
            f"{who.label} is bound to run {who.run_id} and may not {RUN_ACTIONS[action]}",
            rule="token_bound_to_run",
        )
    return Actor(type=who.actor_type, name=who.actor_name)


def agent_status_actor(who: Actor | Identity, run_id: str, agent_name: str) -> Actor:
    """The actor to record for reporting ``agent_name``'s status in ``run_id``: an agent
    reports only its own (in its run, when bound); operators and humans anyone's.

    Raises:
        Forbidden: ``agents_act_for_themselves`` or ``token_bound_to_run``.
    """
    from metawsm.messages.common import Actor

    if isinstance(who, Actor):
        return who
    check_run_bound(who, run_id)
    if _for_itself_only(who) and agent_name != who.actor_name:
        raise Forbidden(
            f"{who.label} may not report the status of agent {agent_name}:"
            f" {_RULES['agents_act_for_themselves']}",
            rule="agents_act_for_themselves",
        )
    return Actor(type=who.actor_type, name=who.actor_name)


def require_dead_letter_manager(identity: Identity | None) -> None:
    """Only operators redrive and purge dead letters (None: metawsm's own in-process caller).

    Raises:
        Forbidden: ``dead_letters_are_for_operators``.
    """
    if identity is not None:
        require_role(
            identity, ("operator",), "dead_letters_are_for_operators", "redrive dead letters"
        )


_RULES = {
    "agents_do_not_answer": "operators and humans answer",
    "agents_do_not_triage": "operators and humans triage",
    "agents_do_not_close": "operators and humans close",
    "agents_act_for_themselves": "an agent acts only for itself",
}
