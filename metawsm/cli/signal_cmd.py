"""``metawsm forum signal``: post a control signal (the only way runs advance).

With ``--type guidance_request --wait`` the agent blocks until the answer arrives and prints it.
Exit codes: 0 answered (or applied), 1 rejected, 2 invalid input, 3 unreachable, 4 timed out,
5 the run stopped while waiting.
"""

from __future__ import annotations

import re
from typing import Any

import click

from metawsm.cli.context import AppContext, emit_json, pass_app, usage_from_validation
from metawsm.cli.options import default_actor_name, run_write
from metawsm.errors import UsageError
from metawsm.settings import env_default

TYPES = ["guidance_request", "guidance_answer", "completion", "validation"]
DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``90``, ``90s``, ``30m`` or ``2h``.

    Raises:
        UsageError: for anything else.
    """
    match = DURATION.match(text)
    if not match:
        raise UsageError(f"--timeout: {text!r} is not a duration like 90s, 30m or 2h")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"s": 1, "m": 60, "h": 3600}[unit]


def build_signal(kw: dict[str, Any]) -> dict[str, Any]:
    """The control payload from CLI options, validated (schema version 1, strict)."""
    data = {
        "schema_version": 1,
        "control_type": kw["signal_type"],
        "run_id": kw["run_id"] or "",
        "agent_name": kw["agent_name"] or "",
    }
    fields = {
        "guidance_request": ("question", "context"),
        "guidance_answer": ("answer",),
        "completion": ("summary",),
        "validation": ("status", "done_criteria"),
    }[kw["signal_type"]]
    for name in fields:
        if kw.get(name) is not None:
            data[name] = kw[name]
    extra = [
        n
        for n in ("question", "context", "answer", "summary", "status", "done_criteria")
        if kw.get(n) is not None and n not in fields
    ]
    if extra:
        flags = ", ".join("--" + n.replace("_", "-") for n in extra)
        raise UsageError(f"{flags} not allowed with --type {kw['signal_type']}")
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
        raise usage_from_validation(exc, "signal.") from None


@click.command("signal")
@click.option("--run-id", default=lambda: env_default("RUN_ID"), help="Run ($METAWSM_RUN_ID).")
@click.option(
    "--agent-name", default=lambda: env_default("AGENT_NAME"), help="Agent ($METAWSM_AGENT_NAME)."
)
@click.option("--ticket", default=None, help="Ticket (defaults to the run's first ticket).")
@click.option("--type", "signal_type", type=click.Choice(TYPES), required=True)
@click.option("--question")
@click.option("--context")
@click.option("--answer")
@click.option("--summary")
@click.option("--status", type=click.Choice(["passed", "failed"], case_sensitive=False))
@click.option("--done-criteria")
@click.option(
    "--actor-type",
    type=click.Choice(["agent", "operator", "human", "system"], case_sensitive=False),
    default=None,
    help="Default: operator for guidance_answer, agent otherwise.",
)
@click.option("--actor-name", default=default_actor_name)
@click.option(
    "--wait/--no-wait",
    default=None,
    help="--wait on a guidance_request blocks until the answer; --no-wait returns at once.",
)
@click.option("--timeout", default="30m", show_default=True, help="How long --wait waits.")
@click.option("--command-id", default=None, help="Idempotency key (a fresh one by default).")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def signal(app: AppContext, /, **kw: Any) -> None:
    """Post a control signal for (run, agent) on its control thread."""
    timeout_s = parse_duration(kw["timeout"])
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
        actor_name=kw["actor_name"],
        wait=None if kw["wait"] is False else "applied",
        timeout=min(timeout_s, app.settings.wait_timeout_s),
        as_json=kw["as_json"] and not wants_answer,
        command_id=kw["command_id"],
        quiet=wants_answer,
    )
    if wants_answer and outcome.status == "applied":
        from metawsm.services.guidance import wait_for_answer

        answer = wait_for_answer(app.container.engine, outcome.command_id, timeout_s)
        if kw["as_json"]:
            emit_json(answer.as_dict())
        else:
            click.echo(answer.answer)
