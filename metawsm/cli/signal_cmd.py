"""``metawsm forum signal``: post a control signal (the only way runs advance).

With ``--type guidance_request --wait`` the agent blocks until the answer arrives and prints it.
"""

from __future__ import annotations

from typing import Any

import click

from metawsm.cli.context import AppContext, emit_json, pass_app
from metawsm.cli.durations import Duration
from metawsm.cli.options import ACTOR_NAME_DEFAULT, actor_name, run_id_option, run_write
from metawsm.errors import UsageError
from metawsm.settings import env_default

TYPES = ["guidance_request", "guidance_answer", "completion", "validation"]
# The options of each --type: (option, required).
TYPE_FIELDS = {
    "guidance_request": (("question", True), ("context", False)),
    "guidance_answer": (("answer", True),),
    "completion": (("summary", False),),
    "validation": (("status", True), ("done_criteria", True)),
}
FIELDS = ("question", "context", "answer", "summary", "status", "done_criteria")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def build_signal(kw: dict[str, Any]) -> dict[str, Any]:
    """The control payload from CLI options, validated (schema version 1, strict).

    Raises:
        UsageError: an option of another --type, or a value that breaks its rule; the message
            names the option (``--question: is required (blank after trimming)``).
    """
    fields = dict(TYPE_FIELDS[kw["signal_type"]])
    data = {
        "schema_version": 1,
        "control_type": kw["signal_type"],
        "run_id": kw["run_id"] or "",
        "agent_name": kw["agent_name"] or "",
    }
    for name in fields:
        if kw.get(name) is not None:
            data[name] = kw[name]
    extra = [n for n in FIELDS if kw.get(n) is not None and n not in fields]
    if extra:
        flags = ", ".join(_flag(n) for n in extra)
        raise UsageError(f"{flags} not allowed with --type {kw['signal_type']}")
    missing = [_flag(n) for n, required in fields.items() if required and kw.get(n) is None]
    if missing:
        raise UsageError(f"--type {kw['signal_type']} needs {' and '.join(missing)}")
    from metawsm.messages import plain

    try:  # checked without pydantic when it can be (messages/plain.py)
        return {k: v for k, v in plain.control(data).items() if v is not None}
    except plain.Unchecked:
        pass
    # Loaded here: ``forum signal`` joins the forum group whenever a forum command runs.
    from pydantic import ValidationError

    from metawsm.messages.control import parse_control

    try:
        return parse_control(data).model_dump(mode="json", exclude_none=True)
    except ValidationError as exc:
        raise _named_by_option(exc) from None


def _named_by_option(exc: Any) -> UsageError:
    """A validation error of the signal with each field named as its option."""
    from metawsm.cli.context import usage_from_validation

    options = {name: _flag(name) for name in FIELDS}
    options.update(run_id="--run-id", agent_name="--agent-name")
    return usage_from_validation(exc, options=options)


@click.command("signal")
@run_id_option(required=True)
@click.option(
    "--agent-name",
    default=lambda: env_default("AGENT_NAME"),
    show_default="$METAWSM_AGENT_NAME",
    help="The agent the signal is about (required).",
)
@click.option("--ticket", default=None, help="Ticket (defaults to the run's first ticket).")
@click.option(
    "--type", "signal_type", type=click.Choice(TYPES), required=True, help="The kind of signal."
)
@click.option("--question", help="guidance_request: the question (required).")
@click.option("--context", help="guidance_request: what the answerer should know.")
@click.option("--answer", help="guidance_answer: the answer (required).")
@click.option("--summary", help="completion: what was done.")
@click.option(
    "--status",
    type=click.Choice(["passed", "failed"], case_sensitive=False),
    help="validation: the result (required).",
)
@click.option("--done-criteria", help="validation: the criteria checked (required).")
@click.option(
    "--actor-type",
    type=click.Choice(["agent", "operator", "human", "system"], case_sensitive=False),
    default=None,
    help="The role of who signals.  [default: operator for guidance_answer, else agent]",
)
@click.option("--actor-name", default=None, show_default=ACTOR_NAME_DEFAULT, help="Who signals.")
@click.option(
    "--wait/--no-wait",
    default=None,
    help="--wait on a guidance_request blocks until the answer; --no-wait returns once the"
    " signal is accepted.  [default: wait until applied]",
)
@click.option(
    "--timeout",
    type=Duration(),
    default="30m",
    show_default=True,
    help="How long --wait waits: 90, 90s, 30m or 2h.",
)
@click.option("--command-id", default=None, help="Idempotency key (a fresh one by default).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome (or the answer) as JSON.")
@pass_app
def signal(app: AppContext, /, **kw: Any) -> None:
    """Post a control signal for (run, agent) on its control thread.

    \b
    Which options go with which --type:
      guidance_request  --question (required), --context; --wait blocks until answered
      guidance_answer   --answer (required); the actor is an operator by default
      completion        --summary
      validation        --status passed|failed and --done-criteria (both required)

    --run-id and --agent-name default to METAWSM_RUN_ID and METAWSM_AGENT_NAME, so an agent
    needs neither.

    \b
    Exit codes: 0 applied (or answered); 1 rejected (an unknown run, a closed run, an agent
    not in the run); 2 invalid input; 3 unreachable; 4 no answer within --timeout; 5 the run
    stopped while waiting.

    \b
    Example:
      metawsm forum signal --type guidance_request --question "Which DB?" --wait --timeout 30m
    """
    if not kw["agent_name"]:
        raise click.UsageError("--agent-name is required (or set METAWSM_AGENT_NAME)")
    timeout_s = kw["timeout"]
    payload = {
        "run_id": kw["run_id"] or "",
        "agent_name": kw["agent_name"] or "",
        "ticket": kw["ticket"],
        "signal": build_signal(kw),
    }
    actor_type = kw["actor_type"] or (
        "operator" if kw["signal_type"] == "guidance_answer" else "agent"
    )
    wants_answer = kw["wait"] is True and kw["signal_type"] == "guidance_request"
    outcome = run_write(
        app,
        "control_signal",
        payload,
        actor_type=actor_type,
        actor_name=actor_name(actor_type, kw["actor_name"]),
        wait=None if kw["wait"] is False else "applied",
        timeout=min(timeout_s, app.settings.wait_timeout_s),
        as_json=kw["as_json"] and not wants_answer,
        command_id=kw["command_id"],
        quiet=wants_answer,
    )
    if wants_answer and outcome.status == "applied":
        answer = _wait_for_answer(app, outcome.command_id, timeout_s)
        if kw["as_json"]:
            emit_json(answer)
        else:
            click.echo(answer["answer"])


def _wait_for_answer(app: AppContext, command_id: str, timeout_s: float) -> dict[str, Any]:
    """The answer to the request ``command_id`` wrote (what --json prints): from the API
    when METAWSM_API_URL is set, else from the database."""
    remote = app.remote
    if remote is not None:
        from metawsm.cli.remote_writes import wait_for_answer_remote

        return wait_for_answer_remote(remote, command_id, timeout_s)
    from metawsm.services.guidance import wait_for_answer

    return wait_for_answer(app.container.engine, command_id, timeout_s).as_dict()
