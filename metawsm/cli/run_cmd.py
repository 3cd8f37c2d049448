"""Runs: ``metawsm run create|list|show|stop|resume|why|iterate|agent-status`` and ``metawsm
close`` (``metawsm bootstrap``: the old name of ``run create --mode bootstrap``).

Every command that takes a run takes it as ``--run-id`` (default METAWSM_RUN_ID); the run as an
argument still works for one release, with a deprecation note.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from metawsm.cli.aliases import deprecation_note
from metawsm.cli.context import AppContext, emit_json, pass_app
from metawsm.cli.options import ACTOR_NAME_DEFAULT, run_id_option, run_write
from metawsm.errors import EXIT_FAILED, Forbidden, Rejected
from metawsm.settings import env_default

if TYPE_CHECKING:  # the write path and the gates load when a command uses them: reads do not
    from metawsm.identity import Identity


def _actor(app: AppContext, kw: dict[str, Any]) -> Identity:
    """Who acts: the METAWSM_TOKEN holder, or the local identity of the actor flags."""
    from metawsm.cli.acting import acting_identity

    return acting_identity(app, kw.get("actor_type"), kw.get("actor_name"))


def _actor_opts(fn: Any) -> Any:
    fn = click.option(
        "--actor-name", default=None, show_default=ACTOR_NAME_DEFAULT, help="Who acts."
    )(fn)
    return click.option(
        "--actor-type",
        type=click.Choice(["operator", "human", "system", "agent"]),
        default="operator",
        show_default=True,
        help="The role of who acts.",
    )(fn)


@click.group("run")
def run() -> None:
    """Runs of agents on tickets.

    A run puts agents to work on tickets; its status moves only for a recorded cause (the
    agents' control signals, the operator commands here). Every command that takes a run takes
    it as --run-id, METAWSM_RUN_ID by default.

    \b
    Example:
      metawsm run create --ticket TCK-1 --agent alice --json
    """


@run.command("create")
@click.option("--ticket", "tickets", multiple=True, required=True, help="Repeat for more.")
@click.option("--agent", "agents", multiple=True, required=True, help="Repeat for more.")
@click.option(
    "--mode",
    type=click.Choice(["run", "bootstrap"]),
    default="run",
    show_default=True,
    help="bootstrap: one ticket and a brief whose done criteria validations must match.",
)
@click.option("--goal", help="bootstrap: what the run is for.")
@click.option("--scope", help="bootstrap: what is in and out of scope.")
@click.option("--done-criteria", help="bootstrap: what validations must report to close.")
@click.option("--constraints", help="bootstrap: what the agents must respect.")
@click.option("--merge-intent", default="default", show_default=True, help="bootstrap only.")
@click.option(
    "--idempotency-key",
    metavar="KEY",
    help="The same key, request and actor again show the run it created instead of a new one.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@_actor_opts
@pass_app
def create(app: AppContext, /, **kw: Any) -> None:
    """Create a run; --mode bootstrap also needs the brief (asked for on a terminal).

    A new run goes created, planning, running at once. With --mode bootstrap, --goal, --scope,
    --done-criteria and --constraints are required: on a terminal each missing one is asked
    for; otherwise a missing one is exit 2 and nothing is created.

    \b
    Example:
      metawsm run create --mode bootstrap --ticket TCK-1 --agent alice --goal "ship it" \\
        --scope "the CLI" --done-criteria "all tests pass" --constraints "none"
    """
    brief = _brief(kw) if kw["mode"] == "bootstrap" else None
    _create(app, kw, brief)


@click.command("bootstrap", hidden=True)
@click.option("--ticket", required=True)
@click.option("--agent", "agents", multiple=True, required=True, help="Repeat for more.")
@click.option("--goal")
@click.option("--scope")
@click.option("--done-criteria")
@click.option("--constraints")
@click.option("--merge-intent", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_actor_opts
@pass_app
def bootstrap(app: AppContext, /, **kw: Any) -> None:
    """Deprecated: use metawsm run create --mode bootstrap.

    \b
    Example:
      metawsm run create --mode bootstrap --ticket TCK-1 --agent alice
    """
    click.echo(
        deprecation_note("metawsm bootstrap", "metawsm run create --mode bootstrap"), err=True
    )
    kw["tickets"], kw["mode"] = (kw["ticket"],), "bootstrap"
    _create(app, kw, _brief(kw))


BRIEF_FIELDS = ("goal", "scope", "done_criteria", "constraints")


def _brief(kw: dict[str, Any]) -> dict[str, str]:
    """The brief's fields (``BriefInput``'s), each asked for on a terminal when missing."""
    values: dict[str, str] = {}
    interactive = sys.stdin.isatty()
    for name in BRIEF_FIELDS:
        value = (kw.get(name) or "").strip()
        while not value and interactive:
            value = click.prompt(name.replace("_", " ").capitalize(), default="").strip()
        if not value:
            raise click.UsageError(
                f"--{name.replace('_', '-')} is required (stdin is not a terminal)"
            )
        values[name] = value
    return {**values, "merge_intent": kw.get("merge_intent") or "default"}


def _create(app: AppContext, kw: dict[str, Any], brief: dict[str, str] | None) -> None:
    if app.remote is not None:
        _render_run(_create_remote(app, kw, brief), kw["as_json"])
        return
    from metawsm.services import runs

    asked: dict[str, Any] = {"tickets": list(kw["tickets"]), "agents": list(kw["agents"])}
    asked["brief"] = runs.BriefInput(**brief) if brief is not None else None
    asked |= {"mode": kw["mode"], "actor": _actor(app, kw)}
    key = kw.get("idempotency_key")
    if key is None:
        run_id = runs.create_run(app.container.runtime, **asked)
    else:
        run_id = runs.create_run_once(app.container.runtime, _key(key), **asked).run_id
    _show_one(app, run_id, kw["as_json"])


def _key(key: str) -> str:
    from metawsm.messages.common import MAX_ID_CHARS

    if not 1 <= len(key) <= MAX_ID_CHARS:
        raise click.BadParameter(
            f"must be 1 to {MAX_ID_CHARS} characters", param_hint="--idempotency-key"
        )
    return key


@run.command("list")
@click.option("--json", "as_json", is_flag=True, help='Print {"runs": [...]}.')
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """List runs, newest first.

    \b
    Example:
      metawsm run list --json
    """
    remote = app.remote
    if remote is not None:
        rows = remote.get("/runs")["runs"]
    else:
        from metawsm.services import record_reads

        with app.reading() as db:
            rows = record_reads.run_rows(db)
    if as_json:
        emit_json({"runs": rows})
        return
    for r in rows:
        agents = ",".join(a["agent_name"] for a in r["agents"])
        click.echo(
            f"{r['run_id']} {r['status']} mode={r['mode']} tickets={','.join(r['tickets'])}"
            f" agents={agents}"
        )
    if not rows:
        click.echo("no runs (create one with metawsm run create)", err=True)


@run.command("show")
@run_id_option(required=True, positional=True)
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@pass_app
def show(app: AppContext, run_id: str, as_json: bool) -> None:
    """Show a run with its agents, brief and status history.

    \b
    Example:
      metawsm run show --run-id run-20261128-k3f9x
    """
    _show_one(app, run_id, as_json)


def _create_remote(app: AppContext, kw: dict[str, Any], brief: dict[str, str] | None) -> Any:
    """Create over the API (operators and humans: an agent's token is refused, 403)."""
    _check_remote_actor(app, kw)
    assert app.remote is not None
    body = {"tickets": list(kw["tickets"]), "agents": list(kw["agents"]), "mode": kw["mode"]}
    if brief is not None:
        body["brief"] = brief
    key = kw.get("idempotency_key")
    headers = {"Idempotency-Key": _key(key)} if key is not None else None
    return app.remote.post("/runs", body, headers=headers)[1]


def _check_remote_actor(app: AppContext, kw: dict[str, Any]) -> None:
    from metawsm.cli.acting import check_remote_actor

    check_remote_actor(app, kw.get("actor_type"), kw.get("actor_name"))


def _show_one(app: AppContext, run_id: str, as_json: bool) -> None:
    if app.remote is not None:
        from metawsm.cli.remote import segment

        _render_run(app.remote.get(f"/runs/{segment(run_id)}/record"), as_json)
        return
    from metawsm.services import record_reads

    with app.reading() as db:
        row = record_reads.run_rows(db, run_id)[0]
        row["history"] = record_reads.run_history(db, run_id)
    _render_run(row, as_json)


def _render_run(row: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(row)
        return
    click.echo(
        f"run={row['run_id']} status={row['status']} mode={row['mode']}"
        f" tickets={','.join(row['tickets'])} epoch={row['control_epoch']}"
    )
    brief = row.get("brief")
    if brief:
        click.echo("brief:")
        for name in ("goal", "scope", "done_criteria", "constraints", "merge_intent"):
            click.echo(f"  {name}: {brief.get(name)}")
    click.echo("agents:")
    for a in row["agents"]:
        click.echo(
            f"  agent={a['agent_name']} status={a['status']} last_signal={a['last_signal_at']}"
        )
    click.echo("history:")
    for h in row["history"]:
        click.echo(f"  {h['at']} {h['from_status']} -> {h['to_status']}: {h['reason']}")


@run.command("stop")
@run_id_option(required=True, positional=True)
@_actor_opts
@pass_app
def stop(app: AppContext, /, run_id: str, **kw: Any) -> None:
    """Stop a run: stopping, then stopped; agents blocked in --wait exit 5.

    \b
    Example:
      metawsm run stop --run-id run-20261128-k3f9x
    """
    if app.remote is not None:
        _check_remote_actor(app, kw)
        status = _steer_remote(app, run_id, "stop")
    else:
        from metawsm.services import lifecycle

        status = lifecycle.stop_run(app.container.runtime, run_id, _actor(app, kw))
    click.echo(f"run {run_id} {status}")


@run.command("resume")
@run_id_option(required=True, positional=True)
@_actor_opts
@pass_app
def resume(app: AppContext, /, run_id: str, **kw: Any) -> None:
    """Resume a stopped, paused or failed run.

    The run goes to running, then at once to where its agents' signals point.

    \b
    Example:
      metawsm run resume --run-id run-20261128-k3f9x
    """
    if app.remote is not None:
        _check_remote_actor(app, kw)
        status = _steer_remote(app, run_id, "resume")
    else:
        from metawsm.services import lifecycle

        status = lifecycle.resume_run(app.container.runtime, run_id, _actor(app, kw))
    click.echo(f"run {run_id} {status}")


@run.command("agent-status")
@run_id_option(required=True, positional=True)
@click.option(
    "--agent-name",
    default=lambda: env_default("AGENT_NAME"),
    show_default="$METAWSM_AGENT_NAME",
    help="The agent whose status this is (required).",
)
@click.option(
    "--status", type=click.Choice(["running", "idle", "stalled", "failed"]), required=True
)
@_actor_opts
@pass_app
def agent_status(
    app: AppContext, /, run_id: str, agent_name: str | None, status: str, **kw: Any
) -> None:
    """Report an agent's status; a failed agent fails its running run.

    \b
    Example:
      metawsm run agent-status --run-id run-20261128-k3f9x --agent-name alice --status running
    """
    if not agent_name:
        raise click.UsageError("--agent-name is required (or set METAWSM_AGENT_NAME)")
    if app.remote is not None:  # the agent itself, operators and humans: else 403
        from metawsm.cli.remote import segment

        _check_remote_actor(app, kw)
        path = f"/runs/{segment(run_id)}/agents/{segment(agent_name)}/status"
        run_status = str(app.remote.post(path, {"status": status})[1]["run_status"])
    else:
        from metawsm.services import lifecycle

        run_status = lifecycle.set_agent_status(
            app.container.runtime, run_id, agent_name, status, _actor(app, kw)
        )
    click.echo(f"agent {agent_name} {status}; run {run_id} {run_status}")


@run.command("why")
@run_id_option(required=True, positional=True)
@click.option("--json", "as_json", is_flag=True, help="Print the run and its unmet gates.")
@pass_app
def why(app: AppContext, run_id: str, as_json: bool) -> None:
    """List every close gate that is not met, each with the command that would meet it.

    A read: it exits 0 whatever it finds.

    \b
    Example:
      metawsm run why --run-id run-20261128-k3f9x
    """
    remote = app.remote
    if remote is not None:
        from metawsm.cli.remote import segment

        found = remote.get(f"/runs/{segment(run_id)}/why")
    else:
        from metawsm.services import gates

        summary, unmet = gates.unmet(app.container.engine, run_id)
        found = {**summary, "unmet": [g.as_dict() for g in unmet]}
    if as_json:
        emit_json(found)
        return
    if not found["unmet"]:
        click.echo(f"run {run_id} ({found['status']}): every close gate is met")
        return
    click.echo(f"run {run_id} ({found['status']}): {len(found['unmet'])} gate(s) not met")
    for g in found["unmet"]:
        click.echo(f"- {g['reason']}")
        if g.get("fix"):
            click.echo(f"    fix: {g['fix']}")


@run.command("iterate")
@run_id_option(required=True, positional=True)
@click.option("--feedback", required=True, help="What the agents should do next.")
@_actor_opts
@pass_app
def iterate(app: AppContext, /, run_id: str, feedback: str, **kw: Any) -> None:
    """Start a new control epoch with feedback posted on every control thread.

    Completions and validations of earlier epochs no longer count.

    \b
    Example:
      metawsm run iterate --run-id run-20261128-k3f9x --feedback "add docs"
    """
    if not feedback.strip():
        raise click.UsageError("--feedback is required (blank after trimming)")
    if app.remote is not None:  # the API posts the feedback on each control thread
        from metawsm.cli.remote import segment

        _check_remote_actor(app, kw)
        path = f"/runs/{segment(run_id)}/iterate"
        answer = app.remote.post(path, {"feedback": feedback})[1]
        click.echo(f"run {run_id} {answer['status']}; control epoch {answer['control_epoch']}")
        return
    from metawsm.services import lifecycle

    status, epoch, threads = lifecycle.iterate_run(
        app.container.runtime, run_id, feedback, _actor(app, kw)
    )
    for thread_id in threads:
        run_write(
            app,
            "add_post",
            {"thread_id": thread_id, "body": f"Operator feedback: {feedback}"},
            actor_type=_actor(app, kw).actor_type,
            actor_name=_actor(app, kw).actor_name,
            wait=None,
            timeout=None,
            as_json=False,
            quiet=True,
        )
    click.echo(f"run {run_id} {status}; control epoch {epoch}")


@click.command("close")
@run_id_option(required=True)
@click.option("--dry-run", is_flag=True, help="Check the gates; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@_actor_opts
@pass_app
def close(app: AppContext, /, run_id: str, dry_run: bool, as_json: bool, **kw: Any) -> None:
    """Close a completed run whose close gates all pass (see metawsm run why).

    Exit 0 closed (or, with --dry-run, every gate passes), 1 a gate is not met.

    \b
    Example:
      metawsm close --run-id run-20261128-k3f9x --dry-run
    """
    if app.remote is not None:
        _check_remote_actor(app, kw)
        status = _close_remote(app, run_id, dry_run, as_json)
    else:
        status = _close_local(app, run_id, dry_run, as_json, kw)
    if as_json:
        emit_json(
            {"run_id": run_id, "closed": status == "closed", "dry_run": dry_run, "status": status}
        )
    elif dry_run:
        click.echo(f"run {run_id}: every close gate passes (dry run; nothing changed)")
    else:
        click.echo(f"run {run_id} {status}")


def _close_local(
    app: AppContext, run_id: str, dry_run: bool, as_json: bool, kw: dict[str, Any]
) -> str:
    from metawsm.services import gates

    c = app.container
    try:
        return gates.close_run(c.runtime, run_id, dry_run=dry_run, actor=_actor(app, kw))
    except Forbidden:
        raise  # a role rule, not a gate: the error names the rule
    except Rejected as exc:
        if as_json:
            _, unmet = gates.unmet(c.engine, run_id)
            emit_json({"run_id": run_id, "closed": False, "unmet": [g.as_dict() for g in unmet]})
        _gate_not_met(str(exc), run_id)


def _close_remote(app: AppContext, run_id: str, dry_run: bool, as_json: bool) -> str:
    """Close over the API (the token's identity acts); a gate not met is 409 with ``unmet``."""
    from metawsm.cli.remote import ApiRefused, segment

    assert app.remote is not None
    try:
        _, answer = app.remote.post(f"/runs/{segment(run_id)}/close", {"dry_run": dry_run})
    except ApiRefused as exc:
        if exc.api_code != "rejected" or "unmet" not in exc.extra:
            raise  # a role rule (403), an unknown run (404): the error names it
        if as_json:
            emit_json({"run_id": run_id, "closed": False, "unmet": exc.extra["unmet"]})
        _gate_not_met(str(exc), run_id)
    return str(answer["status"])


def _gate_not_met(message: str, run_id: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    click.echo(f"see: metawsm run why --run-id {run_id}", err=True)
    raise click.exceptions.Exit(EXIT_FAILED) from None


def _steer_remote(app: AppContext, run_id: str, verb: str) -> str:
    """Stop or resume over the API (operators and humans: an agent's token is refused, 403)."""
    from metawsm.cli.remote import segment

    assert app.remote is not None
    _, answer = app.remote.post(f"/runs/{segment(run_id)}/{verb}")
    return str(answer["status"])
